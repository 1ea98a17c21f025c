"""Per-run curves from ``metrics.jsonl``: learning curves and HF diagnostics.

- ``curves_<task>.png``: one column per T, one line per run (red ``hf_nosd``, blue ``hf``; line
  style by model where several are present), against cumulative minibatches (the paper's unit):
  the test error rate with the success threshold dashed (tasks with a success rule), and the test
  loss with its unit (per sequence; per step where an older run's scored-steps count is unknown,
  then for every run of the figure, never mixed). Every curve ends with the run's final evaluation
  from ``result.json`` (a dot), at the run's final minibatches: a run evaluated only every so many
  minibatches (SGD) would otherwise end at its last periodic evaluation. A row no run recorded is
  left out (natural tasks have no error rate), and a figure with nothing to draw is not written.
- ``hf_<task>.png``: per HF iteration the damping lambda (log scale), the reduction ratio
  rho = (f(theta + p) - f(theta)) / (q(p) - q(0)) and the CG iterations run, one column per T.
  Runs without HF fields (e.g. SGD) are left out of these panels.

Each figure is also written as SVG and PDF (:mod:`hfrnn.report.figures`). Records are read as
written: non-finite floats arrive as the strings ``"nan"``/``"inf"`` and are plotted as gaps.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .collect import Run, as_float, common_loss_unit, ends_final, loss_pair, pick_loss, read_metrics, with_final
from .constants import (OPTIMIZER_COLORS, color_of, model_sort_key, model_style, optimizer_sort_key, series_label,
                        task_sort_key)
from .figures import save_figure, suptitle

HF_PANELS = (("lambda", "lambda (damping)", "log"), ("rho", "rho (reduction ratio)", "linear"),
             ("cg_iters", "CG iterations", "linear"))


def series(records: list[dict[str, Any]], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """The records that have ``y``, as float arrays ``(x, y)``; unparsable values become NaN."""
    pts = [(as_float(r.get(x)), as_float(r.get(y))) for r in records if y in r]
    arr = np.array([(np.nan if a is None else a, np.nan if b is None else b) for a, b in pts], dtype=float)
    return (arr[:, 0], arr[:, 1]) if len(arr) else (np.zeros(0), np.zeros(0))


def loss_series(records: list[dict[str, Any]], x: str, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """The test loss of the records that have one, in ``unit`` (``per sequence`` or ``per step``)."""
    pts = [(as_float(r.get(x)), pick_loss(loss_pair(r), unit)) for r in records if "test_loss" in r]
    arr = np.array([(np.nan if a is None else a, b) for a, b in pts], dtype=float)
    return (arr[:, 0], arr[:, 1]) if len(arr) else (np.zeros(0), np.zeros(0))


def _grid(n_rows: int, n_cols: int, title: str) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(3.6 * n_cols + 0.8, 2.6 * n_rows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    suptitle(fig, title, fontsize=11)
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def _legend(fig: Figure, axes: np.ndarray) -> None:
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        ncol = max(1, min(len(handles), 2 * axes.shape[1]))
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=ncol,
                   fontsize=8, frameon=False)


def _T(r: Run) -> int:
    return r.T if r.T is not None else -1


def _empty(ax, text: str = "nothing recorded") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="gray")


def plot_task(task: str, runs: list[Run], metrics: dict[Path, list[dict[str, Any]]], out_dir: Path,
              notes: list[str] | None = None) -> list[Path]:
    """Write the learning-curve and HF-diagnostics figures of one task; returns the paths written.
    What was left out and why is appended to ``notes``."""
    notes = notes if notes is not None else []
    runs = [r for r in runs if metrics.get(r.path)]
    if not runs:
        return []
    records = {r.path: with_final(metrics[r.path], r) for r in runs}
    Ts = sorted({_T(r) for r in runs})
    opts = sorted({r.optimizer or "?" for r in runs}, key=optimizer_sort_key)
    models = sorted({r.model or "?" for r in runs}, key=model_sort_key)
    others = [o for o in opts if o not in OPTIMIZER_COLORS]
    show_model = len(models) > 1
    name = task.replace("/", "_")
    written: list[Path] = []

    def style(r: Run) -> dict[str, Any]:
        return {"color": color_of(r.optimizer or "?", others), "ls": model_style(r.model or "?", models)[1],
                "label": series_label(r.model or "?", r.optimizer or "?", show_model)}

    has_error = any("test_error_rate" in rec for recs in records.values() for rec in recs)
    losses = [loss_pair(rec) for recs in records.values() for rec in recs if "test_loss" in rec]
    rows = (["error"] if has_error else []) + (["loss"] if losses else [])
    if not rows:
        notes.append(f"curves_{name}: not written: no run of {task} recorded a test evaluation yet.")
    else:
        if not has_error:
            notes.append(f"curves_{name}: no test error rate recorded ({task} has no success rule): "
                         "the test loss only.")
        unit = common_loss_unit(losses) if losses else ""
        if unit == "per step":
            notes.append(f"curves_{name}: test loss per step: a run of hfrnn < 0.3 recorded its loss per step "
                         "without the scored steps per sequence, so no run is shown per sequence.")
        what = " and ".join({"error": "test error rate", "loss": f"test loss ({unit})"}[k] for k in rows)
        fig, axes = _grid(len(rows), len(Ts), f"{task}: {what} vs minibatches (one line per run; dot: final)")
        for j, T in enumerate(Ts):
            mine = sorted((r for r in runs if _T(r) == T),
                          key=lambda r: (optimizer_sort_key(r.optimizer or "?"), model_sort_key(r.model or "?"),
                                         r.seed or 0))
            for i, row in enumerate(rows):
                ax, drawn = axes[i, j], 0
                for r in mine:
                    if row == "error":
                        x, y = series(records[r.path], "minibatches", "test_error_rate")
                    else:
                        x, y = loss_series(records[r.path], "minibatches", unit)
                    if not len(x):
                        continue
                    st = style(r)
                    ax.plot(x, y, lw=1, alpha=0.8, **st)
                    if ends_final(records[r.path], "test_error_rate" if row == "error" else "test_loss"):
                        ax.plot(x[-1:], y[-1:], marker="o", ms=3, color=st["color"], ls="none")
                    drawn += 1
                if row == "error":
                    thr = next((r.threshold for r in runs if r.threshold is not None), None)
                    if thr is not None and drawn:
                        ax.axhline(thr, color="k", ls="--", lw=0.8, label="success threshold")
                    ax.set_ylim(-0.02, 1.02)
                    if j == 0:
                        ax.set_ylabel("test error rate")
                else:
                    finite_y = [v for line in ax.get_lines() for v in np.asarray(line.get_ydata(), float)
                                if np.isfinite(v)]
                    if finite_y and min(finite_y) > 0 and max(finite_y) >= 20 * min(finite_y):  # over a decade
                        ax.set_yscale("log")
                    if j == 0:
                        ax.set_ylabel(f"test loss {unit}")
                if not drawn:
                    _empty(ax, "no evaluation recorded")
                if i == 0:
                    ax.set_title(f"T={T}", fontsize=10)
                if i == len(rows) - 1:
                    ax.set_xlabel("minibatches")
                ax.grid(alpha=0.3)
        _legend(fig, axes)
        written += save_figure(fig, out_dir / f"curves_{name}.png")

    hf_runs = [r for r in runs if any("lambda" in rec for rec in metrics[r.path])]
    if hf_runs:
        Ts_hf = sorted({_T(r) for r in hf_runs})
        fig, axes = _grid(len(HF_PANELS), len(Ts_hf), f"{task}: HF diagnostics per iteration")
        for j, T in enumerate(Ts_hf):
            for i, (key, ylabel, scale) in enumerate(HF_PANELS):
                ax = axes[i, j]
                for r in (r for r in hf_runs if _T(r) == T):
                    x, y = series(metrics[r.path], "iteration", key)
                    if scale == "log":
                        y = np.where(y > 0, y, np.nan)
                    ax.plot(x, y, lw=1, alpha=0.8, **style(r))
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
        written += save_figure(fig, out_dir / f"hf_{name}.png")
    return written


def plot_all(runs: list[Run], out_dir: Path, refused: list[tuple[Path, str]],
             notes: list[str] | None = None) -> list[Path]:
    """Curves and diagnostics for every task with metrics; unparsable lines go to ``refused``,
    figures left out (and why) to ``notes``."""
    metrics = {r.path: read_metrics(r.metrics_path, refused) for r in runs if r.metrics_path is not None}
    written: list[Path] = []
    for task in sorted({r.task or "?" for r in runs}, key=task_sort_key):
        written += plot_task(task, [r for r in runs if (r.task or "?") == task], metrics, out_dir, notes)
    return written
