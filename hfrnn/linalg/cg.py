"""Conjugate gradient on the damped quadratic, with Martens' (2010) stopping rule.

Minimises ``q(x) = 1/2 x.A x - b.x`` for a symmetric matvec ``A`` (here
``G + lambda I + lambda mu G_S``) and ``b = -grad``. Its value comes for free from the residual
``r = A x - b``: ``q(x) = 1/2 x.(r - b)``.

Stopping (section 3 of the paper; Martens 2010, section 4.4): at iteration ``i`` with
``k = max(min_gap, ceil(gap_fraction * i))``, stop when ``i > k``, ``q(x_i) < 0`` and

    (q(x_i) - q(x_{i-k})) / q(x_i) < k * eps

i.e. when the relative progress over the last ``k`` iterations has become small. Also stop at
``max_iters`` and when a search direction has non-positive curvature ``p.A p <= 0``.

A warm start ``x0`` with ``q(x0) > 0`` is replaced by zero (``reset_uphill``; a departure from the
paper, whose warm start is always used: README, "Departures"). The iterates at ``i = ceil(first * growth^j)`` (5, 7, 9, 11, 15, 19, 25, ...) and the last one are
kept for CG backtracking. Vectors and scalars are float64 whatever the model's dtype: the matvec
receives a cast copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor


@dataclass
class CGResult:
    """What one CG run did.

    Attributes:
        x: the last iterate ``[N]`` (float64).
        iterations: matvecs performed after the initial residual.
        q_values: ``q(x_i)`` for ``i = 0..iterations``.
        kept: ``(i, x_i)`` pairs at the schedule's iterations and the last, in increasing ``i``.
        stop_reason: ``"progress"`` | ``"max_iters"`` | ``"negative_curvature"`` | ``"converged"``
            | ``"non_finite"``.
        warm_start_reset: True when the warm start was uphill (``q(x0) > 0``) and CG started
            from zero instead.
    """

    x: Tensor
    iterations: int
    q_values: list[float] = field(default_factory=list)
    kept: list[tuple[int, Tensor]] = field(default_factory=list)
    stop_reason: str = "max_iters"
    warm_start_reset: bool = False


def keep_schedule(max_iters: int, first: float = 5.0, growth: float = 1.3) -> set[int]:
    """Iterations ``ceil(first * growth^j)`` up to ``max_iters``."""
    out, j = set(), 0
    while (i := math.ceil(first * growth ** j)) <= max_iters:
        out.add(i)
        j += 1
    return out


def progress_stop(q_values: list[float], i: int, eps: float, min_gap: int, gap_fraction: float) -> bool:
    """Martens' rule at iteration ``i`` (``q_values[i]`` is ``q(x_i)``)."""
    k = max(min_gap, math.ceil(gap_fraction * i))
    q = q_values[i]
    return i > k and q < 0 and (q - q_values[i - k]) / q < k * eps


def cg(matvec: Callable[[Tensor], Tensor], b: Tensor, x0: Tensor | None = None, *, max_iters: int = 300,
       eps: float = 5e-4, min_gap: int = 10, gap_fraction: float = 0.1, min_iters: int = 1,
       keep_first: float = 5.0, keep_growth: float = 1.3, reset_uphill: bool = True) -> CGResult:
    """Run CG on ``A x = b`` from ``x0`` (zero if None).

    Args:
        matvec: ``v [N] -> A v [N]`` (any dtype; called with float64 cast to b's model dtype by the
            caller's closure if needed).
        b: right-hand side ``[N]`` (``-gradient``).
        x0: warm start ``[N]``.
        max_iters, eps, min_gap, gap_fraction: the stopping rule above.
        min_iters: never stop on progress before this many iterations.
        keep_first, keep_growth: the kept-iterate schedule.
        reset_uphill: replace a warm start with ``q(x0) > 0`` by zero.
    """
    b = b.double()
    x = torch.zeros_like(b) if x0 is None else x0.double().clone()
    r = (matvec(x) - b) if x0 is not None and bool(x0.any()) else -b.clone()
    q0 = 0.5 * float(x @ (r - b))
    reset = reset_uphill and q0 > 0
    if reset:
        # A warm start worse than zero (the previous solution points uphill for this gradient)
        # would make every kept iterate start behind; start from zero instead.
        x.zero_()
        r = -b.clone()
        q0 = 0.0
    p = -r
    rr = float(r @ r)
    q_values = [q0]
    schedule = keep_schedule(max_iters, keep_first, keep_growth)
    kept: list[tuple[int, Tensor]] = []
    reason, i = "max_iters", 0
    if not math.isfinite(rr):
        return CGResult(x, 0, q_values, [(0, x.clone())], "non_finite", reset)
    while i < max_iters:
        if rr == 0.0:
            reason = "converged"
            break
        Ap = matvec(p).double()
        pAp = float(p @ Ap)
        if not math.isfinite(pAp):
            reason = "non_finite"
            break
        if pAp <= 0:
            reason = "negative_curvature"
            break
        alpha = rr / pAp
        x.add_(p, alpha=alpha)
        r.add_(Ap, alpha=alpha)
        rr_new = float(r @ r)
        p.mul_(rr_new / rr).sub_(r)
        rr = rr_new
        i += 1
        q_values.append(0.5 * float(x @ (r - b)))
        if i in schedule:
            kept.append((i, x.clone()))
        if i >= min_iters and progress_stop(q_values, i, eps, min_gap, gap_fraction):
            reason = "progress"
            break
    if not kept or kept[-1][0] != i:
        kept.append((i, x.clone()))
    return CGResult(x, i, q_values, kept, reason, reset)
