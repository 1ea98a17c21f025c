"""A curvature backend that shards every batch across processes and sums with all-reduce.

Every quantity HF needs is a sum over sequences divided by the whole batch's number of sequences
``n`` (``hfrnn.curvature.protocol``)::

    f(theta) = (1/n) sum_b l_b,    g = (1/n) sum_b grad l_b,    G v = (1/n) sum_b J_b^T H_b J_b v

so with the sequences split into disjoint shards ``S_0 .. S_{W-1}``, one per rank, and every shard
normalised by the *global* ``n``, the whole-batch value is the sum of the shards' values:
``f = sum_r f_r``. Each rank evaluates only its shard, then an all-reduce (SUM) gives every rank
the same total. The optimisers see the plain protocol and run unchanged, and identically on
every rank: each scalar that decides a branch (CG's stopping rule, rho, the line search, the
finiteness checks) is computed from all-reduced values.

Sharding: rank ``r`` of ``W`` takes the contiguous block of sequences ``[r B / W, (r+1) B / W)``
of every batch (integer division; sizes differ by at most one). Each rank receives the *whole*
batch, because every rank draws it from the same seeded generator: generation is duplicated, in
exchange for identical data everywhere without communication, and exact determinism and resume.
A rank whose shard is empty (a chunk smaller than ``W``) contributes zeros.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..curvature.protocol import CurvatureBackend, sequence_count
from ..tasks.base import Batch
from . import dist


class ShardedBackend:
    """:class:`~hfrnn.curvature.protocol.CurvatureBackend` over this rank's shard of every batch.

    Args:
        inner: the backend that evaluates a shard (fast RNN or generic).
        rank, world: this process's shard and the number of shards (default: the process group's).
    """

    def __init__(self, inner: CurvatureBackend, rank: int | None = None, world: int | None = None) -> None:
        self.inner = inner
        self.layout = inner.layout
        self.rank = dist.rank() if rank is None else rank
        self.world = dist.world_size() if world is None else world
        self._prepared_empty = False

    def shard(self, batch: Batch) -> Batch | None:
        """This rank's block of sequences (None if it is empty)."""
        if self.world == 1:
            return batch
        n = batch.size
        lo, hi = n * self.rank // self.world, n * (self.rank + 1) // self.world
        if lo == hi:
            return None
        return Batch(*(x[:, lo:hi].contiguous() for x in (batch.inputs, batch.targets, batch.mask, batch.score_mask)))

    def _sum(self, x: float, like: Tensor) -> float:
        if self.world == 1:
            return x
        return float(dist.all_reduce_sum(torch.tensor([x], dtype=torch.float64, device=like.device)))

    def loss(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        norm = sequence_count(batch) if norm is None else norm
        part = self.shard(batch)
        return self._sum(0.0 if part is None else self.inner.loss(theta, part, norm), theta)

    def loss_and_grad(self, theta: Tensor, batch: Batch, norm: float | None = None) -> tuple[float, Tensor]:
        norm = sequence_count(batch) if norm is None else norm
        part = self.shard(batch)
        if self.world == 1:
            return self.inner.loss_and_grad(theta, part, norm)
        f, g = (0.0, torch.zeros_like(theta)) if part is None else self.inner.loss_and_grad(theta, part, norm)
        # One collective for both: the gradient and the loss in one float64 buffer.
        buf = torch.cat([g.double(), torch.tensor([f], dtype=torch.float64, device=g.device)])
        dist.all_reduce_sum(buf)
        return float(buf[-1]), buf[:-1].to(g.dtype)

    def prepare(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        norm = sequence_count(batch) if norm is None else norm
        part = self.shard(batch)
        self._prepared_empty = part is None
        return self._sum(0.0 if part is None else self.inner.prepare(theta, part, norm), theta)

    def product(self, v: Tensor, structural_weight: float) -> Tensor:
        out = torch.zeros_like(v) if self._prepared_empty else self.inner.product(v, structural_weight)
        return dist.all_reduce_sum(out) if self.world > 1 else out


def shard_if_distributed(backend: CurvatureBackend) -> CurvatureBackend:
    """Wrap ``backend`` in a :class:`ShardedBackend` inside a process group of several ranks."""
    return ShardedBackend(backend) if dist.is_distributed() else backend
