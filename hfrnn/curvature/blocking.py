"""Cache blocking: how many sequences the fast backend runs through one time loop.

The time loop of a forward, R-forward or BPTT pass touches, at every step, a few ``[B, H]`` slices
of tensors that hold all ``T`` steps (``h``, ``1 - h^2``, ``R t``, the backpropagated error). When
the whole ``[T, B, H]`` working set fits in the CPU's cache the loop runs at the matrix-product
rate; when it does not, every step waits on memory. Measured on this project's 2-core machine
(float32, H = 100, one thread, per 1000 sequences)::

    sequences per pass      2000   1000   250    125    64
    gradient, T = 30 (ms)     74     -     35     33     36
    gradient, T = 100 (ms)   245     -    246    124    130
    product,  T = 100 (ms)     -    224   149    140     -
    product,  T = 200 (ms)     -    462   319    300     -

A pass over ``B`` sequences keeps about three ``[T, B, H]`` tensors live, so the automatic block
is the largest ``B`` whose working set ``3 T B H`` elements stays within :data:`CACHE_BYTES`
(clamped to [32, 1024]); the per-block results are summed, which is exact up to rounding because
every quantity is a sum over sequences. On a GPU there is no such cliff and large matrix products
are what it needs, so the automatic block there is the whole batch.
"""
from __future__ import annotations

import torch

CACHE_BYTES = 6 * 2**20
"""Working-set budget of one pass (measured above; a config key overrides the block size)."""


def auto_block(T: int, hidden: int, dtype: torch.dtype, device: torch.device | str) -> int:
    """Sequences per pass for a ``[T, B, hidden]`` working set (0 = the whole batch)."""
    if torch.device(device).type != "cpu":
        return 0
    itemsize = torch.empty((), dtype=dtype).element_size()
    return max(32, min(1024, CACHE_BYTES // (3 * max(T, 1) * hidden * itemsize)))
