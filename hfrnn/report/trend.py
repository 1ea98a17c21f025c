"""Where a run that did not solve stood when it stopped: a short diagnosis from ``metrics.jsonl``.

For a run that is stopped, failed or incomplete, ``summary.md`` says whether its test error rate
was still falling or sat on a plateau, with the numbers behind the verdict, so that a stopped cell
can be told apart from a paper-style failure without opening its files:

    test error 0.93 -> 0.81 -> 0.41 (at 0, 50, 100% of its 3,719 minibatches; best 0.41):
    descending; last 10 HF iterations: lambda 0.0026, median rho 0.78, median CG 180

The verdict compares the error rate over the last half of the run's minibatches (a relative fall of
at least :data:`DESCENT` is ``descending``, else ``plateau``); too few evaluations say so. For HF,
the damping and reduction ratio of the last iterations tell whether steps are still trusted (rho
near 1, small lambda) or the quadratic model has broken down (rho < 0, lambda climbing).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .collect import as_float

DESCENT = 0.1  # a fall of 10% of the error rate over the last half of the run counts as descending
LAST = 10      # HF iterations summarised at the end


def _at(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    """The last recorded value at or before ``x`` (the first one before any)."""
    i = int(np.searchsorted(xs, x, side="right")) - 1
    return float(ys[max(i, 0)])


def diagnose(records: list[dict[str, Any]]) -> str:
    """The one-line diagnosis of a run's ``metrics.jsonl`` records (see the module docstring)."""
    pts = [(as_float(r.get("minibatches")), as_float(r.get("test_error_rate"))) for r in records]
    pts = [(x, y) for x, y in pts if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    if len(pts) < 3:
        return f"too few test evaluations to say ({len(pts)})"
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    end = float(xs[-1])
    e0, e_mid, e_end = float(ys[0]), _at(xs, ys, end / 2), float(ys[-1])
    verdict = "descending" if e_end <= (1 - DESCENT) * e_mid else "plateau"
    text = (f"test error {e0:.3g} -> {e_mid:.3g} -> {e_end:.3g} (at 0, 50, 100% of its {end:,.0f} minibatches; "
            f"best {float(ys.min()):.3g}): {verdict}")
    hf = [r for r in records if "lambda" in r][-LAST:]
    lam = [as_float(r.get("lambda")) for r in hf]
    rho = [v for v in (as_float(r.get("rho")) for r in hf) if v is not None and math.isfinite(v)]
    cg = [v for v in (as_float(r.get("cg_iters")) for r in hf) if v is not None]
    if hf and lam[-1] is not None:
        text += (f"; last {len(hf)} HF iterations: lambda {lam[-1]:.3g}"
                 + (f", median rho {float(np.median(rho)):.2f}" if rho else "")
                 + (f", median CG {float(np.median(cg)):.0f}" if cg else ""))
    return text
