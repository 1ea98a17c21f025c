"""Stopping a sweep without losing work, whichever process the signal reaches.

A sweep's jobs may run in the process that parses the command (Hydra's basic launcher) or in
worker processes (``hydra/launcher=local2``: joblib's loky workers). A run stops cleanly on
SIGINT/SIGTERM (:mod:`hfrnn.train.loop`: after its current iteration, with its checkpoint and
``result.json``), but the sweep around it must let it:

- the **parent** (``hfrnn train -m``), on a first SIGINT/SIGTERM, does not raise (joblib would then
  kill the workers mid-iteration: their checkpoints would be the previous ones and their
  ``result.json`` missing); it creates the sweep's *stop file* and waits. Every running job sees
  the file after its current iteration and ends ``interrupted``; every job not yet started sees
  it at its start and does nothing. A second signal asks the workers to abandon their iteration
  at once (forwarded to them as two SIGINTs, the loop's "second signal"); the parent still waits
  for them to write their files. The sweep then exits with status 130; the same command continues it.
- a **worker** ignores the signals while it is between jobs, apart from asking for the stop: a
  Ctrl-C in a terminal reaches every process of the group, and an idle worker killed by it would
  break the pool.
- a job in a worker that ends ``interrupted`` returns normally (an exit from a worker is an error
  to joblib, which would then kill the other workers); a job in the parent process ends the sweep
  with status 130 as before.

The stop file is a path in a private temporary folder, handed to the jobs in
:data:`STOP_ENV` (environment variables reach joblib's workers). Jobs that run on other machines
(SLURM) do not see it; they are stopped by the signals their scheduler sends.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

STOP_ENV = "HFRNN_SWEEP_STOP"      # the stop file's path
PARENT_ENV = "HFRNN_SWEEP_PARENT"  # the process id of the sweep's parent
SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Between the two SIGINTs forwarded on a second signal: long enough for the worker's main thread to
# run the first handler (one C call, a long matrix product, can delay it) so they do not merge.
FORWARD_GAP_S = 0.5


def stop_file() -> Path | None:
    """The sweep's stop file, or None outside a sweep."""
    path = os.environ.get(STOP_ENV)
    return Path(path) if path else None


def requested() -> bool:
    """Whether the sweep this process belongs to is stopping."""
    path = stop_file()
    return path is not None and path.exists()


def request() -> None:
    """Ask every job of the sweep to stop after its current iteration (and queued ones not to start)."""
    path = stop_file()
    if path is not None:
        try:
            path.touch()
        except OSError as e:  # the folder is gone: the sweep is over anyway
            log.warning("cannot create the sweep's stop file %s: %s", path, e)


def in_worker() -> bool:
    """Whether this process runs a sweep's jobs for a parent process (joblib's workers)."""
    parent = os.environ.get(PARENT_ENV)
    return parent is not None and parent != str(os.getpid())


def _worker_handler(signum, frame) -> None:
    request()


def guard_worker() -> None:
    """In a worker process, between jobs: a signal asks the sweep to stop instead of killing the
    worker (the training loop installs its own handlers for the duration of a run)."""
    if in_worker():
        try:
            for s in SIGNALS:
                signal.signal(s, _worker_handler)
        except ValueError:  # not the main thread: nothing to guard
            pass


def children(pid: int | None = None) -> list[int]:
    """Process ids of the direct children of ``pid`` (this process by default); Linux ``/proc``,
    an empty list elsewhere."""
    pid = os.getpid() if pid is None else pid
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields and int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


class SweepParent:
    """The parent side (see the module docstring), as a context manager around the sweep::

        with SweepParent() as parent:
            run the sweep
        if parent.stopped: exit 130
    """

    def __init__(self, out=None) -> None:
        self.signals = 0
        self.stopped = False  # set on leaving: a signal came, or a job asked for the stop
        self._dir: str | None = None
        self._old: dict = {}
        self._env: dict = {}
        self._out = out or sys.stderr

    def __enter__(self) -> "SweepParent":
        self._dir = tempfile.mkdtemp(prefix="hfrnn-sweep-")
        self._env = {k: os.environ.get(k) for k in (STOP_ENV, PARENT_ENV)}
        os.environ[STOP_ENV] = str(Path(self._dir) / "stop")
        os.environ[PARENT_ENV] = str(os.getpid())
        try:
            self._old = {s: signal.signal(s, self._handle) for s in SIGNALS}
        except ValueError:  # not the main thread
            self._old = {}
        return self

    def _handle(self, signum, frame) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            request()
            self._say(f"hfrnn train: {name}: stopping the sweep; running jobs finish their iteration and write "
                      "their checkpoints (a second signal abandons the iteration)")
        elif self.signals == 2:
            self._say(f"hfrnn train: {name}: the running jobs abandon their iteration; waiting for them to write "
                      "their checkpoints")
            self._forward_twice()

    def _forward_twice(self) -> None:
        """Two SIGINTs to every child: the loop's second signal even where the first never reached
        it (a ``kill`` of the parent alone). Where a terminal's Ctrl-C reached them too, the extra
        ones are ignored by the loop (raised once)."""
        for k in range(2):
            for pid in children():
                try:
                    os.kill(pid, signal.SIGINT)
                except OSError:
                    pass
            if k == 0:
                time.sleep(FORWARD_GAP_S)

    def _say(self, text: str) -> None:
        try:
            print(text, file=self._out, flush=True)
        except (OSError, ValueError):
            pass

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self.stopped = self.signals > 0 or requested()  # a worker may have asked (a Ctrl-C to the group)
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
