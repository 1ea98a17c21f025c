"""Data-parallel HF over ``torch.distributed`` (``dist.procs=N`` or ``torchrun``).

* :mod:`.dist`: the process group (start, stop, timeout) and the loop's two collectives.
* :mod:`.sharded`: a curvature backend that evaluates one slice of every batch per process and
  sums the slices with all-reduce, so the optimisers run unchanged and identically on every rank.
* :mod:`.launch`: starting the processes of one run and collecting rank 0's result.
"""
