"""One process at a time in a run directory.

Two sweeps that share runs (``T=100`` and ``T=100,200`` over the same sweep directory, or the same
command started twice) would otherwise resume the same run twice at once and interleave its
``metrics.jsonl`` and checkpoints. While a run trains, its directory holds ``.lock`` with the
owner's process id and host; a second process refuses the run in one line. A lock left by a
process that no longer exists on this host (killed with SIGKILL, a crashed machine's reboot) is
stale and taken over with a warning; one from another host is refused with the path to delete
once that host's process is known to be gone.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError

log = logging.getLogger(__name__)
LOCK = ".lock"


class RunInUse(ConfigError):
    """Another live process trains this run."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM  # exists, owned by someone else
    return True


def _owner(path: Path) -> tuple[int, str] | None:
    try:
        pid, host = path.read_text().split(maxsplit=1)
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None  # being written, or unreadable: treated as stale below


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` for the duration of the block (see the module docstring)."""
    path = Path(run_dir) / LOCK
    me, host = os.getpid(), socket.gethostname()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if owner is not None and owner[1] != host:
                raise RunInUse(f"{run_dir} is in use by process {owner[0]} on {owner[1]} (delete {path} if that "
                               "process is gone)") from None
            if owner is not None and _alive(owner[0]):  # this very process included
                raise RunInUse(f"{run_dir} is in use by process {owner[0]} on this machine") from None
            log.warning("%s: taking over a stale lock (%s)", run_dir,
                        f"process {owner[0]} is gone" if owner else "unreadable")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{me} {host}\n")
        break
    else:
        raise RunInUse(f"{run_dir}: could not take {path}")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if _owner(path) == (me, host):
                path.unlink()
