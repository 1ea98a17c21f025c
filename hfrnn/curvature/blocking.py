"""Cache blocking: how many sequences the fast backend runs through one time loop.

Every step of a forward, R-forward or BPTT pass (:mod:`.rnn_fast`) works on a few ``[H, B]``
slices (the step's states, its error, the rows of the state buffer) and a few small weight
matrices; nothing outside the loops touches the whole ``[T, B, H]`` history. What has to stay in
the core's cache is therefore one step's working set, a few ``[H, B]`` slices, not the history,
and the best block is independent of ``T``: large enough that the per-step matrix products run
at their full rate (and the per-call overhead of a step is spread over many sequences), small
enough that a step's slices stay in the 2 MiB L2. Measured on this project's 2-core machine
(float32, one thread, ``make bench``-style ratios to the floor of ``[B, H] @ [H, H]`` products;
see ``docs/performance.md``)::

    sequences per pass                  128    256    512    1000
    product,  T = 100, H = 100 (x floor)   -    1.48   1.40   1.38
    gradient, T = 100, H = 100             -    1.55   1.41   1.40
    product,  T = 100, H = 300           1.18   1.29   1.22     -
    gradient, T = 100, H = 300           1.22   1.28   1.44     -

(The earlier formulation, which batched the non-recurrent terms into products over all steps,
needed the whole ``3 T B H`` working set in cache and so blocks of 32-170 sequences; with
everything inside the loops those small blocks only cost per-call overhead.)

The automatic block is the number of sequences whose ``[H, B]`` slice fills :data:`STEP_BYTES`
(clamped to [32, 1024]): 512 for H = 100 and 170 for H = 300 in float32. The per-block results
are summed, which is exact up to rounding because every quantity is a sum over sequences. On a
GPU the automatic block is the whole batch (large products are what it needs).
"""
from __future__ import annotations

import torch

STEP_BYTES = 200 * 2**10
"""Bytes of one ``[H, B]`` slice of a block (measured above; a config key overrides the block size)."""


def auto_block(T: int, hidden: int, dtype: torch.dtype, device: torch.device | str) -> int:
    """Sequences per pass (0 = the whole batch). ``T`` is accepted for the callers' sake and does
    not change the answer: only one step's slices need to stay in cache."""
    if torch.device(device).type != "cpu":
        return 0
    itemsize = torch.empty((), dtype=dtype).element_size()
    return max(32, min(1024, STEP_BYTES // (hidden * itemsize)))
