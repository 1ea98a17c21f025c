"""CG backtracking and the Armijo line search: small pure functions of an objective.

* Backtracking (Martens 2010, section 4.6): CG's later iterates optimise the quadratic better but
  may fit the true objective worse. Walking back from the last kept iterate, keep the one with the
  lowest objective and stop walking once the objective gets worse.
* Line search: on the chosen direction ``d`` try ``alpha = 1, shrink, shrink^2, ...`` and accept the
  first with ``f(theta + alpha d) <= f(theta) + c alpha g.d`` (Armijo); ``None`` if none does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from torch import Tensor


@dataclass
class LineSearchOptions:
    """``line_search.*``.

    Attributes:
        enabled: when False the full step (alpha = 1) is taken if it decreases the objective.
        c: Armijo's sufficient-decrease constant (1e-2).
        shrink: factor between tries (0.8).
        max_tries: tries before the step is rejected (60).
    """

    enabled: bool = True
    c: float = 1e-2
    shrink: float = 0.8
    max_tries: int = 60


def backtrack(kept: Sequence[tuple[int, Tensor]], f: Callable[[Tensor], float]) -> tuple[int, float, int]:
    """Choose among CG's kept iterates.

    Args:
        kept: ``(iteration, x)`` in increasing iteration.
        f: objective of a candidate step.
    Returns:
        ``(index into kept, its objective, number of evaluations)``.
    """
    best = len(kept) - 1
    f_best = f(kept[best][1])
    evals = 1
    for j in range(len(kept) - 2, -1, -1):
        f_j = f(kept[j][1])
        evals += 1
        if f_j < f_best or (not math.isfinite(f_best) and math.isfinite(f_j)):
            best, f_best = j, f_j
        else:
            break
    return best, f_best, evals


def line_search(f: Callable[[float], float], f0: float, slope: float, opts: LineSearchOptions,
                f_at_one: float | None = None) -> tuple[float | None, float, int]:
    """Armijo backtracking along a direction.

    Args:
        f: objective at step size alpha.
        f0: objective at alpha = 0.
        slope: directional derivative ``g.d`` (negative for a descent direction).
        f_at_one: ``f(1)`` when the caller already has it (CG backtracking on the same batch).
    Returns:
        ``(alpha or None, objective at alpha, evaluations made here)``.
    """
    tries = opts.max_tries if opts.enabled else 1
    alpha, f_a, evals = 1.0, math.nan, 0
    c = opts.c if opts.enabled else 0.0
    for n in range(tries):
        if n == 0 and f_at_one is not None:
            f_a = f_at_one
        else:
            f_a = f(alpha)
            evals += 1
        if math.isfinite(f_a) and f_a < f0 and f_a <= f0 + c * alpha * slope:
            return alpha, f_a, evals
        alpha *= opts.shrink
    return None, f_a, evals
