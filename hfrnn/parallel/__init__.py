"""Data-parallel HF over ``torch.distributed`` (``dist.procs=N`` or ``torchrun``).

* :mod:`.dist`: the process group (start, stop, timeout) and the loop's two collectives.
* :mod:`.sharded`: a curvature backend that evaluates one slice of every batch per process and
  sums the slices with all-reduce, so the optimisers run unchanged and identically on every rank.

Starting the processes of one run is the runner's (:mod:`hfrnn.train.launch`): this package sits
below the training loop and never imports it.
"""
