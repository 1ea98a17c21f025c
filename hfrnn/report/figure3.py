"""Figure 3 of Martens & Sutskever (2011): minibatches to success and failure rates.

For every cell (problem, T, model, optimizer) over the runs that finished (``solved`` or
``failed``, see :mod:`hfrnn.report.collect`):

    failure_rate = n_failed / n_runs
    mean, min, max minibatches to success over the solved runs only

and, as in the paper's figure, one column per problem: the top panel shows the mean minibatches
to success against T with the min and max as error bars, the bottom panel the failure rate; red
is HF with Tikhonov damping only (``hf_nosd``), blue HF with structural damping (``hf``). Where
runs of more than one model are present, each model has its own series (marker, line style and
hatch; colour stays the optimizer's) and the legend names it. Stopped, incomplete and crashed runs
are counted in their own columns, never in the rates. ``test_loss_mean`` is the mean final test
loss of the counted runs, per sequence where every run's is known per sequence, else per step
(``test_loss_unit`` says which; never mixed).
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter

from .collect import FIGURE3_COUNTED, Run, common_loss_unit, finite, loss_pair, pick_loss
from .constants import (NATURAL_TASKS, OPTIMIZER_COLORS, color_of, model_sort_key, model_style, optimizer_sort_key,
                        series_label, task_sort_key)
from .figures import save_figure, suptitle

CSV_FIELDS = ("task", "T", "model", "optimizer", "n_runs", "n_solved", "n_failed", "mean_minibatches",
              "min_minibatches", "max_minibatches", "failure_rate", "mean_wall_s", "test_loss_mean", "test_loss_unit",
              "n_stopped", "n_incomplete", "n_crashed")


@dataclass
class Cell:
    """One (task, T, model, optimizer) cell of Figure 3; NaN where no run gives a value."""

    task: str
    T: int
    optimizer: str
    model: str = "?"
    n_runs: int = 0          # solved + failed
    n_solved: int = 0
    n_failed: int = 0
    mean_minibatches: float = float("nan")
    min_minibatches: float = float("nan")
    max_minibatches: float = float("nan")
    failure_rate: float = float("nan")
    mean_wall_s: float = float("nan")
    test_loss_mean: float = float("nan")
    test_loss_unit: str = ""  # "per sequence" or "per step"
    n_stopped: int = 0
    n_incomplete: int = 0
    n_crashed: int = 0


def aggregate(runs: list[Run]) -> list[Cell]:
    """One :class:`Cell` per (task, T, model, optimizer) seen, sorted in the paper's order."""
    groups: dict[tuple[str, int, str, str], list[Run]] = {}
    for r in runs:
        if r.state != "refused":
            groups.setdefault(r.key, []).append(r)
    cells = []
    for (task, T, model, opt), members in groups.items():
        c = Cell(task=task, T=T, model=model, optimizer=opt)
        done = [r for r in members if r.state in FIGURE3_COUNTED]
        solved = [r.minibatches for r in done if r.state == "solved" and finite(r.minibatches)]
        c.n_runs, c.n_solved = len(done), sum(r.state == "solved" for r in done)
        c.n_failed = c.n_runs - c.n_solved
        c.n_stopped = sum(r.state == "stopped" for r in members)
        c.n_incomplete = sum(r.state == "incomplete" for r in members)
        c.n_crashed = sum(r.state == "crashed" for r in members)
        if solved:
            c.mean_minibatches, c.min_minibatches, c.max_minibatches = (
                float(np.mean(solved)), float(np.min(solved)), float(np.max(solved)))
        if c.n_runs:
            c.failure_rate = c.n_failed / c.n_runs
        walls = [r.wall_s for r in done if finite(r.wall_s)]
        if walls:
            c.mean_wall_s = float(np.mean(walls))
        pairs = [loss_pair(r.result) for r in done]
        pairs = [p for p in pairs if finite(p[0]) or finite(p[1])]
        if pairs:
            c.test_loss_unit = common_loss_unit(pairs)
            c.test_loss_mean = float(np.mean([pick_loss(p, c.test_loss_unit) for p in pairs]))
        cells.append(c)
    return sorted(cells, key=lambda c: (task_sort_key(c.task), c.T, model_sort_key(c.model),
                                        optimizer_sort_key(c.optimizer)))


def write_csv(cells: list[Cell], path: Path) -> None:
    """``figure3.csv``: one row per cell; empty fields where a value is undefined (no solved run)."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for c in cells:
            row = asdict(c)
            for k, v in row.items():
                if isinstance(v, float):
                    row[k] = "" if not np.isfinite(v) else (f"{v:.6g}" if k != "failure_rate" else f"{v:.4f}")
            w.writerow(row)


def drawable(cells: list[Cell]) -> list[Cell]:
    """The cells Figure 3 draws: tasks with a success rule, with a known T."""
    return [c for c in cells if c.task not in NATURAL_TASKS and c.T >= 0]


def plot(cells: list[Cell], path: Path, limit: float = 50_000.0) -> list[Path]:
    """Draw ``figure3.png`` (and its SVG and PDF); returns the paths written, none when no cell
    can be drawn (natural tasks only: no empty figure is written)."""
    fig = figure(cells, limit)
    return save_figure(fig, path) if fig is not None else []


def figure(cells: list[Cell], limit: float = 50_000.0) -> Figure | None:
    """Figure 3 of ``cells`` (one column per task), or None when no cell can be drawn."""
    cells = drawable(cells)
    if not cells:
        return None
    tasks = sorted({c.task for c in cells}, key=task_sort_key)
    models = sorted({c.model for c in cells}, key=model_sort_key)
    opts = sorted({c.optimizer for c in cells}, key=optimizer_sort_key)
    series = sorted({(c.model, c.optimizer) for c in cells},
                    key=lambda s: (optimizer_sort_key(s[1]), model_sort_key(s[0])))
    others = [o for o in opts if o not in OPTIMIZER_COLORS]
    show_model = len(models) > 1
    n = len(tasks)
    fig = Figure(figsize=(2.6 * n + 1.0, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, n, squeeze=False, sharex="col", gridspec_kw={"height_ratios": [2.2, 1]})
    width = 0.8 / len(series)
    # Every panel on the same lengths, as in the paper: a length some problem was not run at is
    # still a tick there, marked "not run", so panels line up and a gap reads as a gap.
    Ts = sorted({c.T for c in cells})
    xpos = {T: i for i, T in enumerate(Ts)}
    for j, task in enumerate(tasks):
        top, bottom = axes[0, j], axes[1, j]
        for T in sorted(set(Ts) - {c.T for c in cells if c.task == task}):
            bottom.text(xpos[T], 0.03, "not run", ha="center", va="bottom", fontsize=6, color="gray")
        for k, (model, opt) in enumerate(series):
            mine = [c for c in cells if c.task == task and c.optimizer == opt and c.model == model]
            if not mine:
                continue
            color, shift = color_of(opt, others), (k - (len(series) - 1) / 2) * width
            marker, ls, hatch = model_style(model, models)
            x = np.array([xpos[c.T] + shift for c in mine])
            mean = np.array([c.mean_minibatches for c in mine])
            ok = np.isfinite(mean)
            if ok.any():
                lo = mean[ok] - np.array([c.min_minibatches for c in mine])[ok]
                hi = np.array([c.max_minibatches for c in mine])[ok] - mean[ok]
                top.errorbar(x[ok], mean[ok], yerr=[lo, hi], fmt=marker, ls=ls, color=color, capsize=3, ms=4,
                             lw=1.2)
            rate = np.array([c.failure_rate for c in mine])
            has = np.isfinite(rate)
            bottom.bar(x[has], rate[has], width=width * 0.9, color=color, hatch=hatch or None,
                       edgecolor="white" if hatch else None, lw=0)
            for xi, c in zip(x, mine):  # failed/finished above each bar; "n/a" where none finished yet
                text = f"{c.n_failed}/{c.n_runs}" if c.n_runs else "n/a"
                y = c.failure_rate if c.n_runs else 0.0
                bottom.text(xi, y + 0.03, text, ha="center", va="bottom", fontsize=6, color=color)
        top.set_title(task.replace("_", " "), fontsize=10)
        top.set_ylim(bottom=0)
        top.grid(alpha=0.3)
        top.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        if not any(np.isfinite(c.mean_minibatches) for c in cells if c.task == task):
            top.text(0.5, 0.5, "no solved run yet", ha="center", va="center", transform=top.transAxes,
                     fontsize=8, color="gray")
            top.set_yticks([])
        bottom.set_ylim(0, 1.15)
        bottom.set_xlim(-0.5, len(Ts) - 0.5)
        bottom.set_xticks(range(len(Ts)), [str(T) for T in Ts])
        bottom.set_xlabel("T")
        bottom.grid(axis="y", alpha=0.3)
        if j == 0:
            top.set_ylabel("minibatches to success\n(mean, min-max)")
            bottom.set_ylabel("failure rate")
    handles = []  # proxies in each series' colour and style (an empty bar container has no colour of its own)
    for model, opt in series:
        marker, ls, hatch = model_style(model, models)
        line = Line2D([], [], color=color_of(opt, others), marker=marker, ls=ls, lw=1.2)
        handles.append((Patch(facecolor=color_of(opt, others), hatch=hatch, edgecolor="white", lw=0), line)
                       if hatch else line)
    labels = [series_label(m, o, show_model, long=True) for m, o in series]
    fig.legend(handles, labels, loc="outside lower center", ncol=max(1, min(len(series), n if n > 1 else 1)),
               fontsize=9, frameon=False)
    title = f"Minibatches to success and failure rate (failure: > {limit:,.0f} minibatches)"
    suptitle(fig, title, fontsize=11)
    return fig
