"""Sweeps that continue: a job's directory is named by the run's identity, and a job whose directory
already holds a run continues it instead of starting again.

A multirun writes every job into ``<sweep dir>/<identity>`` where the identity is

    <task>_T<T>_<model>_<optimizer>_s<seed>[_<other overrides>]

(the other overrides: every command-line override of the job except the identity's own keys, the
experiment preset, which names the sweep directory, and the keys a resume may change because they
do not alter the optimisation, :data:`hfrnn.train.checkpoint.RESUMABLE_CHANGES`). The name does not
hold the job's number, so the same run lands in the same directory whichever sweep command
(a subset, a superset, another order) starts it. Running a sweep again therefore:

- skips a run that ended ``solved`` or ``diverged`` (also one kept without its checkpoint, as
  ``benchmarks/keep_results.py`` keeps solved runs), or whose budget is spent under the new limits
  (its files are left as they are; :func:`hfrnn.train.loop.fit`'s resume rule);
- resumes a run that was interrupted, capped by the wall clock or stopped by a smaller budget, from
  its checkpoint (refusing, in one line, a changed setting that would alter the optimisation);
- starts again a job that left no checkpoint (it failed before its first iteration, or was killed
  before writing one), after moving what it left into ``previous-<k>/`` so nothing is lost.

This module is Hydra-free: it works on override strings and directories. The Hydra side (the
``hfrnn_overrides`` resolver used by ``configs/train.yaml``) is in :mod:`hfrnn.config`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .checkpoint import CHECKPOINT, RESUMABLE_CHANGES
from .records import FINAL_STATUSES, RUN_FILES, holds_run

log = logging.getLogger(__name__)

# Keys already in the identity's fixed part, or naming the sweep directory itself.
IDENTITY_KEYS = ("task", "T", "model", "optimizer", "seed", "experiment")
# Longer names are replaced by a digest (file systems cap a name at 255 bytes).
MAX_EXTRA_CHARS = 80


def _key(override: str) -> str:
    """The key of ``key=value`` (without ``+``/``++``/``~`` or an ``@package``)."""
    return override.lstrip("+~").split("=", 1)[0].split("@", 1)[0].strip()


def _changes_the_run(key: str) -> bool:
    if key in IDENTITY_KEYS or key == "hydra" or key.startswith(("hydra.", "hydra/")):
        return False
    return not any(key == r or key.startswith(r + ".") for r in RESUMABLE_CHANGES)


def extra_name(overrides: Iterable[str]) -> str:
    """The part of a job's directory name that its other overrides make, ``""`` when none.

    ``["task=xor", "T=100", "hidden=50", "budget.max_wall_s=60"]`` -> ``"_hidden=50"``; several
    are sorted and joined by commas; characters a path cannot hold safely become ``-``; a name
    longer than :data:`MAX_EXTRA_CHARS` becomes ``_cfg-<12 hex digits of its SHA-1>``.
    """
    kept = sorted(str(o).strip() for o in overrides if _changes_the_run(_key(str(o))))
    if not kept:
        return ""
    text = ",".join(re.sub(r"[^A-Za-z0-9._=,+-]", "-", o) for o in kept)
    if len(text) > MAX_EXTRA_CHARS:
        text = "cfg-" + hashlib.sha1(",".join(kept).encode()).hexdigest()[:12]
    return "_" + text


@dataclass(frozen=True)
class Continuation:
    """What a sweep job does with its directory: ``fresh`` (start a run), ``resume`` (continue the
    run whose checkpoint is there; a finished one is then left as it is), ``done`` (a run that ended
    for good and has no checkpoint: ``result`` is its record, nothing runs) or ``restart`` (start
    again after moving a failed start's files into ``moved_to``)."""

    action: str
    moved_to: Path | None = None
    result: dict | None = None


def continue_job(job_dir: Path) -> Continuation:
    """Decide (and prepare) what the sweep job in ``job_dir`` does; see the module docstring."""
    job_dir = Path(job_dir)
    if holds_run(job_dir) is None:
        return Continuation("fresh")
    if (job_dir / CHECKPOINT).is_file():
        return Continuation("resume")
    result = _read_json(job_dir / "result.json")
    if result is not None and result.get("status") in FINAL_STATUSES:
        return Continuation("done", result=result)
    return Continuation("restart", set_aside(job_dir))


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def set_aside(job_dir: Path) -> Path:
    """Move a run's files (and the job log beside them) into a new ``previous-<k>/`` inside ``job_dir``."""
    k = 1
    while (job_dir / f"previous-{k}").exists():
        k += 1
    dest = job_dir / f"previous-{k}"
    dest.mkdir()
    for name in RUN_FILES:
        if (job_dir / name).exists():
            shutil.move(str(job_dir / name), str(dest / name))
    log.warning("%s: an earlier attempt left no checkpoint; its files are in %s and the job starts again",
                job_dir, dest)
    return dest
