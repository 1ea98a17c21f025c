"""Reading run directories: find them, parse their files, classify each run.

A *run directory* is any directory holding ``.hydra/``, ``result.json`` or ``metrics.jsonl``
(the files ``hfrnn train`` writes, see ``DESIGN.md``). This module reads those files with the
standard library only (no torch, no Hydra, no hfrnn training code), so sweeps made by older
versions stay readable.

Each run is put in one class (``Run.state``):

- ``solved``: ``result.json`` says success within the failure limit (50,000 minibatches).
- ``failed``: diverged, the limit's worth of minibatches spent without success, or solved only
  after more minibatches than the limit.
- ``stopped``: ``budget_exhausted`` before the limit (a smaller budget, a wall-clock or iteration
  cap): listed, not counted as a failure.
- ``incomplete``: no ``result.json`` (still running or killed) or status ``interrupted``.
- ``crashed``: status ``error`` (or a status this reader does not know).
- ``refused``: ``result.json`` exists but cannot be parsed.

Only ``solved`` and ``failed`` runs enter the statistics; the others are listed in the report.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAILURE_LIMIT = 50_000.0  # the paper: more than 50,000 minibatches is a failure
SKIP_DIRS = {".hydra", ".submitit", "__pycache__", ".git"}
# The run directory names of configs/train.yaml: "<job>_<task>_T<T>_<optimizer>_s<seed>" (sweeps),
# "<HH-MM-SS>_<task>_T<T>_<optimizer>_s<seed>" (single runs); a last resort for identifying a run.
DIRNAME = re.compile(r"^(?:[\d-]+_)?(?P<task>[a-z].*?)_T(?P<T>\d+)_(?P<optimizer>.+)_s(?P<seed>\d+)$")


@dataclass
class Run:
    """One run directory and what its files say (``None`` where a file did not say)."""

    path: Path
    task: str | None = None
    T: int | None = None
    optimizer: str | None = None
    seed: int | None = None
    status: str | None = None          # result.json's status, None when there is no result.json
    state: str = "incomplete"          # solved | failed | stopped | incomplete | crashed | refused
    minibatches: float | None = None
    wall_s: float | None = None
    version: str | None = None
    message: str = ""
    budget: float | None = None        # budget.max_minibatches of the run's config
    threshold: float | None = None     # task.success_threshold of the run's config
    result: dict[str, Any] = field(default_factory=dict)
    metrics_path: Path | None = None

    @property
    def key(self) -> tuple[str, int, str]:
        """The Figure 3 cell this run belongs to: (task, T, optimizer)."""
        return (self.task or "?", self.T if self.T is not None else -1, self.optimizer or "?")

    @property
    def label(self) -> str:
        return f"{self.task} T={self.T} {self.optimizer} seed={self.seed}"


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds the files of one run."""
    return (path / ".hydra").is_dir() or (path / "result.json").is_file() or (path / "metrics.jsonl").is_file()


def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory at or below ``root`` (runs do not nest), sorted by path."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if here != root and is_run_dir(here):
            found.append(here)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
    return sorted(found)


def as_float(x: Any) -> float | None:
    """A JSON number or the strings ``"nan"``/``"inf"`` the writer uses for non-finite floats."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def read_metrics(path: Path, refused: list[tuple[Path, str]] | None = None) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; unparsable lines are skipped and reported in ``refused``."""
    records, bad = [], []
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        if refused is not None:
            refused.append((Path(path), f"unreadable: {e}"))
        return []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            records.append(rec)
        except ValueError:
            bad.append(i)
    if bad and refused is not None:
        refused.append((Path(path), f"{len(bad)} unparsable line(s), first at line {bad[0]}; skipped"))
    return records


def read_block_yaml(path: Path) -> dict[str, Any]:
    """Nested block mappings of scalars (what Hydra writes in ``.hydra/config.yaml``), by hand."""
    out: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, out)]
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        m = re.match(r"^( *)([A-Za-z_][\w]*):\s*(.*?)\s*$", line)
        if not m:
            continue
        indent, key, value = len(m.group(1)), m.group(2), m.group(3)
        while stack[-1][0] >= indent:
            stack.pop()
        if value == "":
            child: dict[str, Any] = {}
            stack[-1][1][key] = child
            stack.append((indent, child))
        else:
            v = value.strip("'\"")
            stack[-1][1][key] = None if v == "null" else v
    return out


def _identity_from_config(run: Run, cfg: dict[str, Any]) -> None:
    """Fill the fields ``result.json`` lacks from a (resolved or hand-read) config."""
    task, opt = cfg.get("task"), cfg.get("optimizer")
    run.task = run.task or (task.get("name") if isinstance(task, dict) else task)
    run.optimizer = run.optimizer or (opt.get("name") if isinstance(opt, dict) else opt)
    for name in ("T", "seed"):
        if getattr(run, name) is None and cfg.get(name) not in (None, ""):
            try:
                setattr(run, name, int(cfg[name]))
            except (TypeError, ValueError):
                pass
    budget = cfg.get("budget")
    run.budget = run.budget or as_float(budget.get("max_minibatches") if isinstance(budget, dict) else budget)
    thr = task.get("success_threshold") if isinstance(task, dict) else cfg.get("threshold")
    run.threshold = run.threshold or as_float(thr)


def classify(run: Run, limit: float = FAILURE_LIMIT) -> str:
    """The run's state from its status and minibatches (see the module docstring)."""
    if run.status is None or run.status == "interrupted":
        return "incomplete"
    if run.status == "solved" and run.result.get("success", True) is not False:
        over = run.minibatches is not None and run.minibatches > limit
        return "failed" if over else "solved"
    if run.status == "budget_exhausted" and run.minibatches is not None and run.minibatches < limit:
        # Stopped by a smaller budget, a wall-clock or iteration cap: not a failure in the
        # paper's sense (50,000 minibatches), and not a success either.
        return "stopped"
    if run.status in ("budget_exhausted", "diverged"):
        return "failed"
    return "crashed"


def read_run(path: Path, refused: list[tuple[Path, str]], limit: float = FAILURE_LIMIT) -> Run:
    """Read one run directory; files that fail to parse are appended to ``refused``."""
    path = Path(path)
    run = Run(path=path)
    metrics = path / "metrics.jsonl"
    run.metrics_path = metrics if metrics.is_file() else None
    result_path = path / "result.json"
    if result_path.is_file():
        try:
            res = json.loads(result_path.read_text())
            if not isinstance(res, dict):
                raise ValueError("not a JSON object")
        except (ValueError, OSError) as e:
            refused.append((result_path, f"unparsable: {e}"))
            run.state = "refused"
            res = {}
        if res:
            run.result = res
            run.task, run.optimizer = res.get("task"), res.get("optimizer")
            run.T = int(res["T"]) if isinstance(res.get("T"), (int, float)) else None
            run.seed = int(res["seed"]) if isinstance(res.get("seed"), (int, float)) else None
            run.status = str(res.get("status")) if res.get("status") is not None else "unknown"
            run.minibatches, run.wall_s = as_float(res.get("minibatches")), as_float(res.get("wall_s"))
            run.version = res.get("hfrnn_version")
            run.message = str(res.get("message") or "")
            if isinstance(res.get("config"), dict):
                _identity_from_config(run, res["config"])
    if run.task is None or run.T is None or run.optimizer is None or run.seed is None:
        _identity_from_config(run, read_block_yaml(path / ".hydra" / "config.yaml"))
    m = DIRNAME.match(path.name)
    if m and (run.task is None or run.T is None or run.optimizer is None or run.seed is None):
        _identity_from_config(run, m.groupdict())
    if run.state != "refused":
        run.state = classify(run, limit)
    if run.state == "incomplete" and run.metrics_path is not None and run.minibatches is None:
        tail = read_metrics(run.metrics_path)  # how far an unfinished run got
        if tail:
            run.minibatches, run.wall_s = as_float(tail[-1].get("minibatches")), as_float(tail[-1].get("wall_s"))
    return run


def collect(root: Path, limit: float = FAILURE_LIMIT) -> tuple[list[Run], list[tuple[Path, str]]]:
    """All runs at or below ``root`` and the list of files refused while reading them."""
    refused: list[tuple[Path, str]] = []
    runs = [read_run(p, refused, limit) for p in find_run_dirs(root)]
    return runs, refused


def versions(runs: list[Run]) -> dict[str, int]:
    """How many runs each ``hfrnn_version`` produced (``"unknown"`` for runs without one)."""
    counts: dict[str, int] = {}
    for r in runs:
        if r.result:
            v = str(r.version or "unknown")
            counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items()))


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
