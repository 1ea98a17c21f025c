"""Hessian-free optimisation with structural damping (paper section 3; ``specs/hf-algorithm.md``).

One iteration at parameters ``theta`` with damping ``lambda``:

1. gradient ``g`` of the objective on a fresh gradient batch (10,000 sequences);
2. a separate curvature batch (1,000 sequences), fixed for the iteration: one cached forward pass;
3. CG on ``q(d) = g.d + 1/2 d.(G + lambda mu G_S + (lambda + wc) I) d`` from ``decay * d_prev``;
4. CG backtracking over the kept iterates on the gradient batch (``rho_batch``);
5. ``rho`` on the same batch at the chosen iterate, then the Levenberg-Marquardt update;
6. Armijo line search on the gradient batch; if it fails the step is rejected, theta stays and the
   next CG starts from zero.

The objective includes the L2 term ``wc/2 |theta|^2`` of the released code (``weight_cost``).
Anything non-finite (loss, gradient, CG) rejects the step and raises lambda; it is recorded in
:class:`HFStepInfo`, never applied.

Work is counted in the paper's unit: one *minibatch* is 1,000 sequences through a gradient or a
curvature product; forward-only evaluations are counted separately in the same unit.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..curvature.protocol import CurvatureBackend, chunked_loss, chunked_loss_and_grad, steps_per_sequence
from ..linalg.cg import cg
from ..linalg.params import dot64
from ..tasks.base import Batch
from . import SEQUENCES_PER_MINIBATCH
from .damping import DampingOptions, reduction_ratio, update_damping
from .search import LineSearchOptions, backtrack, line_search

log = logging.getLogger(__name__)

@dataclass
class CGOptions:
    """``cg.*``: Martens' stopping rule and the kept-iterate schedule (``hfrnn.linalg.cg``)."""

    max_iters: int = 300
    eps: float = 5e-4
    min_gap: int = 10
    gap_fraction: float = 0.1
    decay: float = 0.95
    keep_first: float = 5.0
    keep_growth: float = 1.3
    reset_uphill: bool = True  # start from zero when the warm start is uphill, q(x0) > 0 (README, "Departures")


@dataclass
class StructuralOptions:
    """``structural.*``: the damping term ``lambda mu G_S`` of section 3.2.

    ``mu`` weighs the structural term against the Tikhonov one: 0.03, the 2011 code's value, on
    every task (README, "Structural mu"). ``scale`` multiplies ``(D o e)'' = 1 - h^2``; the default
    0.25 is the released code's form ``0.25 (1 - h^2)``, so ``mu`` means what it means there.
    """

    enabled: bool = True
    mu: float = 0.03
    scale: float = 0.25


@dataclass
class BatchOptions:
    """``batch.*``: sequences per gradient and per curvature batch; ``chunk`` bounds memory;
    ``block`` is the fast RNN backend's sequences per pass of the time loop (0 = automatic, see
    :mod:`hfrnn.curvature.blocking`)."""

    gradient: int = 10000
    curvature: int = 1000
    chunk: int = 2000
    block: int = 0


@dataclass
class HFOptions:
    """Everything ``optimizer=hf`` / ``optimizer=hf_nosd`` configure.

    ``rho``: ``damped`` (default; q includes the Tikhonov and structural terms, as in the 2011
    RNN code, so rho judges the very quadratic CG minimised) or ``undamped`` (Martens 2010: q
    without damping; costs one extra product per iteration).

    ``rho_batch``: where CG backtracking and rho measure the objective: ``gradient`` (default:
    the 10,000-sequence batch the gradient came from) or ``curvature`` (the spec's choice, the
    1,000-sequence curvature batch: ten times less forward work, but on a plateau the predicted
    reduction is smaller than the sampling noise of a 1,000-sequence loss, rho is noise, and
    lambda drifts up until HF acts like gradient descent; this is what kept XOR from solving).
    """

    name: str = "hf"
    curvature: str = "fast"
    rho: str = "damped"
    rho_batch: str = "gradient"
    weight_cost: float = 2e-5
    max_rejections: int = 20
    cg: CGOptions = field(default_factory=CGOptions)
    damping: DampingOptions = field(default_factory=DampingOptions)
    structural: StructuralOptions = field(default_factory=StructuralOptions)
    line_search: LineSearchOptions = field(default_factory=LineSearchOptions)
    batch: BatchOptions = field(default_factory=BatchOptions)


@dataclass
class HFStepInfo:
    """What one HF iteration did (logged verbatim to ``metrics.jsonl``)."""

    damping: float            # lambda used by this iteration's CG
    damping_next: float       # lambda after the Levenberg-Marquardt update
    rho: float | None
    cg_iters: int
    cg_chosen_iter: int
    cg_stop: str
    step_size: float
    loss_before: float        # gradient-batch objective at theta
    loss_after: float         # gradient-batch objective at the new theta (= before if rejected)
    accepted: bool
    reason: str               # "ok" or why the step was rejected
    minibatches: float        # gradient and curvature products this iteration
    forward_evals: float      # forward-only evaluations this iteration
    grad_norm: float
    steps_per_sequence: float = 1.0  # mean scored steps per gradient-batch sequence (display unit)
    cg_warm_start_reset: bool = False  # the decayed warm start was uphill: CG started from zero


def _finite(x: Tensor) -> bool:
    return bool(torch.isfinite(x).all())


class HessianFree:
    """The HF optimiser over a flat parameter vector.

    Args:
        theta: initial parameters ``[N]`` (updated in place by :meth:`step`).
        backend: objective, gradient and curvature products.
        opts: options.
        initial_damping: lambda at the start (already scaled for the task).
    """

    def __init__(self, theta: Tensor, backend: CurvatureBackend, opts: HFOptions, initial_damping: float) -> None:
        self.theta = theta
        self.backend = backend
        self.opts = opts
        self.damping = float(initial_damping)
        self.warm: Tensor | None = None  # last CG solution (float64), None after a rejection
        self.consecutive_rejections = 0

    # -- the objective with the L2 term --------------------------------------------------------
    def _f(self, theta: Tensor, batch: Batch) -> float:
        f = chunked_loss(self.backend, theta, batch, self.opts.batch.chunk)
        return f + 0.5 * self.opts.weight_cost * dot64(theta, theta)

    def _f_and_g(self, theta: Tensor, batch: Batch) -> tuple[float, Tensor]:
        f, g = chunked_loss_and_grad(self.backend, theta, batch, self.opts.batch.chunk)
        wc = self.opts.weight_cost
        return f + 0.5 * wc * dot64(theta, theta), g.double() + wc * theta.double()

    def _reject(self, info: dict, reason: str) -> HFStepInfo:
        self.warm = None
        self.consecutive_rejections += 1
        lam = self.damping
        self.damping = min(self.damping * self.opts.damping.boost, self.opts.damping.max)
        log.warning("HF step rejected (%s); damping %.3g -> %.3g", reason, lam, self.damping)
        info.update(accepted=False, reason=reason, damping=lam, damping_next=self.damping,
                    loss_after=info["loss_before"], step_size=0.0)
        return HFStepInfo(**info)

    def step(self, sample: Callable[[int], Batch]) -> HFStepInfo:
        """One HF iteration; ``sample(n)`` returns a fresh batch of ``n`` sequences."""
        o = self.opts
        theta = self.theta
        unit = SEQUENCES_PER_MINIBATCH
        g_batch = sample(o.batch.gradient)
        c_batch = sample(o.batch.curvature)
        f0, g = self._f_and_g(theta, g_batch)
        info = dict(damping=self.damping, damping_next=self.damping, rho=None, cg_iters=0, cg_chosen_iter=0,
                    cg_stop="", cg_warm_start_reset=False, step_size=0.0, loss_before=f0, loss_after=f0, accepted=False, reason="ok",
                    minibatches=g_batch.size / unit, forward_evals=0.0, grad_norm=float(g.norm()),
                    steps_per_sequence=steps_per_sequence(g_batch))
        if not (math.isfinite(f0) and _finite(g)):
            return self._reject(info, "non_finite_gradient")

        lam = self.damping
        fc0 = self.backend.prepare(theta, c_batch) + 0.5 * o.weight_cost * dot64(theta, theta)
        info["forward_evals"] += c_batch.size / unit
        w = lam * o.structural.mu if o.structural.enabled else 0.0
        dtype = theta.dtype
        n_products = 0

        def matvec(v: Tensor) -> Tensor:
            nonlocal n_products
            n_products += 1
            return self.backend.product(v.to(dtype), w).double() + (lam + o.weight_cost) * v

        x0 = None if self.warm is None else o.cg.decay * self.warm
        res = cg(matvec, -g, x0, max_iters=o.cg.max_iters, eps=o.cg.eps, min_gap=o.cg.min_gap,
                 gap_fraction=o.cg.gap_fraction, keep_first=o.cg.keep_first, keep_growth=o.cg.keep_growth,
                 reset_uphill=o.cg.reset_uphill)
        info.update(cg_iters=res.iterations, cg_stop=res.stop_reason, cg_warm_start_reset=res.warm_start_reset)
        info["minibatches"] += n_products * c_batch.size / unit
        if res.stop_reason == "non_finite" or not _finite(res.x):
            return self._reject(info, "non_finite_curvature")
        self.warm = res.x

        # CG backtracking and rho on the curvature batch (or the gradient batch).
        r_batch, fr0 = (g_batch, f0) if o.rho_batch == "gradient" else (c_batch, fc0)

        def f_rho(d: Tensor) -> float:
            return self._f(theta + d.to(dtype), r_batch)

        j, fc_best, n_evals = backtrack(res.kept, f_rho)
        info["forward_evals"] += n_evals * r_batch.size / unit
        chosen_iter, d = res.kept[j]
        q_d = res.q_values[chosen_iter]
        if o.rho == "undamped":
            Gd = self.backend.product(d.to(dtype), 0.0).double()
            info["minibatches"] += c_batch.size / unit
            q_d = dot64(g, d) + 0.5 * dot64(d, Gd) + 0.5 * o.weight_cost * dot64(d, d)
        rho = reduction_ratio(fc_best, fr0, q_d)
        self.damping = update_damping(lam, rho, o.damping)
        info.update(rho=rho, cg_chosen_iter=chosen_iter, damping_next=self.damping)

        # Armijo line search on the gradient batch (the objective g belongs to).
        def f_grad(alpha: float) -> float:
            return self._f(theta + (alpha * d).to(dtype), g_batch)

        known = fc_best if o.rho_batch == "gradient" else None  # backtracking already measured f(1)
        alpha, f_new, n_ls = line_search(f_grad, f0, dot64(g, d), o.line_search, known)
        info["forward_evals"] += n_ls * g_batch.size / unit
        if alpha is None:
            self.damping = lam  # _reject applies the boost once
            return self._reject(info, "line_search_failed" if math.isfinite(f_new) else "non_finite_loss")
        theta.add_((alpha * d).to(dtype))
        self.consecutive_rejections = 0
        info.update(accepted=True, step_size=alpha, loss_after=f_new)
        return HFStepInfo(**info)

    # -- state (for checkpoints) ---------------------------------------------------------------
    def state_dict(self) -> dict:
        warm = None if self.warm is None else self.warm.detach().cpu().clone()
        return {"damping": self.damping, "warm": warm, "consecutive_rejections": self.consecutive_rejections}

    def load_state_dict(self, state: dict) -> None:
        self.damping = float(state["damping"])
        warm = state["warm"]
        self.warm = None if warm is None else warm.to(device=self.theta.device, dtype=torch.float64)
        self.consecutive_rejections = int(state["consecutive_rejections"])

