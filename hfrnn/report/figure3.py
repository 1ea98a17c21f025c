"""Figure 3 of Martens & Sutskever (2011): minibatches to success and failure rates.

For every cell (problem, T, optimizer) over the runs that finished (``solved`` or ``failed``,
see :mod:`hfrnn.report.collect`):

    failure_rate = n_failed / n_runs
    mean, min, max minibatches to success over the solved runs only

and, as in the paper's figure, one column per problem: the top panel shows the mean minibatches
to success against T with the min and max as error bars, the bottom panel the failure rate; red
is HF with Tikhonov damping only (``hf_nosd``), blue HF with structural damping (``hf``).
Incomplete and crashed runs are counted in their own columns, never in the rates.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import StrMethodFormatter

from .collect import Run, finite

# The paper's problems in the paper's order; other tasks follow alphabetically.
TASK_ORDER = ("addition", "multiplication", "temporal_order", "temporal_order_3bit", "random_permutation",
              "xor", "memorization", "memorization_20bit")
NATURAL_TASKS = ("bouncing_balls", "midi", "speech")  # no success rule: not part of Figure 3
COLORS = {"hf": "tab:blue", "hf_nosd": "tab:red"}
OTHER_COLORS = ("tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:gray")
CSV_FIELDS = ("task", "T", "optimizer", "n_runs", "n_solved", "n_failed", "mean_minibatches", "min_minibatches",
              "max_minibatches", "failure_rate", "mean_wall_s", "n_incomplete", "n_crashed")


@dataclass
class Cell:
    """One (task, T, optimizer) cell of Figure 3; NaN where no run gives a value."""

    task: str
    T: int
    optimizer: str
    n_runs: int = 0          # solved + failed
    n_solved: int = 0
    n_failed: int = 0
    mean_minibatches: float = float("nan")
    min_minibatches: float = float("nan")
    max_minibatches: float = float("nan")
    failure_rate: float = float("nan")
    mean_wall_s: float = float("nan")
    n_incomplete: int = 0
    n_crashed: int = 0


def task_sort_key(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task), "") if task in TASK_ORDER else (len(TASK_ORDER), task)


def optimizer_sort_key(opt: str) -> tuple[int, str]:
    return ({"hf_nosd": 0, "hf": 1}.get(opt, 2), opt)


def color_of(opt: str, others: list[str]) -> str:
    """Red for hf_nosd, blue for hf (the paper's colours), then a fixed cycle."""
    if opt in COLORS:
        return COLORS[opt]
    return OTHER_COLORS[others.index(opt) % len(OTHER_COLORS)] if opt in others else "black"


def aggregate(runs: list[Run]) -> list[Cell]:
    """One :class:`Cell` per (task, T, optimizer) seen, sorted in the paper's order."""
    groups: dict[tuple[str, int, str], list[Run]] = {}
    for r in runs:
        if r.state != "refused":
            groups.setdefault(r.key, []).append(r)
    cells = []
    for (task, T, opt), members in groups.items():
        c = Cell(task=task, T=T, optimizer=opt)
        done = [r for r in members if r.state in ("solved", "failed")]
        solved = [r.minibatches for r in done if r.state == "solved" and finite(r.minibatches)]
        c.n_runs, c.n_solved = len(done), sum(r.state == "solved" for r in done)
        c.n_failed = c.n_runs - c.n_solved
        c.n_incomplete = sum(r.state in ("incomplete", "stopped") for r in members)
        c.n_crashed = sum(r.state == "crashed" for r in members)
        if solved:
            c.mean_minibatches, c.min_minibatches, c.max_minibatches = (
                float(np.mean(solved)), float(np.min(solved)), float(np.max(solved)))
        if c.n_runs:
            c.failure_rate = c.n_failed / c.n_runs
        walls = [r.wall_s for r in done if finite(r.wall_s)]
        if walls:
            c.mean_wall_s = float(np.mean(walls))
        cells.append(c)
    return sorted(cells, key=lambda c: (task_sort_key(c.task), c.T, optimizer_sort_key(c.optimizer)))


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


def plot(cells: list[Cell], path: Path, limit: float = 50_000.0) -> list[str]:
    """Draw ``figure3.png``; returns the tasks drawn (natural tasks are left out)."""
    cells = [c for c in cells if c.task not in NATURAL_TASKS and c.T >= 0]
    tasks = sorted({c.task for c in cells}, key=task_sort_key)
    opts = sorted({c.optimizer for c in cells}, key=optimizer_sort_key)
    others = [o for o in opts if o not in COLORS]
    n = max(len(tasks), 1)
    fig = Figure(figsize=(2.6 * n + 1.0, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, n, squeeze=False, sharex="col", gridspec_kw={"height_ratios": [2.2, 1]})
    width = 0.8 / max(len(opts), 1)
    for j, task in enumerate(tasks):
        top, bottom = axes[0, j], axes[1, j]
        Ts = sorted({c.T for c in cells if c.task == task})
        xpos = {T: i for i, T in enumerate(Ts)}
        for k, opt in enumerate(opts):
            mine = [c for c in cells if c.task == task and c.optimizer == opt]
            if not mine:
                continue
            color, shift = color_of(opt, others), (k - (len(opts) - 1) / 2) * width
            x = np.array([xpos[c.T] + shift for c in mine])
            mean = np.array([c.mean_minibatches for c in mine])
            ok = np.isfinite(mean)
            if ok.any():
                lo = mean[ok] - np.array([c.min_minibatches for c in mine])[ok]
                hi = np.array([c.max_minibatches for c in mine])[ok] - mean[ok]
                top.errorbar(x[ok], mean[ok], yerr=[lo, hi], fmt="o-", color=color, capsize=3, ms=4, lw=1.2,
                             label=opt)
            rate = np.array([c.failure_rate for c in mine])
            has = np.isfinite(rate)
            bottom.bar(x[has], rate[has], width=width * 0.9, color=color, label=opt)
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
    if opts:  # proxies in each optimiser's colour (an empty bar container has no colour of its own)
        names = {"hf": "HF, structural damping (hf)", "hf_nosd": "HF, Tikhonov damping only (hf_nosd)"}
        handles = [Line2D([], [], color=color_of(o, others), marker="o", lw=1.2) for o in opts]
        fig.legend(handles, [names.get(o, o) for o in opts], loc="outside lower center",
                   ncol=len(opts), fontsize=9, frameon=False)
    fig.suptitle(f"Minibatches to success and failure rate (failure: > {limit:,.0f} minibatches)", fontsize=11)
    fig.savefig(path, dpi=110)
    return tasks
