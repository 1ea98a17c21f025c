"""A recording fake curvature backend: a known objective with known G and G_S.

Used by ``test_hf_rules.py`` (and ``test_optim.py``) to test how :class:`HessianFree` wires the
algorithm together, by what it asked the backend for, not only by how the loss moved.

Every sequence of a batch carries one vector ``c`` (``inputs[0, b]``); its loss is

    l_c(theta) = c.theta + 1/2 theta.G theta + kappa/4 |theta - anchor|^4

and the objective on a batch is the mean over its sequences (``norm`` = the whole batch's count,
as in the protocol). ``G`` is what :meth:`product` calls the Gauss-Newton matrix; the quartic term
is the part of the objective the quadratic model does not see (``kappa`` large makes CG's later
iterates worse in the true objective, so CG backtracking walks back). :meth:`product` returns
``(G + w G_S) v``.

The sampler gives gradient and curvature batches distinguishable sizes and different ``c``; every
``loss`` call records ``norm``, so a test can tell which batch an evaluation was on.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from hfrnn.linalg.params import ParamLayout
from hfrnn.tasks.base import Batch

F64 = torch.float64


def spd(n: int, lo: float, hi: float, seed: int) -> Tensor:
    """A symmetric positive definite ``[n, n]`` matrix with eigenvalues ``logspace(lo, hi)``."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return Q @ torch.diag(torch.logspace(lo, hi, n, dtype=F64)) @ Q.T


class RecordingQuadratic:
    """The protocol of ``hfrnn.curvature.protocol.CurvatureBackend`` on a known objective."""

    def __init__(self, G: Tensor, GS: Tensor, kappa: float = 0.0, anchor: Tensor | None = None) -> None:
        n = G.shape[0]
        self.layout = ParamLayout(("theta",), ((n,),))
        self.G, self.GS, self.kappa = G, GS, kappa
        self.anchor = torch.zeros(n, dtype=F64) if anchor is None else anchor.double()
        self.bump = 0.0            # added to every loss() (> 0: every step is worse: rejection)
        self.product_scale = 1.0   # multiplies every product (NaN: a broken curvature product)
        self.losses: list[tuple[float, Tensor, float]] = []    # (norm, theta, value) per loss()
        self.grads: list[tuple[float, Tensor]] = []            # (norm, theta) per loss_and_grad()
        self.prepared: list[tuple[int, Tensor]] = []           # (batch size, theta) per prepare()
        self.products: list[tuple[Tensor, float]] = []         # (v, structural weight) per product()
        self.dtypes: set[torch.dtype] = set()                  # dtypes of every theta / v received

    # -- the objective, in float64, for the tests' own expectations ------------------------------
    def objective(self, theta: Tensor, c: Tensor) -> float:
        """The per-sequence loss (= the batch mean for a batch whose rows all equal ``c``)."""
        t = theta.double()
        e = t - self.anchor
        return float(c @ t + 0.5 * t @ self.G @ t + 0.25 * self.kappa * (e @ e) ** 2)

    def gradient(self, theta: Tensor, c: Tensor) -> Tensor:
        t = theta.double()
        e = t - self.anchor
        return c + self.G @ t + self.kappa * (e @ e) * e

    def _mean(self, theta: Tensor, batch: Batch, norm: float | None, fn) -> tuple[float, object]:
        c = batch.inputs[0].double()  # [B, N]
        norm = float(batch.size) if norm is None else float(norm)
        return norm, sum(fn(theta, row) for row in c.unbind(0))

    # -- the protocol -----------------------------------------------------------------------------
    def loss(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        self.dtypes.add(theta.dtype)
        norm, total = self._mean(theta, batch, norm, self.objective)
        value = total / norm
        value += self.bump * batch.size / norm
        self.losses.append((norm, theta.detach().clone(), value))
        return value

    def loss_and_grad(self, theta: Tensor, batch: Batch, norm: float | None = None) -> tuple[float, Tensor]:
        self.dtypes.add(theta.dtype)
        norm, total = self._mean(theta, batch, norm, self.objective)
        _, gsum = self._mean(theta, batch, norm, self.gradient)
        self.grads.append((norm, theta.detach().clone()))
        return total / norm, (gsum / norm).to(theta.dtype)

    def prepare(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        self.dtypes.add(theta.dtype)
        norm, total = self._mean(theta, batch, norm, self.objective)
        self.prepared.append((batch.size, theta.detach().clone()))
        return total / norm

    def product(self, v: Tensor, structural_weight: float) -> Tensor:
        self.dtypes.add(v.dtype)
        self.products.append((v.detach().clone(), structural_weight))
        out = (self.G @ v.double() + structural_weight * (self.GS @ v.double())) * self.product_scale
        return out.to(v.dtype)

    def clear(self) -> None:
        self.losses.clear()
        self.grads.clear()
        self.prepared.clear()
        self.products.clear()


class Sampler:
    """``sample(n)``: a batch of ``n`` identical sequences whose ``c`` is the next from a list.

    ``cs`` is consumed in order (one per call); each call is recorded as ``(n, c)``.
    """

    def __init__(self, cs: list[Tensor], T: int = 1) -> None:
        self.cs = list(cs)
        self.T = T
        self.calls: list[tuple[int, Tensor]] = []

    def __call__(self, n: int) -> Batch:
        c = self.cs[len(self.calls)]
        self.calls.append((n, c))
        inputs = torch.zeros(self.T, n, c.shape[0], dtype=F64)
        inputs[0] = c
        mask = torch.ones(self.T, n, dtype=F64)
        return Batch(inputs, torch.zeros(self.T, n, 1, dtype=F64), mask, mask.clone())


def damped_q(g: Tensor, d: Tensor, B: Tensor) -> float:
    """``g.d + 1/2 d.B d``."""
    return float(g @ d + 0.5 * d @ B @ d)


def isclose(a: float, b: float, rel: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-300)
