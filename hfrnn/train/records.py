"""Run records: ``metrics.jsonl`` (one line per iteration) and atomic JSON/checkpoint writes.

A file another tool reads is never half-written: it is written to a temporary file in the same
directory, flushed to disk and renamed over the target (``os.replace`` is atomic on POSIX).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _clean(x: Any) -> Any:
    """JSON-safe values: non-finite floats become strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _atomic(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, obj: dict) -> None:
    _atomic(path, lambda fh: fh.write(json.dumps(_clean(obj), indent=2, sort_keys=True).encode()))


def save_checkpoint_atomic(path: Path, state: dict) -> None:
    _atomic(path, lambda fh: torch.save(state, fh))


class MetricsWriter:
    """Appends one JSON object per line and flushes it (a crash loses at most the current line)."""

    def __init__(self, path: Path, truncate_after: int | None = None) -> None:
        self.path = Path(path)
        if truncate_after is not None and self.path.exists():
            # On resume: keep only the iterations the checkpoint has seen.
            kept = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("iteration", 0) <= truncate_after]
            self.path.write_text("".join(k + "\n" for k in kept))
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(_clean(record), sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
