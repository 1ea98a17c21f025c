"""Cache blocking: how many sequences the fast backend runs through one time loop.

Every step of a forward, R-forward or BPTT pass (:mod:`.rnn_fast`) works on a few ``[H, B]``
slices (the step's states, its error, the rows of the state buffer) and a few small weight
matrices; nothing outside the loops touches the whole ``[T, B, H]`` history. What has to stay in
the core's cache is therefore one step's working set, a few ``[H, B]`` slices, not the history,
and the best block is independent of ``T``. Larger blocks make each step's ``[B, H] @ [H, H]`` products
run at a higher rate and spread the per-call overhead of a step over more sequences; a step's few
slices must still stay near the core (this machine: 1 MiB of L2 per core, 32 MiB of shared L3).
Measured on this project's 2-core AMD EPYC VM on an idle machine (float32, one thread, batch of
1,000 sequences, median over 9 interleaved rounds of the time over the floor of ``4 T`` (product)
or ``3 T`` (gradient) ``[B, H] @ [H, H]`` products; ``benchmarks/bench_blocks.py``, results in
``benchmarks/results/blocks_idle.md``)::

    block (sequences per pass)            128    256    512   1000
    product,  T = 100, H = 100 (x floor)  1.40   1.35   1.20   1.12
    gradient, T = 100, H = 100            1.50   1.36   1.24   1.16
    product,  T = 200, H = 100            1.41   1.31   1.26   1.18
    gradient, T = 200, H = 100            1.54   1.35   1.29   1.19
    product,  T = 100, H = 300            1.06   1.01   0.97   0.91
    gradient, T = 100, H = 300            1.02   1.02   0.97   0.98
    product,  T = 200, H = 300            1.05   0.99   0.97   0.98
    gradient, T = 200, H = 300            1.06   1.00   0.93   0.95

With a batch of 2,000 (T = 100), 1,000 sequences per pass was as fast as 2,000 at H = 100
(1.07-1.09 against 1.09) and faster at H = 300 (0.89-0.90 against 0.93-0.97), so the block stops
growing near a 1.2 MB slice. (hfrnn 0.5.0 sized the slice at 200 KiB, for a 2 MiB L2 this machine
does not have: 500 sequences at H = 100 and 167 at H = 300, up to 1.3x slower at H = 300. The
formulation before 0.5.0 batched the non-recurrent terms over all steps, needed the whole
``3 T B H`` working set in cache and so blocks of 32-170 sequences.)

The automatic block is the number of sequences whose ``[H, B]`` slice fills :data:`STEP_BYTES`
(clamped to [32, 1024]): 1024 for H = 100 and H = 300 in float32 (a batch of 1,000 in one pass),
327 for H = 1000. The per-block results are summed, which is exact up to rounding because every
quantity is a sum over sequences. On a GPU the automatic block is the whole batch (large products
are what it needs).
"""
from __future__ import annotations

import torch

STEP_BYTES = 1280 * 2**10
"""Bytes of one ``[H, B]`` slice of a block (measured above; ``batch.block`` overrides the block size)."""


def auto_block(T: int, hidden: int, dtype: torch.dtype, device: torch.device | str) -> int:
    """Sequences per pass (0 = the whole batch). ``T`` is accepted for the callers' sake and does
    not change the answer: only one step's slices need to stay in cache."""
    if torch.device(device).type != "cpu":
        return 0
    itemsize = torch.empty((), dtype=dtype).element_size()
    return max(32, min(1024, STEP_BYTES // (hidden * itemsize)))
