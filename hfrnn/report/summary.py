"""``summary.md``: the Figure 3 numbers as one Markdown table per task, and every run not counted.

Nothing is dropped silently: the header counts every run directory by its state (the states of
:data:`hfrnn.report.collect.STATES`, the same ones each row's columns count), incomplete runs (no
``result.json`` yet, or interrupted), crashed runs (status ``error``), refused files (unparsable)
and runs stopped before the failure limit (cut short by a budget or a cap, so neither solved nor
failed) each get a list, figures not drawn are said so (a sweep of natural tasks only has no
Figure 3), and the hfrnn versions that produced the runs are stated (a warning when they are
mixed). Losses carry their unit: per sequence (hfrnn >= 0.3, or converted), else per step.
"""
from __future__ import annotations

import math
from pathlib import Path

from .collect import FIGURE3_COUNTED, LISTED, STATES, Run, count_states, read_metrics, versions
from .constants import NATURAL_TASKS, model_sort_key, task_sort_key
from .figure3 import Cell
from .trend import diagnose


def _num(x: float, fmt: str = ",.0f") -> str:
    return "–" if x is None or not math.isfinite(x) else format(x, fmt)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def _loss(c: Cell) -> str:
    return f"{c.test_loss_mean:.4g} {c.test_loss_unit}" if math.isfinite(c.test_loss_mean) else "–"


def task_table(cells: list[Cell], show_model: bool | None = None) -> list[str]:
    """The Markdown table of one task's cells; a model column where more than one model is present.

    ``runs`` counts the solved and failed runs (the statistics); ``stopped``, ``incomplete`` and
    ``crashed`` count the runs in those states (:data:`~hfrnn.report.collect.STATES`)."""
    if show_model is None:
        show_model = len({c.model for c in cells}) > 1
    model_h, model_a = ("model | ", "---|") if show_model else ("", "")
    lines = [f"| T | {model_h}optimizer | runs | solved | failed | failure rate | minibatches to success: mean "
             "(min–max) | mean wall (s) | final test loss (mean) | " + " | ".join(LISTED) + " |",
             f"|---:|{model_a}---|---:|---:|---:|---:|---|---:|---:|" + "---:|" * len(LISTED)]
    for c in cells:
        span = (f"{_num(c.mean_minibatches)} ({_num(c.min_minibatches)}–{_num(c.max_minibatches)})"
                if c.n_solved else "–")
        model = f"{c.model} | " if show_model else ""
        listed = " | ".join(str(getattr(c, f"n_{s}")) for s in LISTED)
        lines.append(f"| {c.T} | {model}{c.optimizer} | {c.n_runs} | {c.n_solved} | {c.n_failed} | "
                     f"{_num(c.failure_rate, '.2f')} | {span} | {_num(c.mean_wall_s)} | {_loss(c)} | {listed} |")
    return lines


def _run_list(title: str, runs: list[Run], root: Path, extra, show_model: bool) -> list[str]:
    if not runs:
        return []
    out = [f"## {title} ({len(runs)})", ""]
    out += [f"- `{_rel(r.path, root)}`: {r.describe(show_model)}{extra(r)}" for r in runs]
    return out + [""]


def _trend(r: Run) -> str:
    """``; <diagnosis>`` of a run that did not solve (:mod:`hfrnn.report.trend`), for tasks with a success rule."""
    if r.metrics_path is None or r.task in NATURAL_TASKS:
        return ""
    return "; " + diagnose(read_metrics(r.metrics_path))


def run_table(runs: list[Run], root: Path) -> list[str]:
    """``## Runs``: every run of a task with a success rule, one row each (seed, state, minibatches,
    wall clock, last test error rate, directory), sorted like Figure 3's cells."""
    if not runs:
        return []
    lines = ["## Runs", "", "| task | T | model | optimizer | seed | state | minibatches | wall (s) | test error | "
             "directory |", "|---|---:|---|---|---:|---|---:|---:|---:|---|"]
    key = lambda r: (task_sort_key(r.task or "?"), r.T or -1, model_sort_key(r.model or "?"),  # noqa: E731
                     r.optimizer or "?", r.seed if r.seed is not None else -1, str(r.path))
    for r in sorted(runs, key=key):
        err = r.result.get("test_error_rate") if r.result else None
        err = f"{err:.4f}" if isinstance(err, (int, float)) and math.isfinite(err) else "–"
        lines.append(f"| {r.task} | {r.T} | {r.model or '?'} | {r.optimizer} | {r.seed} | {r.state} | "
                     f"{_num(r.minibatches)} | {_num(r.wall_s)} | {err} | `{_rel(r.path, root)}` |")
    return lines + [""]


def header(runs: list[Run]) -> str:
    """``N run directories: 3 solved, 1 failed, ...``: every state, counted as each row counts it."""
    counts = count_states(runs)
    return (f"{len(runs)} run directories: " + ", ".join(f"{n} {s}" for s, n in counts.items()
                                                         if n or s in FIGURE3_COUNTED) + ".")


def render(root: Path, runs: list[Run], cells: list[Cell], refused: list[tuple[Path, str]],
           limit: float, outputs: list[Path], out_dir: Path | None = None, notes: list[str] | None = None) -> str:
    """The whole ``summary.md`` text."""
    show_model = len({r.model or "?" for r in runs}) > 1
    lines = [f"# hfrnn report: `{root}`", "", header(runs),
             f"A run fails when it diverges or spends {limit:,.0f} minibatches without success; a run stopped "
             "earlier by its own budget or a cap is listed as stopped; statistics count solved and failed runs only; "
             "minibatches to success are over the solved runs. Final test losses are per sequence (the paper's "
             "objective: summed over scored steps, mean over sequences) where every run's is known per sequence "
             "(hfrnn >= 0.3, or converted with its scored-steps count), else per step (mean over scored steps) for "
             "the whole row.", "",
             "States: " + "; ".join(f"**{s}**: {what}" for s, what in STATES.items()) + ".", ""]
    vers = versions(runs)
    if len(vers) > 1:
        lines += ["**Warning: these runs mix hfrnn versions:** "
                  + ", ".join(f"{v} ({n} run{'s' * (n != 1)})" for v, n in vers.items()) + ".", ""]
    elif vers:
        lines += [f"hfrnn version: {next(iter(vers))}.", ""]
    if show_model:
        models = sorted({r.model or "?" for r in runs}, key=model_sort_key)
        lines += [f"Models: {', '.join(models)} (each (task, T, model, optimizer) is its own cell).", ""]
    if notes:
        lines += ["## Figures left out, and notes", ""] + [f"- {n}" for n in notes] + [""]
    cell_models = len({c.model for c in cells}) > 1  # one model column for every task's table, or none
    for task in sorted({c.task for c in cells}, key=task_sort_key):
        lines += [f"## {task}", ""] + task_table([c for c in cells if c.task == task], cell_models) + [""]
    lines += run_table([r for r in runs if r.task not in NATURAL_TASKS], root)
    mb = lambda r: "" if r.minibatches is None else f", {r.minibatches:,.0f} minibatches so far"  # noqa: E731
    lines += _run_list("Incomplete runs (no result.json, or interrupted)",
                       [r for r in runs if r.state == "incomplete"], root,
                       lambda r: (f" [{r.status}]" if r.status else "") + mb(r) + _trend(r), show_model)
    lines += _run_list(f"Failed runs (diverged, or {limit:,.0f} minibatches without success)",
                       [r for r in runs if r.state == "failed"], root,
                       lambda r: f" [{r.status}]" + mb(r).replace(" so far", "") + _trend(r), show_model)
    lines += _run_list("Crashed runs (status error)", [r for r in runs if r.state == "crashed"], root,
                       lambda r: f" [{r.status}] {r.message}".rstrip(), show_model)
    lines += _run_list(f"Stopped before {limit:,.0f} minibatches (a smaller budget, a wall-clock or iteration "
                       "cap): neither solved nor failed", [r for r in runs if r.state == "stopped"], root,
                       lambda r: mb(r).replace(" so far", "") + _trend(r), show_model)
    if len(vers) > 1:
        lines += ["## Runs by hfrnn version", ""]
        for v in vers:
            lines += [f"- {v}: " + ", ".join(f"`{_rel(r.path, root)}`" for r in runs
                                             if r.result and str(r.version or "unknown") == v)]
        lines += [""]
    if refused:
        lines += [f"## Refused files ({len(refused)})", ""]
        lines += [f"- `{_rel(p, root)}`: {why}" for p, why in refused] + [""]
    if outputs:
        here = out_dir or root  # links relative to summary.md
        lines += ["## Files", ""] + [f"- [{_rel(p, here)}]({_rel(p, here)})" for p in outputs] + [""]
    return "\n".join(lines)
