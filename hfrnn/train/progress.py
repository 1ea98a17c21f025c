"""The live progress line: one log line per HF iteration (every ``log_every`` steps for SGD/Adam).

A line reads, for example::

    job 3/32  it 12  mb 240/50000 (0.48%)  elapsed 0:00:12  ETA 0:41:28  loss/seq 3.21  test_err 0.523  lambda 0.0123  rho 0.934  cg 40

Each counter (iterations, minibatches, wall clock) is shown; the one whose ``budget.*`` limit binds
first (the largest share spent) carries ``/limit (share)``, and the ETA extrapolates the rate so far
toward that limit. The test measure is the pathological tasks' error rate or a natural task's own
measure (log-likelihood per step, squared error per frame), never ``nan``: before the first
evaluation there is none. The lines go through :mod:`logging` (Hydra's console and ``train.log``),
so logs, sweeps and CI get plain lines: no carriage returns, no bar.

:func:`set_job_label` (the CLI: ``job 3/32``) prefixes every line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# A first-order step is cheap (0.1 minibatch): a line (and a logger record) per 100 steps.
FIRST_ORDER_LOG_EVERY = 100
HF_LOG_EVERY = 1

# The test measure a line shows: the first of these the last evaluation has.
MEASURES = (("test_error_rate", "test_err"), ("test_log_lik_per_step", "test_loglik/step"),
            ("test_sq_err_per_frame", "test_sqerr/frame"))

_label: str | None = None


def set_job_label(text: str | None) -> None:
    """Prefix every progress line with ``text`` (e.g. ``job 3/32``); None or empty: no prefix."""
    global _label
    _label = text or None


def job_label() -> str | None:
    return _label


def resolve_log_every(log_every: int | None, second_order: bool) -> int:
    """``log_every`` as given, or its default when None: every HF iteration, every 100th first-order step."""
    if log_every is not None:
        return log_every
    return HF_LOG_EVERY if second_order else FIRST_ORDER_LOG_EVERY


@dataclass
class Share:
    """The binding budget: which counter (``iteration``, ``minibatches``, ``wall_s``), its limit,
    and the fraction of that limit spent."""

    counter: str
    limit: float
    fraction: float


def binding_budget(counters: dict, budget: Any) -> Share | None:
    """The limit closest to being reached (the largest fraction), or None when no limit is finite."""
    limits = (("iteration", budget.max_iterations), ("minibatches", budget.max_minibatches),
              ("wall_s", budget.max_wall_s))
    shares = [Share(k, float(lim), counters[k] / lim) for k, lim in limits
              if lim is not None and math.isfinite(lim) and lim > 0]
    return max(shares, key=lambda s: s.fraction, default=None)


def eta_s(counters: dict, share: Share | None) -> float | None:
    """Seconds left at the average rate so far (wall seconds per unit of the binding counter)."""
    if share is None or share.fraction <= 0 or counters["wall_s"] <= 0:
        return None
    # wall * (1 - f) / f: for the wall-clock limit itself this is exactly limit - wall.
    return max(0.0, counters["wall_s"] * (1.0 - share.fraction) / share.fraction)


def duration(seconds: float | None) -> str:
    """``H:MM:SS`` (hours unbounded); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def g3(x: Any) -> str:
    """A number to 3 significant digits (``0.9339242763701732`` -> ``0.934``); ``n/a`` for None."""
    return "n/a" if x is None else f"{x:.3g}"


def _count(x: float) -> str:
    """Minibatches: whole numbers as such, fractions (0.1 per SGD step) to one decimal."""
    return f"{x:.0f}" if abs(x - round(x)) < 1e-6 else f"{x:.1f}"


def _percent(f: float) -> str:
    return f"{100 * f:.2g}%" if f < 0.1 else f"{100 * f:.0f}%"


def line(rec: dict, counters: dict, budget: Any, last_test: dict) -> str:
    """The progress line of the iteration whose record is ``rec`` (see the module docstring)."""
    share = binding_budget(counters, budget)

    def counter(name: str, key: str, shown: str, limit_text) -> str:
        if share is None or share.counter != key:
            return f"{name} {shown}"
        return f"{name} {shown}/{limit_text(share.limit)} ({_percent(share.fraction)})"

    parts = [counter("it", "iteration", str(counters["iteration"]), lambda v: f"{v:.0f}"),
             counter("mb", "minibatches", _count(counters["minibatches"]), _count),
             counter("elapsed", "wall_s", duration(counters["wall_s"]), duration),
             f"ETA {duration(eta_s(counters, share))}",
             f"loss/seq {rec['train_loss']:.4g}"]
    measure = next(((short, last_test[k]) for k, short in MEASURES if k in last_test), None)
    if measure is not None:
        parts.append(f"{measure[0]} {g3(measure[1])}")
    if "lambda" in rec:  # HF
        parts.append(f"lambda {g3(rec['lambda'])}  rho {g3(rec['rho'])}  cg {rec['cg_iters']}")
    elif "grad_norm" in rec:  # SGD, Adam
        parts.append(f"|g| {g3(rec['grad_norm'])}")
    text = "  ".join(parts)
    return f"{_label}  {text}" if _label else text
