"""Levenberg-Marquardt damping and the reduction ratio (Martens 2010, section 4.1).

``rho = (f(theta + d) - f(theta)) / (q(d) - q(0))`` compares the decrease the quadratic model
promised with the decrease measured. A model that over-promises (rho small) gets more damping; one
that is accurate (rho large) gets less. The structural term is ``lambda * mu * G_S``, so it moves
with lambda.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class DampingOptions:
    """``damping.*``: the Levenberg-Marquardt rule and lambda's start.

    Attributes:
        initial: lambda at the first iteration (0.1 with structural damping, 0.3 without: thesis).
        scale_by_T: multiply ``initial`` by T on tasks that ask for it (random permutation; the
            released code does this).
        low, high: rho thresholds (1/4, 3/4).
        boost, drop: factors applied below ``low`` and above ``high`` (3/2, 2/3).
        min, max: bounds that keep lambda a positive, finite number.
    """

    initial: float = 0.1
    scale_by_T: bool = True
    low: float = 0.25
    high: float = 0.75
    boost: float = 1.5
    drop: float = 2.0 / 3.0
    min: float = 1e-8
    max: float = 1e8


def reduction_ratio(f_new: float, f_old: float, q_new: float) -> float:
    """``rho``; a non-finite new loss, or a model that predicts no decrease, counts as ``-inf``."""
    if not math.isfinite(f_new) or not math.isfinite(q_new) or q_new >= 0:
        return -math.inf
    return (f_new - f_old) / q_new


def update_damping(lam: float, rho: float, opts: DampingOptions) -> float:
    """One Levenberg-Marquardt update of lambda from rho."""
    if not (rho >= opts.low):  # also catches NaN
        lam *= opts.boost
    elif rho > opts.high:
        lam *= opts.drop
    return min(max(lam, opts.min), opts.max)
