"""Scalar loggers chosen by config (``logger=``): TensorBoard event files and/or a CSV file.

``metrics.jsonl`` is always written, one line per iteration (:class:`~hfrnn.train.records.MetricsWriter`);
these loggers receive the records the progress line reports (every ``log_every`` iterations, each
test evaluation, and the last iteration of a run segment), beside it in the run directory:

- ``tensorboard``: ``<run dir>/tb/``, through ``torch.utils.tensorboard.SummaryWriter``; the step
  is the iteration, tags are grouped (``train/loss``, ``test/error_rate``, ``hf/rho``,
  ``counters/minibatches``). Needs the ``loggers`` extra: ``pip install 'hfrnn[loggers]'``.
- ``csv``: ``<run dir>/metrics.csv``, one row per record; the header is the union of the keys seen
  (the file is rewritten, atomically, the few times a new key appears, e.g. at the first test
  evaluation).

Resume continues both without duplicates, as ``metrics.jsonl`` does: rows after the checkpoint's
iteration (written before a crash) are cut from the CSV, and TensorBoard is told to purge its
events from that step on (``purge_step``). Both are flushed before every checkpoint, so nothing a
checkpoint covers is lost to a crash.
"""
from __future__ import annotations

import csv
import difflib
import importlib.util
import io
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .records import file_values, write_bytes_atomic

log = logging.getLogger(__name__)
LOGGERS = ("tensorboard", "csv")
NONE = "none"
INSTALL_HINT = "pip install 'hfrnn[loggers]'"
CSV_FILE, TB_DIR = "metrics.csv", "tb"
# The CSV's first columns, in this order; every other key follows, sorted.
LEADING = ("iteration", "minibatches", "forward_evals", "wall_s", "train_loss", "train_loss_per_step",
           "test_error_rate", "test_loss", "test_loss_per_step")
COUNTERS = ("minibatches", "forward_evals", "wall_s", "rejected_steps")


def parse(value: Any) -> tuple[str, ...]:
    """The loggers a ``logger`` value names: ``none``, one name, or a list of names (no duplicates)."""
    choices = f"valid: {NONE}, {', '.join(LOGGERS)}, or a list such as logger=[tensorboard,csv]"
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"logger must be a name or a list of names, got logger={value!r} ({choices})")
    out: list[str] = []
    for name in items:
        if name not in (NONE, *LOGGERS):
            close = difflib.get_close_matches(str(name), LOGGERS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown logger {name!r} in logger={value!r} ({choices}){hint}")
        if name != NONE and name not in out:
            out.append(name)
    return tuple(out)


def check(value: Any) -> tuple[str, ...]:
    """:func:`parse`, and refuse ``tensorboard`` when the package is not installed (one line)."""
    names = parse(value)
    if "tensorboard" in names and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"logger=tensorboard needs the tensorboard package: {INSTALL_HINT}")
    return names


class Loggers:
    """The run's loggers as one: ``write`` a record to each, ``flush`` them, ``close`` them.

    Args:
        names: from :func:`check`.
        run_dir: the run directory.
        truncate_after: on resume, the checkpoint's iteration: later records are dropped.
    """

    def __init__(self, names: tuple[str, ...], run_dir: Path, truncate_after: int | None = None) -> None:
        self._all: list[Any] = []
        for name in names:
            if name == "csv":
                self._all.append(CSVLogger(Path(run_dir) / CSV_FILE, truncate_after))
            else:
                self._all.append(TensorBoardLogger(Path(run_dir) / TB_DIR, truncate_after))

    def write(self, record: dict) -> None:
        for logger in self._all:
            logger.write(record)

    def flush(self) -> None:
        for logger in self._all:
            logger.flush()

    def close(self) -> None:
        """Close each logger; later calls (the final checkpoint flushes) do nothing."""
        closing, self._all = self._all, []
        for logger in closing:
            try:
                logger.close()
            except OSError as e:  # a full disk: the records went out one by one, as far as they went
                log.error("cannot close the %s logger: %s", type(logger).__name__, e)


def tag(key: str) -> str:
    """A record key as a grouped TensorBoard tag (``test_error_rate`` -> ``test/error_rate``)."""
    for prefix in ("train_", "test_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return f"counters/{key}" if key in COUNTERS else f"optimizer/{key}"


class TensorBoardLogger:
    """Numeric fields of each record as scalars at step = iteration (strings are left out)."""

    def __init__(self, log_dir: Path, truncate_after: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(f"logger=tensorboard needs the tensorboard package: {INSTALL_HINT}") from None
        # purge_step: events of steps >= it, written before a crash, are hidden from TensorBoard.
        purge = None if truncate_after is None else int(truncate_after) + 1
        self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge, flush_secs=30)

    def write(self, record: dict) -> None:
        step = int(record["iteration"])
        for key, value in record.items():
            if key == "iteration" or value is None or isinstance(value, str):
                continue
            if isinstance(value, (bool, int, float)):
                self._writer.add_scalar(tag(key), float(value), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _columns(keys) -> list[str]:
    lead = [k for k in LEADING if k in keys]
    return lead + sorted(k for k in keys if k not in LEADING)


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def read_csv(path: Path, truncate_after: int | None = None) -> tuple[list[str], list[dict], bool]:
    """``(header, rows, whether anything was dropped)`` of a ``metrics.csv``.

    Dropped: a torn last line (a crash in mid-write), rows that do not parse, and with
    ``truncate_after`` the rows of later iterations.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    dropped = False
    if text and not text.endswith("\n"):
        text, dropped = text[:text.rfind("\n") + 1], True
    reader = csv.DictReader(io.StringIO(text))
    header = list(reader.fieldnames or [])
    rows = []
    for row in reader:
        try:
            ok = None not in row and None not in row.values()  # too many or too few cells
            it = float(row["iteration"]) if ok else None
        except (KeyError, ValueError):
            it = None
        if it is None or (truncate_after is not None and it > truncate_after):
            dropped = True
            continue
        rows.append(row)
    return header, rows, dropped


class CSVLogger:
    """``metrics.csv``: appends a row per record and flushes it (a crash loses at most that row)."""

    def __init__(self, path: Path, truncate_after: int | None = None) -> None:
        self.path = Path(path)
        self.columns: list[str] = []
        rows: list[dict] = []
        if truncate_after is not None and self.path.exists():
            self.columns, rows, dropped = read_csv(self.path, truncate_after)
            if dropped:
                log.info("%s: cut back to iteration %d (the checkpoint)", self.path, truncate_after)
        self._rewrite(rows)  # a fresh run's empty file; on resume the kept rows, atomically
        self._fh = open(self.path, "a", newline="", encoding="utf-8")

    def _rewrite(self, rows: list[dict]) -> None:
        out = io.StringIO()
        if self.columns:
            w = csv.DictWriter(out, self.columns, restval="", lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        data = out.getvalue().encode()
        if not self.path.exists() or self.path.read_bytes() != data:
            write_bytes_atomic(self.path, data)

    def write(self, record: dict) -> None:
        row = {k: _cell(v) for k, v in file_values(record).items()}
        if set(row) - set(self.columns):
            # A new key (the first test evaluation, say): the header grows, the file is rewritten.
            self._fh.close()
            _, rows, _ = read_csv(self.path)
            self.columns = _columns(set(self.columns) | set(row))
            self._rewrite(rows + [row])
            self._fh = open(self.path, "a", newline="", encoding="utf-8")
            return
        csv.DictWriter(self._fh, self.columns, restval="", lineterminator="\n").writerow(row)
        self._fh.flush()

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
