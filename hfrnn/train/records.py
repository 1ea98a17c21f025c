"""Run records: ``metrics.jsonl`` (one line per iteration) and atomic JSON/checkpoint writes.

A file another tool reads is never half-written: it is written to a temporary file in the same
directory, flushed to disk and renamed over the target (``os.replace`` is atomic on POSIX). That
includes cutting ``metrics.jsonl`` back on resume; a torn last line (a crash in mid-write) is
dropped there.

A directory holds one run: a fresh run claims it by creating ``metrics.jsonl`` exclusively and
refuses a directory that already holds a run's files (:data:`RUN_FILES`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..optim.first_order import FirstOrderStepInfo
from ..optim.hessian_free import HFStepInfo

log = logging.getLogger(__name__)
RUN_FILES = ("result.json", "checkpoint.pt", "metrics.jsonl")  # a directory with any of them holds a run
# A run that ended so never trains again: a resume or a sweep run again reports its recorded result.
FINAL_STATUSES = ("solved", "diverged")


class RunDirInUse(ConfigError):
    """A fresh run aimed at a directory that already holds a run."""


class WriteError(Exception):
    """A run's files could not be written (disk full, read-only); the message is one line."""


def holds_run(run_dir: Path) -> str | None:
    """The first of :data:`RUN_FILES` in ``run_dir``, or None."""
    return next((name for name in RUN_FILES if (Path(run_dir) / name).exists()), None)


def refuse_if_held(run_dir: Path) -> None:
    """Raise :class:`RunDirInUse` if ``run_dir`` already holds a run."""
    held = holds_run(run_dir)
    if held:
        raise RunDirInUse(f"{run_dir} already holds a run ({held} exists): give a new hydra.run.dir, "
                          f"or continue that run with resume={run_dir}")


@functools.singledispatch
def step_record(info: Any) -> dict:
    """An optimiser step's typed record as the fields of its ``metrics.jsonl`` line.

    Values are kept as they are; non-finite numbers become strings in one place only, when a
    line is written (:func:`_clean`).
    """
    raise TypeError(f"no metrics record for {type(info).__name__}")


@step_record.register
def _(info: HFStepInfo) -> dict:
    d = dataclasses.asdict(info)
    d["lambda"] = d.pop("damping")  # DESIGN.md names lambda, rho, cg_iters, ...
    d["lambda_next"] = d.pop("damping_next")
    d["train_loss"] = info.loss_after  # the objective at the parameters the step leaves
    return d


@step_record.register
def _(info: FirstOrderStepInfo) -> dict:
    return {"train_loss": info.loss_before, "grad_norm": info.grad_norm, "accepted": info.accepted,
            "reason": info.reason}


def _clean(x: Any) -> Any:
    """JSON-safe values: non-finite floats become strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


COUNT_KEYS = ("minibatches", "forward_evals")  # sums of fractions: recorded to ROUND_COUNTS decimals
ROUND_COUNTS = 6


def _rounded(record: dict) -> dict:
    """``record`` with its counts rounded for the file (199.99999999999292 -> 200.0); the loop
    keeps its own sums exact as they are."""
    out = dict(record)
    for k in COUNT_KEYS:
        if isinstance(out.get(k), float) and math.isfinite(out[k]):
            out[k] = round(out[k], ROUND_COUNTS)
    return out


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it; 022 meanwhile, the usual value
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file owner-only: keep an existing file's permissions, else give a new
        # file those of open() (0666 less the umask, 0644 usually), as other tools read it.
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (the scalar loggers' CSV cut-back and re-header)."""
    _atomic(path, lambda fh: fh.write(data))


def file_values(record: dict) -> dict:
    """``record`` as every run file writes it: counts rounded, non-finite numbers as strings."""
    return _clean(_rounded(record))


def write_json_atomic(path: Path, obj: dict) -> None:
    _atomic(path, lambda fh: fh.write(json.dumps(_clean(_rounded(obj)), indent=2, sort_keys=True).encode()))


def save_checkpoint_atomic(path: Path, state: dict) -> None:
    try:
        _atomic(path, lambda fh: torch.save(state, fh))
    except RuntimeError as e:  # torch.save reports a short write (a full disk) as a RuntimeError
        raise OSError(f"torch.save failed: {str(e).strip()}") from e


def read_metrics_lines(path: Path) -> tuple[list[str], int]:
    """The lines of ``metrics.jsonl`` that parse as JSON objects, and how many did not.

    A crash can leave a half-written last line; it is dropped, never an error.
    """
    good, bad = [], 0
    for ln in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not ln.strip():
            continue
        try:
            ok = isinstance(json.loads(ln), dict)
        except ValueError:
            ok = False
        if ok:
            good.append(ln)
        else:
            bad += 1
    return good, bad


class MetricsWriter:
    """Appends one JSON object per line and flushes it (a crash loses at most the current line).

    Args:
        path: the ``metrics.jsonl`` of the run.
        truncate_after: on resume, the checkpoint's iteration: later lines (written after the
            checkpoint) and unreadable ones are dropped, atomically.
        fresh: a new run: the file must not exist yet (it is created exclusively, so two runs
            never share it).
    """

    def __init__(self, path: Path, truncate_after: int | None = None, fresh: bool = False) -> None:
        self.path = Path(path)
        if fresh:
            try:
                self._fh = open(self.path, "x", encoding="utf-8")
            except FileExistsError:
                raise RunDirInUse(f"{self.path.parent} already holds a run (metrics.jsonl exists): give a new "
                                  f"hydra.run.dir, or continue that run with resume={self.path.parent}") from None
            return
        if truncate_after is not None and self.path.exists():
            # On resume: keep only the iterations the checkpoint has seen.
            original = self.path.read_bytes()
            lines, bad = read_metrics_lines(self.path)
            kept = [ln for ln in lines if _iteration(ln) <= truncate_after]
            text = "".join(k + "\n" for k in kept).encode()
            if bad:
                log.warning("%s: dropped %d unreadable line(s) (a write cut short by a crash)", self.path, bad)
            if text != original:
                _atomic(self.path, lambda fh: fh.write(text))
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(_clean(_rounded(record)), sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:  # a full disk: the lines were flushed one by one, as far as they went
            pass


def _iteration(line: str) -> float:
    it = json.loads(line).get("iteration", 0)
    return it if isinstance(it, (int, float)) else math.inf
