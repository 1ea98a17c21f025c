"""``summary.md``: the Figure 3 numbers as one Markdown table per task, and every run not counted.

Nothing is dropped silently: incomplete runs (no ``result.json`` yet, or interrupted), crashed
runs (status ``error``), refused files (unparsable) and failures whose budget was below the
failure limit (cut short by an override, so not the paper's failure) each get a list, and the
hfrnn versions that produced the runs are stated (a warning when they are mixed).
"""
from __future__ import annotations

import math
from pathlib import Path

from .collect import Run, versions
from .figure3 import Cell, task_sort_key


def _num(x: float, fmt: str = ",.0f") -> str:
    return "–" if x is None or not math.isfinite(x) else format(x, fmt)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def task_table(cells: list[Cell]) -> list[str]:
    """The Markdown table of one task's cells."""
    lines = ["| T | optimizer | runs | solved | failed | failure rate | minibatches to success: mean (min–max) "
             "| mean wall (s) | incomplete | crashed |",
             "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for c in cells:
        span = (f"{_num(c.mean_minibatches)} ({_num(c.min_minibatches)}–{_num(c.max_minibatches)})"
                if c.n_solved else "–")
        lines.append(f"| {c.T} | {c.optimizer} | {c.n_runs} | {c.n_solved} | {c.n_failed} | "
                     f"{_num(c.failure_rate, '.2f')} | {span} | {_num(c.mean_wall_s)} | {c.n_incomplete} | "
                     f"{c.n_crashed} |")
    return lines


def _run_list(title: str, runs: list[Run], root: Path, extra) -> list[str]:
    if not runs:
        return []
    out = [f"## {title} ({len(runs)})", ""]
    out += [f"- `{_rel(r.path, root)}`: {r.label}{extra(r)}" for r in runs]
    return out + [""]


def render(root: Path, runs: list[Run], cells: list[Cell], refused: list[tuple[Path, str]],
           limit: float, outputs: list[Path], out_dir: Path | None = None) -> str:
    """The whole ``summary.md`` text."""
    counts = {s: sum(r.state == s for r in runs)
              for s in ("solved", "failed", "stopped", "incomplete", "crashed", "refused")}
    lines = [f"# hfrnn report: `{root}`", "",
             f"{len(runs)} run directories: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".",
             f"A run fails when it diverges or spends {limit:,.0f} minibatches without success; a run stopped "
             "earlier by its own budget or a cap is listed as stopped; statistics count solved and failed runs only; "
             "minibatches to success are over the solved runs.", ""]
    vers = versions(runs)
    if len(vers) > 1:
        lines += ["**Warning: these runs mix hfrnn versions:** "
                  + ", ".join(f"{v} ({n} run{'s' * (n != 1)})" for v, n in vers.items()) + ".", ""]
    elif vers:
        lines += [f"hfrnn version: {next(iter(vers))}.", ""]
    for task in sorted({c.task for c in cells}, key=task_sort_key):
        lines += [f"## {task}", ""] + task_table([c for c in cells if c.task == task]) + [""]
    mb = lambda r: "" if r.minibatches is None else f", {r.minibatches:,.0f} minibatches so far"  # noqa: E731
    lines += _run_list("Incomplete runs (no result.json, or interrupted)",
                       [r for r in runs if r.state == "incomplete"], root,
                       lambda r: (f" [{r.status}]" if r.status else "") + mb(r))
    lines += _run_list("Crashed runs (status error)", [r for r in runs if r.state == "crashed"], root,
                       lambda r: f" [{r.status}] {r.message}".rstrip())
    lines += _run_list(f"Stopped before {limit:,.0f} minibatches (a smaller budget, a wall-clock or iteration "
                       "cap): neither solved nor failed", [r for r in runs if r.state == "stopped"], root,
                       lambda r: mb(r).replace(" so far", ""))
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
