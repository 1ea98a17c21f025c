"""Reading run directories: find them, parse their files, classify each run.

A *run directory* is any directory holding ``.hydra/``, ``result.json`` or ``metrics.jsonl``
(the files ``hfrnn train`` writes, see ``DESIGN.md``). This module reads those files with the
standard library and PyYAML only (no torch, no Hydra, no hfrnn training code), so sweeps made by
older versions stay readable.

Each run is put in exactly one state (``Run.state``), defined once in :data:`STATES`; the summary's
header, its per-row columns, Table 1 and the command line all count with these states:

- ``solved``: ``result.json`` says success within the failure limit (50,000 minibatches).
- ``failed``: diverged, the limit's worth of minibatches spent without success, or solved only
  after more minibatches than the limit.
- ``stopped``: ``budget_exhausted`` before the limit (a smaller budget, a wall-clock or iteration
  cap): listed, not counted as a failure.
- ``finished``: a natural task (no success rule, Table 1) that ended by its budget.
- ``incomplete``: no ``result.json`` (still running or killed) or status ``interrupted``.
- ``crashed``: status ``error`` (or a status this reader does not know).
- ``refused``: ``result.json`` exists but cannot be parsed.

Figure 3 counts ``solved`` and ``failed`` runs (:data:`FIGURE3_COUNTED`), Table 1 ``finished`` and
``failed`` (diverged) ones (:data:`TABLE1_COUNTED`); the others are listed in the report.

A run's identity is ``(task, T, model, optimizer)`` plus its seed: RNN and LSTM runs never share a
Figure 3 cell.

Losses: hfrnn >= 0.3 records losses per sequence (the paper's objective: summed over scored
steps, mean over sequences; ``result.json`` says so in ``loss_unit``) and ``*_loss_per_step``
beside them; older versions recorded the mean over scored steps. :func:`loss_pair` reads both.
"""
from __future__ import annotations

import ast
import gzip
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .constants import NATURAL_TASKS

FAILURE_LIMIT = 50_000.0  # the paper: more than 50,000 minibatches is a failure
# Every state a run can be in, in the order the report lists them, with what it means.
STATES = {
    "solved": "success within the failure limit",
    "failed": "diverged, or the failure limit spent without success (or success only after it)",
    "stopped": "ended by its own budget or a cap before the failure limit: neither solved nor failed",
    "finished": "a natural task (no success rule) that ended by its budget",
    "incomplete": "no result.json (still running or killed), or interrupted",
    "crashed": "status error (or a status this reader does not know)",
    "refused": "result.json unparsable",
}
FIGURE3_COUNTED = ("solved", "failed")     # the runs Figure 3's statistics count
TABLE1_COUNTED = ("finished", "failed")    # the runs Table 1's means count (failed: diverged)
LISTED = ("stopped", "incomplete", "crashed")  # counted in their own column of each row, never in the statistics
LOSS_UNITS = ("per sequence", "per step")
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
    model: str | None = None           # the architecture's name (rnn, lstm)
    optimizer: str | None = None
    seed: int | None = None
    status: str | None = None          # result.json's status, None when there is no result.json
    state: str = "incomplete"          # one of STATES
    minibatches: float | None = None
    wall_s: float | None = None
    version: str | None = None
    message: str = ""
    budget: float | None = None        # budget.max_minibatches of the run's config
    threshold: float | None = None     # task.success_threshold of the run's config
    result: dict[str, Any] = field(default_factory=dict)
    metrics_path: Path | None = None

    @property
    def key(self) -> tuple[str, int, str, str]:
        """The Figure 3 cell this run belongs to: (task, T, model, optimizer)."""
        return (self.task or "?", self.T if self.T is not None else -1, self.model or "?", self.optimizer or "?")

    @property
    def label(self) -> str:
        """The run's identity with its model: ``addition T=30 rnn hf seed=0``."""
        return self.describe(show_model=True)

    def describe(self, show_model: bool = True) -> str:
        """``task T=.. [model] optimizer seed=..``: the run's identity, the model where it matters."""
        model = f" {self.model or '?'}" if show_model else ""
        return f"{self.task} T={self.T}{model} {self.optimizer} seed={self.seed}"


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
    """The records of a ``metrics.jsonl`` (or of its gzipped copy, ``metrics.jsonl.gz``); unparsable
    lines are skipped and reported in ``refused``."""
    records, bad = [], []
    try:
        if Path(path).suffix == ".gz":
            with gzip.open(path, "rt", errors="replace") as fh:
                lines = fh.read().splitlines()
        else:
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


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping (``.hydra/config.yaml``) read with ``yaml.safe_load``; ``{}`` when absent or unreadable."""
    try:
        data = yaml.safe_load(Path(path).read_text(errors="replace"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _name(x: Any) -> str | None:
    """A config group's name: ``{name: hf, ...}`` or a plain ``hf``."""
    name = x.get("name") if isinstance(x, dict) else x
    return None if name in (None, "") else str(name)


def _identity_from_config(run: Run, cfg: dict[str, Any]) -> None:
    """Fill the fields ``result.json`` lacks from a resolved config (or the run directory's name)."""
    task = cfg.get("task")
    run.task = run.task or _name(task)
    run.model = run.model or _name(cfg.get("model"))
    run.optimizer = run.optimizer or _name(cfg.get("optimizer"))
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
    """The run's state (one of :data:`STATES`) from its task, status and minibatches."""
    if run.status is None or run.status == "interrupted":
        return "incomplete"
    if run.task in NATURAL_TASKS:  # no success rule: a run ends by its budget (Table 1), or diverges
        return {"budget_exhausted": "finished", "solved": "finished", "diverged": "failed"}.get(run.status, "crashed")
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
    # A run kept in results/ (benchmarks/keep_results.py) may have only the gzipped copy.
    metrics = next((p for p in (path / "metrics.jsonl", path / "metrics.jsonl.gz") if p.is_file()), None)
    run.metrics_path = metrics
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
            run.task, run.model, run.optimizer = res.get("task"), res.get("model"), res.get("optimizer")
            run.T = int(res["T"]) if isinstance(res.get("T"), (int, float)) else None
            run.seed = int(res["seed"]) if isinstance(res.get("seed"), (int, float)) else None
            run.status = str(res.get("status")) if res.get("status") is not None else "unknown"
            run.minibatches, run.wall_s = as_float(res.get("minibatches")), as_float(res.get("wall_s"))
            run.version = res.get("hfrnn_version")
            run.message = str(res.get("message") or "")
            if isinstance(res.get("config"), dict):
                _identity_from_config(run, res["config"])
    if None in (run.task, run.T, run.model, run.optimizer, run.seed):
        _identity_from_config(run, read_yaml(path / ".hydra" / "config.yaml"))
    m = DIRNAME.match(path.name)
    if m and None in (run.task, run.T, run.optimizer, run.seed):
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


def count_states(runs: list[Run]) -> dict[str, int]:
    """How many runs are in each state of :data:`STATES` (all states, in order)."""
    return {s: sum(r.state == s for r in runs) for s in STATES}


def states_line(runs: list[Run]) -> str:
    """``3 solved, 1 failed, 2 incomplete``: the states present, in :data:`STATES` order."""
    counts = count_states(runs)
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none"


def is_new_loss(d: dict[str, Any]) -> bool:
    """Whether a ``result.json`` or ``metrics.jsonl`` record holds losses per sequence (hfrnn >= 0.3)."""
    return "loss_unit" in d or "train_loss_per_step" in d or "test_loss_per_step" in d


def loss_pair(d: dict[str, Any], which: str = "test") -> tuple[float, float]:
    """``(per sequence, per step)`` of ``<which>_loss`` in a ``result.json`` or metrics record; NaN where unknown.

    hfrnn >= 0.3 records ``<which>_loss`` per sequence and ``<which>_loss_per_step`` beside it.
    Older versions recorded the mean over scored steps; it is converted to per sequence where the
    record says how many scored steps a sequence holds: ``test_frames / test_sequences`` (the
    natural tasks' test measures). Otherwise the per-sequence value is unknown (NaN).
    """
    loss = as_float(d.get(f"{which}_loss"))
    if loss is None:
        return math.nan, math.nan
    if is_new_loss(d):
        step = as_float(d.get(f"{which}_loss_per_step"))
        return loss, (step if step is not None else math.nan)
    frames, seqs = as_float(d.get("test_frames")), as_float(d.get("test_sequences"))
    if which == "test" and finite(frames) and finite(seqs) and seqs:
        return loss * frames / seqs, loss
    return math.nan, loss


def common_loss_unit(pairs: list[tuple[float, float]]) -> str:
    """``per sequence`` when every value with a loss is known per sequence, else ``per step`` (never mixed)."""
    known = [p for p in pairs if finite(p[0]) or finite(p[1])]
    return "per sequence" if all(finite(p[0]) for p in known) else "per step"


def pick_loss(pair: tuple[float, float], unit: str) -> float:
    return pair[LOSS_UNITS.index(unit)]


def final_record(run: Run) -> dict[str, Any] | None:
    """The run's final evaluation (``result.json``'s ``test_*``) as a metrics record at its final
    minibatches and wall clock; None without one (no result, a crash: its last test is stale)."""
    res = run.result
    if not res or run.state in ("crashed", "refused") or not finite(run.minibatches):
        return None
    tests = {k: v for k, v in res.items() if k.startswith("test_")}
    if not tests:
        return None
    rec: dict[str, Any] = {**tests, "minibatches": run.minibatches, "wall_s": run.wall_s, "final": True}
    if "iterations" in res:
        rec["iteration"] = res["iterations"]
    if is_new_loss(res):
        rec["loss_unit"] = res.get("loss_unit", "per sequence")
    return rec


def with_final(records: list[dict[str, Any]], run: Run, x: str = "minibatches") -> list[dict[str, Any]]:
    """``records`` and, after them, the run's final evaluation (:func:`final_record`) where it is
    later than the last evaluated record or differs from it (else that record is marked
    ``final``): curves then end where ``result.json`` does."""
    final = final_record(run)
    if final is None:
        return records
    tested = [i for i, r in enumerate(records) if any(k.startswith("test_") for k in r)]
    if tested:
        last = records[tested[-1]]
        lx, fx = as_float(last.get(x)), as_float(final.get(x))
        same = all(as_float(last.get(k)) == as_float(v) for k, v in final.items() if k.startswith("test_"))
        if finite(lx) and finite(fx) and lx == fx and same:  # the last evaluation was the final one
            return records[:tested[-1]] + [{**last, "final": True}] + records[tested[-1] + 1:]
        if finite(lx) and finite(fx) and lx > fx:  # a record past the result (a resumed run): keep as written
            return records
    return records + [final]


def ends_final(records: list[dict[str, Any]], key: str) -> bool:
    """Whether the last record holding ``key`` is the run's final evaluation (:func:`with_final`)."""
    return next((bool(r.get("final")) for r in reversed(records) if key in r), False)


DATA_KEYS = ("dataset", "path", "description", "mode", "T")
_DATA_LOG = re.compile(r"hfrnn\.tasks\.natural\]\[INFO\] - task \w+ on .*?: (\{.*\})\s*$", re.M)


def data_record(run: Run) -> dict[str, Any]:
    """What a natural task's data was: ``result.json``'s ``data`` record (dataset, path, description,
    mode, T) where the run wrote one; for older runs, the task's log line (a fallback only); else ``{}``."""
    rec = run.result.get("data")
    if isinstance(rec, dict) and any(k in rec for k in DATA_KEYS):
        return rec
    for log in sorted(run.path.glob("*.log")):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        m = _DATA_LOG.search(text)
        if m:
            try:
                info = ast.literal_eval(m.group(1))
            except (ValueError, SyntaxError):
                return {}
            return info if isinstance(info, dict) else {}
    return {}
