"""Per-run curves from ``metrics.jsonl``: learning curves and HF diagnostics.

- ``curves_<task>.png``: test error rate against cumulative minibatches (the paper's unit), one
  panel per T, one line per run (red ``hf_nosd``, blue ``hf``), the success threshold dashed.
- ``hf_<task>.png``: per HF iteration the damping lambda (log scale), the reduction ratio
  rho = (f(theta + p) - f(theta)) / (q(p) - q(0)) and the CG iterations run, one column per T.
  Runs without HF fields (e.g. SGD) are left out of these panels.

Records are read as written: non-finite floats arrive as the strings ``"nan"``/``"inf"`` and are
plotted as gaps.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .collect import Run, as_float, read_metrics
from .figure3 import color_of, optimizer_sort_key, task_sort_key

HF_PANELS = (("lambda", "lambda (damping)", "log"), ("rho", "rho (reduction ratio)", "linear"),
             ("cg_iters", "CG iterations", "linear"))


def series(records: list[dict[str, Any]], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """The records that have ``y``, as float arrays ``(x, y)``; unparsable values become NaN."""
    pts = [(as_float(r.get(x)), as_float(r.get(y))) for r in records if y in r]
    arr = np.array([(np.nan if a is None else a, np.nan if b is None else b) for a, b in pts], dtype=float)
    return (arr[:, 0], arr[:, 1]) if len(arr) else (np.zeros(0), np.zeros(0))


def _grid(n_rows: int, n_cols: int, title: str) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(3.6 * n_cols + 0.8, 2.6 * n_rows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=11)
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def _legend(fig: Figure, axes: np.ndarray) -> None:
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles),
                   fontsize=8, frameon=False)


def plot_task(task: str, runs: list[Run], metrics: dict[Path, list[dict[str, Any]]], out_dir: Path) -> list[Path]:
    """Write the learning-curve and HF-diagnostics PNGs of one task; returns the paths written."""
    runs = [r for r in runs if metrics.get(r.path)]
    if not runs:
        return []
    Ts = sorted({r.T if r.T is not None else -1 for r in runs})
    opts = sorted({r.optimizer or "?" for r in runs}, key=optimizer_sort_key)
    others = [o for o in opts if o not in ("hf", "hf_nosd")]
    name = task.replace("/", "_")
    written = []

    fig, axes = _grid(1, len(Ts), f"{task}: test error rate vs minibatches (one line per run)")
    for j, T in enumerate(Ts):
        ax = axes[0, j]
        for r in sorted((r for r in runs if (r.T if r.T is not None else -1) == T),
                        key=lambda r: (optimizer_sort_key(r.optimizer or "?"), r.seed or 0)):
            x, y = series(metrics[r.path], "minibatches", "test_error_rate")
            if len(x):
                ax.plot(x, y, color=color_of(r.optimizer or "?", others), lw=1, alpha=0.8, label=r.optimizer)
        thr = next((r.threshold for r in runs if r.threshold is not None), None)
        if thr is not None:
            ax.axhline(thr, color="k", ls="--", lw=0.8, label="success threshold")
        ax.set_title(f"T={T}", fontsize=10)
        ax.set_xlabel("minibatches")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if j == 0:
            ax.set_ylabel("test error rate")
    _legend(fig, axes)
    path = out_dir / f"curves_{name}.png"
    fig.savefig(path, dpi=100)
    written.append(path)

    hf_runs = [r for r in runs if any("lambda" in rec for rec in metrics[r.path])]
    if hf_runs:
        Ts_hf = sorted({r.T if r.T is not None else -1 for r in hf_runs})
        fig, axes = _grid(len(HF_PANELS), len(Ts_hf), f"{task}: HF diagnostics per iteration")
        for j, T in enumerate(Ts_hf):
            for i, (key, ylabel, scale) in enumerate(HF_PANELS):
                ax = axes[i, j]
                for r in (r for r in hf_runs if (r.T if r.T is not None else -1) == T):
                    x, y = series(metrics[r.path], "iteration", key)
                    if scale == "log":
                        y = np.where(y > 0, y, np.nan)
                    ax.plot(x, y, color=color_of(r.optimizer or "?", others), lw=1, alpha=0.8, label=r.optimizer)
                ax.set_yscale(scale)
                ax.grid(alpha=0.3)
                if i == 0:
                    ax.set_title(f"T={T}", fontsize=10)
                if i == len(HF_PANELS) - 1:
                    ax.set_xlabel("HF iteration")
                if j == 0:
                    ax.set_ylabel(ylabel)
                if key == "rho":  # the damping rule's thresholds (Levenberg-Marquardt: 1/4, 3/4)
                    for level in (0.25, 0.75):
                        ax.axhline(level, color="k", ls=":", lw=0.7)
                    lo, hi = ax.get_ylim()  # one wild rejected step would flatten the rest
                    ax.set_ylim(max(lo, -2.0), min(hi, 3.0))
        _legend(fig, axes)
        path = out_dir / f"hf_{name}.png"
        fig.savefig(path, dpi=100)
        written.append(path)
    return written


def plot_all(runs: list[Run], out_dir: Path, refused: list[tuple[Path, str]]) -> list[Path]:
    """Curves and diagnostics for every task with metrics; unparsable lines go to ``refused``."""
    metrics = {r.path: read_metrics(r.metrics_path, refused) for r in runs if r.metrics_path is not None}
    written: list[Path] = []
    for task in sorted({r.task or "?" for r in runs}, key=task_sort_key):
        written += plot_task(task, [r for r in runs if (r.task or "?") == task], metrics, out_dir)
    return written
