"""Which source produced a run: the git revision of the hfrnn checkout, when there is one.

``hfrnn_version`` says which release; between releases the code moves, and a result a user wants
to rerun needs the exact source. When hfrnn is run from a git checkout, result files record its
commit and whether the working tree had uncommitted changes (``+dirty``); from an installed
wheel or a copy without git there is none to record and the field is null.
"""
from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def source_revision() -> str | None:
    """``<commit>`` or ``<commit>+dirty`` of the checkout hfrnn runs from; None if not a checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(SOURCE_DIR), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != SOURCE_DIR:
            return None  # hfrnn is installed inside some other repository, not a checkout of its own
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "hfrnn", "configs")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")
