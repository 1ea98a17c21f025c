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
:class:`HFStepInfo`, never applied. A non-finite gradient right after an accepted step also takes
that step back (``non_finite_gradient_step_undone``): the loss there was finite, but the
gradient's backward pass overflowed, and rejecting without moving would reject forever. Only a
step that is still in place is taken back: parameters changed since (by the caller) stay.

Work is counted in the paper's unit: one *minibatch* is 1,000 sequences through a gradient or a
curvature product; forward-only evaluations are counted separately in the same unit.

:meth:`HessianFree.step_on` runs one iteration on given batches as the sequence of these steps,
each a method that adds its work to the iteration's :class:`HFStepInfo`; :meth:`HessianFree.step`
draws the two batches first. The public, module-level optimiser is :class:`hfrnn.api.HessianFree`.
"""
from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal

import torch
from torch import Tensor

from ..curvature.protocol import CurvatureBackend, chunked_loss, chunked_loss_and_grad, steps_per_sequence
from ..linalg.cg import CGResult, cg
from ..linalg.params import dot64
from ..tasks.base import Batch
from . import SEQUENCES_PER_MINIBATCH
from .damping import DampingOptions, reduction_ratio, update_damping
from .search import LineSearchOptions, backtrack, line_search

log = logging.getLogger(__name__)

# The choices of the string options, one Literal type each: what a type checker holds a value to,
# and what :func:`hfrnn.optim.options.check_hf_options` checks at run time (``typing.get_args``).
Curvature = Literal["fast", "generic"]        # fast: the hand-written RNN backend where one applies
Rho = Literal["damped", "undamped"]           # which quadratic rho compares the measured decrease with
RhoBatch = Literal["gradient", "curvature"]   # where CG backtracking and rho measure the objective
HiddenNonlinearity = Literal["tanh", "logistic", "linear"]  # the units e the structural distance matches

if TYPE_CHECKING:
    _Curvature = Curvature
    _Rho = Rho
    _RhoBatch = RhoBatch
    _HiddenNonlinearity = HiddenNonlinearity
else:
    # The fields say ``str`` at run time: these dataclasses are also the Hydra schema
    # (``hfrnn.config``), and OmegaConf 2.3 refuses a Literal annotation ("Unexpected type
    # annotation"). Enums would pass OmegaConf but make every Python user write Rho.undamped.
    _Curvature = _Rho = _RhoBatch = _HiddenNonlinearity = str


def _checksum(theta: Tensor) -> int:
    """CRC-32 of ``theta``'s bytes: whether the parameters are still those an accepted step left."""
    return zlib.crc32(theta.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())


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
    """``structural.*``: the damping term ``lambda mu G_S`` of section 3.2,
    ``G_S = (1/B) sum_{t,b} J_t^T scale (D o e)'' J_t`` over the hidden pre-activations ``t``.

    ``mu`` weighs the structural term against the Tikhonov one: 0.03, the 2011 code's value, on
    every task (README, "Structural mu"). ``scale`` multiplies ``(D o e)''``; the default 0.25 is
    the released code's form ``0.25 (1 - h^2)`` for tanh units, so ``mu`` means what it means there.

    ``hidden_nonlinearity`` is the units' ``e`` (``h = e(t)``); the distance ``D`` is its matching
    loss, which fixes ``(D o e)''`` per unit: ``tanh`` ``1 - h^2``, ``logistic`` ``h (1 - h)``,
    ``linear`` ``1`` (``D = 1/2 |h - h_n|^2``, for states that are no single squashing function of a
    pre-activation: a GRU's). ``None``: the model's class attribute ``hidden_nonlinearity``
    (hfrnn's RNN and LSTM say ``tanh``). A value the model contradicts, an unknown one, or none at
    all with structural damping on is refused (:mod:`hfrnn.api`) rather than silently assumed.
    """

    enabled: bool = True
    mu: float = 0.03
    scale: float = 0.25
    hidden_nonlinearity: _HiddenNonlinearity | None = None


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

    ``curvature``: ``fast`` (default: the hand-written R-operator of :mod:`hfrnn.curvature.rnn_fast`
    for hfrnn's tanh RNN, the generic backend for any other model) or ``generic`` (``torch.func``
    for every model; the same products to rounding, slower).

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
    curvature: _Curvature = "fast"
    rho: _Rho = "damped"
    rho_batch: _RhoBatch = "gradient"
    weight_cost: float = 2e-5
    max_rejections: int = 20
    cg: CGOptions = field(default_factory=CGOptions)
    damping: DampingOptions = field(default_factory=DampingOptions)
    structural: StructuralOptions = field(default_factory=StructuralOptions)
    line_search: LineSearchOptions = field(default_factory=LineSearchOptions)
    batch: BatchOptions = field(default_factory=BatchOptions)


@dataclass
class HFStepInfo:
    """What one HF iteration did (``hfrnn.train.records.step_record`` writes it to ``metrics.jsonl``).

    Built when the gradient is known and filled in by each later step of the iteration.
    """

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


def _new_info(lam: float, f0: float, g: Tensor, g_batch: Batch) -> HFStepInfo:
    """The record of an iteration that has only its gradient so far (the later steps fill it in)."""
    return HFStepInfo(damping=lam, damping_next=lam, rho=None, cg_iters=0, cg_chosen_iter=0, cg_stop="",
                      step_size=0.0, loss_before=f0, loss_after=f0, accepted=False, reason="ok",
                      minibatches=g_batch.size / SEQUENCES_PER_MINIBATCH, forward_evals=0.0,
                      grad_norm=float(g.norm()), steps_per_sequence=steps_per_sequence(g_batch))


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
        # theta and lambda before the last accepted step, until the next gradient is known to be
        # finite: a step can land where the loss is finite but BPTT overflows (float32, long T:
        # errors grow like rho(W_hh)^T), and there theta would never move again (see step_on). The
        # third item is the CRC of theta after the step (None: unknown, a 0.5.0 checkpoint), so
        # that parameters changed since by the caller are never overwritten.
        self.previous: tuple[Tensor, float, int | None] | None = None

    # -- the objective with the L2 term --------------------------------------------------------
    def _f(self, theta: Tensor, batch: Batch) -> float:
        f = chunked_loss(self.backend, theta, batch, self.opts.batch.chunk)
        return f + 0.5 * self.opts.weight_cost * dot64(theta, theta)

    def _f_and_g(self, theta: Tensor, batch: Batch) -> tuple[float, Tensor]:
        f, g = chunked_loss_and_grad(self.backend, theta, batch, self.opts.batch.chunk)
        wc = self.opts.weight_cost
        return f + 0.5 * wc * dot64(theta, theta), g.double() + wc * theta.double()

    def _reject(self, info: HFStepInfo, reason: str) -> HFStepInfo:
        """Reject the step: theta stays, the next CG starts from zero, lambda is raised once."""
        self.warm = None
        self.consecutive_rejections += 1
        lam = self.damping
        self.damping = min(self.damping * self.opts.damping.boost, self.opts.damping.max)
        log.warning("HF step rejected (%s); damping %.3g -> %.3g", reason, lam, self.damping)
        info.accepted, info.reason, info.damping, info.damping_next = False, reason, lam, self.damping
        info.loss_after, info.step_size = info.loss_before, 0.0
        return info

    def step(self, sample: Callable[[int], Batch]) -> HFStepInfo:
        """One HF iteration; ``sample(n)`` returns a fresh batch of ``n`` sequences (the gradient
        batch is drawn first, then the curvature batch)."""
        g_batch = sample(self.opts.batch.gradient)
        return self.step_on(g_batch, sample(self.opts.batch.curvature))

    def step_on(self, g_batch: Batch, c_batch: Batch) -> HFStepInfo:
        """One HF iteration (steps 1-6 of the module docstring) on a gradient batch ``g_batch`` and a
        curvature batch ``c_batch``; ``theta`` moves in place only if the step is accepted."""
        o, theta, lam = self.opts, self.theta, self.damping
        f0, g = self._f_and_g(theta, g_batch)                                   # 1. gradient
        info = _new_info(lam, f0, g, g_batch)
        if not (math.isfinite(f0) and _finite(g)):
            if self.previous is not None and self.previous[2] not in (None, _checksum(theta)):
                log.warning("theta changed since the last accepted step: it is not taken back")
                self.previous = None
            if self.previous is not None:  # the last step led here: take it back, as if rejected
                theta_prev, lam_prev, _ = self.previous
                theta.copy_(theta_prev)
                self.damping = max(self.damping, lam_prev)  # raised once more by _reject
                self.previous = None
                return self._reject(info, "non_finite_gradient_step_undone")
            return self._reject(info, "non_finite_gradient")
        self.previous = None  # the gradient here is finite: the last step stands
        fc0 = self._prepare(c_batch, info)                                      # 2. curvature batch
        res = self._solve(g, lam, c_batch, info)                                # 3. CG
        if res.stop_reason == "non_finite" or not _finite(res.x):
            return self._reject(info, "non_finite_curvature")
        self.warm = res.x
        on_gradient = o.rho_batch == "gradient"
        r_batch, fr0 = (g_batch, f0) if on_gradient else (c_batch, fc0)
        chosen_iter, d, f_d = self._backtrack(res, r_batch, info)               # 4. backtracking
        q_d = self._predicted(res, chosen_iter, d, g, c_batch, info)            # 5. rho, then LM
        rho = reduction_ratio(f_d, fr0, q_d)
        lam_next = update_damping(lam, rho, o.damping)
        info.rho, info.cg_chosen_iter, info.damping_next = rho, chosen_iter, lam_next
        alpha, f_new = self._line_search(g_batch, f0, g, d, f_d if on_gradient else None, info)  # 6.
        if alpha is None:  # the LM update is not applied: a rejection raises lambda once instead
            return self._reject(info, "line_search_failed" if math.isfinite(f_new) else "non_finite_loss")
        theta_before = theta.clone()
        theta.add_((alpha * d).to(theta.dtype))
        self.previous = (theta_before, lam, _checksum(theta))
        self.damping = lam_next
        self.consecutive_rejections = 0
        info.accepted, info.step_size, info.loss_after = True, alpha, f_new
        return info

    # -- the steps of one iteration -----------------------------------------------------------
    def _prepare(self, c_batch: Batch, info: HFStepInfo) -> float:
        """Cache the curvature batch's forward pass at theta; its objective ``f_c(theta)``."""
        theta = self.theta
        fc0 = self.backend.prepare(theta, c_batch) + 0.5 * self.opts.weight_cost * dot64(theta, theta)
        info.forward_evals += c_batch.size / SEQUENCES_PER_MINIBATCH
        return fc0

    def _solve(self, g: Tensor, lam: float, c_batch: Batch, info: HFStepInfo) -> CGResult:
        """CG on ``(G + lambda mu G_S + (lambda + wc) I) d = -g`` from ``decay * d_prev`` (float64)."""
        o, dtype = self.opts, self.theta.dtype
        w = lam * o.structural.mu if o.structural.enabled else 0.0
        n_products = 0

        def matvec(v: Tensor) -> Tensor:
            nonlocal n_products
            n_products += 1
            return self.backend.product(v.to(dtype), w).double() + (lam + o.weight_cost) * v

        x0 = None if self.warm is None else o.cg.decay * self.warm
        res = cg(matvec, -g, x0, max_iters=o.cg.max_iters, eps=o.cg.eps, min_gap=o.cg.min_gap,
                 gap_fraction=o.cg.gap_fraction, keep_first=o.cg.keep_first, keep_growth=o.cg.keep_growth,
                 reset_uphill=o.cg.reset_uphill)
        info.cg_iters, info.cg_stop, info.cg_warm_start_reset = res.iterations, res.stop_reason, res.warm_start_reset
        info.minibatches += n_products * c_batch.size / SEQUENCES_PER_MINIBATCH
        return res

    def _backtrack(self, res: CGResult, r_batch: Batch, info: HFStepInfo) -> tuple[int, Tensor, float]:
        """Choose among CG's kept iterates by the objective on ``r_batch``: ``(iteration, d, f(theta + d))``."""
        theta = self.theta

        def f_rho(d: Tensor) -> float:
            return self._f(theta + d.to(theta.dtype), r_batch)

        j, f_best, n_evals = backtrack(res.kept, f_rho)
        info.forward_evals += n_evals * r_batch.size / SEQUENCES_PER_MINIBATCH
        chosen_iter, d = res.kept[j]
        return chosen_iter, d, f_best

    def _predicted(self, res: CGResult, chosen_iter: int, d: Tensor, g: Tensor, c_batch: Batch,
                   info: HFStepInfo) -> float:
        """``q(d) - q(0)``, rho's denominator: CG's own (damped) value, or with ``rho="undamped"``
        ``g.d + 1/2 d.G d + wc/2 |d|^2`` at the cost of one more product."""
        if self.opts.rho != "undamped":
            return res.q_values[chosen_iter]
        Gd = self.backend.product(d.to(self.theta.dtype), 0.0).double()
        info.minibatches += c_batch.size / SEQUENCES_PER_MINIBATCH
        return dot64(g, d) + 0.5 * dot64(d, Gd) + 0.5 * self.opts.weight_cost * dot64(d, d)

    def _line_search(self, g_batch: Batch, f0: float, g: Tensor, d: Tensor, f_at_one: float | None,
                     info: HFStepInfo) -> tuple[float | None, float]:
        """Armijo on the gradient batch (the objective g belongs to): ``(alpha or None, f)``;
        ``f_at_one`` is ``f(theta + d)`` when backtracking already measured it on this batch."""
        theta = self.theta

        def f_grad(alpha: float) -> float:
            return self._f(theta + (alpha * d).to(theta.dtype), g_batch)

        alpha, f_new, n_ls = line_search(f_grad, f0, dot64(g, d), self.opts.line_search, f_at_one)
        info.forward_evals += n_ls * g_batch.size / SEQUENCES_PER_MINIBATCH
        return alpha, f_new

    # -- state (for checkpoints) ---------------------------------------------------------------
    def state_dict(self) -> dict:
        warm = None if self.warm is None else self.warm.detach().cpu().clone()
        state = {"damping": self.damping, "warm": warm, "consecutive_rejections": self.consecutive_rejections}
        if self.previous is not None:
            state["previous_theta"] = self.previous[0].detach().cpu().clone()
            state["previous_damping"] = self.previous[1]
            state["previous_checksum"] = self.previous[2]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.damping = float(state["damping"])
        warm = state["warm"]
        self.warm = None if warm is None else warm.to(device=self.theta.device, dtype=torch.float64)
        self.consecutive_rejections = int(state["consecutive_rejections"])
        prev = state.get("previous_theta")  # absent in checkpoints before hfrnn 0.5
        self.previous = None if prev is None else (prev.to(device=self.theta.device, dtype=self.theta.dtype),
                                                   float(state["previous_damping"]),
                                                   state.get("previous_checksum"))  # None before 0.5.1

