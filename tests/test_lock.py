"""One process at a time in a run directory (hfrnn.train.lock): two sweeps sharing a run never
train it twice at once; a lock left by a dead process is taken over."""
import socket
import subprocess
import sys

import pytest

from hfrnn.train.lock import LOCK, RunInUse, run_lock

from .compose import fit_with

TINY = ["optimizer=sgd", "task=addition", "T=10", "hidden=8", "task.test_size=100", "optimizer.batch_size=20",
        "budget.max_iterations=3"]


def test_a_run_holds_the_lock_while_it_trains_and_releases_it(tmp_path):
    run = tmp_path / "run"
    assert fit_with(TINY, run)["iterations"] == 3
    assert not (run / LOCK).exists()
    with run_lock(run):
        assert (run / LOCK).read_text().split()[1] == socket.gethostname()
        with pytest.raises(RunInUse, match="in use"):  # a second holder in the same process too
            fit_with([*TINY, "budget.max_iterations=6", f"resume={run}"], run)
    assert fit_with([*TINY, "budget.max_iterations=6", f"resume={run}"], run)["iterations"] == 6


def test_a_live_process_on_this_host_keeps_the_run(tmp_path):
    run = tmp_path / "run"
    fit_with(TINY, run)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK).write_text(f"{other.pid} {socket.gethostname()}\n")
        with pytest.raises(RunInUse, match=f"in use by process {other.pid} on this machine"):
            fit_with([*TINY, "budget.max_iterations=6", f"resume={run}"], run)
    finally:
        other.kill()
        other.wait()
    # The same lock once its process is gone is stale: taken over, and the run continues.
    assert fit_with([*TINY, "budget.max_iterations=6", f"resume={run}"], run)["iterations"] == 6
    assert not (run / LOCK).exists()


def test_another_hosts_lock_is_refused_with_the_path_to_delete(tmp_path):
    run = tmp_path / "run"
    fit_with(TINY, run)
    (run / LOCK).write_text("12345 some-other-host\n")
    with pytest.raises(RunInUse, match=r"process 12345 on some-other-host \(delete .*\.lock"):
        fit_with([*TINY, "budget.max_iterations=6", f"resume={run}"], run)
    assert (run / LOCK).read_text() == "12345 some-other-host\n"  # not ours to remove
