"""Issue 18, part 1: sweeps that survive interruption.

Running the same multirun command again continues the sweep: finished runs are skipped with their
files untouched, interrupted or capped runs resume from their checkpoints, a job that left no
checkpoint starts again with its earlier files kept aside. Job directories are named by the run's
identity (no date, no job number), so a subset or superset of a sweep finds the same runs.
"""
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hfrnn.cli import CONFIG_DIR
from hfrnn.config import sweep_size
from hfrnn.train import checkpoint as ckpt
from hfrnn.train.loop import with_session_cap
from hfrnn.train.schema import BudgetConfig, TrainConfig
from hfrnn.train.sweep import MAX_EXTRA_CHARS, continue_job, extra_name

SGD = ["optimizer=sgd", "hidden=8", "task.test_size=200", "optimizer.batch_size=20"]
EXTRA = extra_name(SGD)  # "_hidden=8,optimizer.batch_size=20,task.test_size=200"


def _cmd(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return [sys.executable, "-m", "hfrnn.cli", *args], dict(cwd=cwd, env=env, capture_output=True, text=True)


def _run(args, cwd, timeout=300):
    cmd, kw = _cmd(args, cwd)
    return subprocess.run(cmd, timeout=timeout, **kw)


def _results(sweep: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}


def _iterations(run_dir: Path) -> list[int]:
    return [json.loads(line)["iteration"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --- names ------------------------------------------------------------------------------------------

def test_extra_name_keeps_only_overrides_that_change_the_run():
    assert extra_name([]) == ""
    assert extra_name(["task=xor", "T=100", "model=rnn", "optimizer=hf", "seed=3", "experiment=figure3"]) == ""
    # Keys a resume may change (budget, threads, device, ...) and Hydra's own do not name a run.
    assert extra_name(["budget.max_wall_s=60", "budget.session_wall_s=9", "threads=2", "device=cpu",
                       "hydra.sweep.dir=x", "resume=null", "dist.procs=2"]) == ""
    assert extra_name(["T=100", "hidden=50", "optimizer.structural.mu=0.1"]) == "_hidden=50,optimizer.structural.mu=0.1"
    assert extra_name(["+optimizer.x=1", "data.path=data/a b.h5"]) == "_+optimizer.x=1,data.path=data-a-b.h5"
    long = extra_name([f"optimizer.cg.max_iters={'9' * 100}"])
    assert long.startswith("_cfg-") and len(long) < MAX_EXTRA_CHARS
    assert long != extra_name([f"optimizer.cg.max_iters={'8' * 100}"])


def test_sweep_size_counts_command_line_and_preset_sweeps():
    assert sweep_size(CONFIG_DIR, ["task=addition,xor", "T=30,50", "seed=range(3)"]) == 12
    assert sweep_size(CONFIG_DIR, ["experiment=figure3"]) == 4 * 8 * 2 * 5
    assert sweep_size(CONFIG_DIR, ["experiment=figure3", "T=100", "optimizer=hf", "seed=0,1"]) == 16
    assert sweep_size(CONFIG_DIR, ["task=addition"]) == 1


# --- what a job does with its directory ---------------------------------------------------------------

def test_continue_job_fresh_resume_restart(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / ".hydra").mkdir()
    assert continue_job(job).action == "fresh"
    (job / "metrics.jsonl").write_text('{"iteration": 1}\n')
    (job / "result.json").write_text('{"status": "interrupted"}')
    c = continue_job(job)  # files but no checkpoint: killed before one was written
    assert c.action == "restart" and c.moved_to == job / "previous-1"
    assert (c.moved_to / "metrics.jsonl").read_text() == '{"iteration": 1}\n'
    assert not (job / "metrics.jsonl").exists() and (job / ".hydra").is_dir()
    (job / "result.json").write_text('{"status": "error"}')
    assert continue_job(job).moved_to == job / "previous-2"  # nothing is overwritten
    (job / ckpt.CHECKPOINT).write_bytes(b"x")
    assert continue_job(job).action == "resume"
    # A run kept without its checkpoint (benchmarks/keep_results.py keeps none for solved runs).
    (job / ckpt.CHECKPOINT).unlink()
    (job / "result.json").write_text('{"status": "solved", "minibatches": 12.0}')
    c = continue_job(job)
    assert c.action == "done" and c.result["minibatches"] == 12.0 and (job / "result.json").is_file()


def test_sweep_skips_a_kept_solved_run_without_checkpoint(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["train", "-m", "task=addition", "T=10", *SGD, "budget.max_iterations=3", f"hydra.sweep.dir={sweep}"]
    assert _run(args, tmp_path).returncode == 0
    job = sweep / ("addition_T10_rnn_sgd_s0" + EXTRA)
    res = json.loads((job / "result.json").read_text())
    (job / "result.json").write_text(json.dumps({**res, "status": "solved", "success": True}))
    (job / ckpt.CHECKPOINT).unlink()
    (job / "metrics.jsonl").unlink()
    before = {q: q.read_bytes() for q in job.rglob("*") if q.is_file() and q.suffix != ".log" and ".hydra" not in q.parts}
    p = _run(args, tmp_path)
    assert p.returncode == 0, p.stderr
    assert "nothing to do: it ended solved" in p.stdout
    assert {q: q.read_bytes() for q in before} == before and not (job / "previous-1").exists()


def test_session_cap_adds_to_the_time_already_spent():
    cfg = TrainConfig()
    assert with_session_cap(cfg, None) is cfg
    cfg.budget = BudgetConfig(session_wall_s=60.0)
    assert with_session_cap(cfg, None).budget.max_wall_s == 60.0
    assert with_session_cap(cfg, {"counters": {"wall_s": 100.0}}).budget.max_wall_s == 160.0
    cfg.budget = BudgetConfig(session_wall_s=60.0, max_wall_s=130.0)  # the run's own cap binds first
    assert with_session_cap(cfg, {"counters": {"wall_s": 100.0}}).budget.max_wall_s == 130.0
    assert cfg.budget.max_wall_s == 130.0  # the caller's config is not changed


# --- a real sweep, interrupted and run again ------------------------------------------------------------

def test_sweep_interrupted_and_run_again_continues(tmp_path):
    """SIGINT in the first job; the same command twice more: resumed and fresh, then all skipped."""
    sweep = tmp_path / "sweep"
    args = ["train", "-m", "task=addition,xor", "T=10", *SGD, "budget.max_iterations=400",
            f"hydra.sweep.dir={sweep}"]
    cmd, kw = _cmd(args, tmp_path)
    proc = subprocess.Popen(cmd, **{k: v for k, v in kw.items() if k not in ("capture_output", "text")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = sweep / ("addition_T10_rnn_sgd_s0" + EXTRA)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the first job has written some steps
        try:
            if len((first / "metrics.jsonl").read_text().splitlines()) >= 20:
                break
        except OSError:
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    r = _results(sweep)
    assert r["addition_T10_rnn_sgd_s0" + EXTRA]["status"] == "interrupted" and "xor_T10_rnn_sgd_s0" + EXTRA not in r
    stopped_at = r["addition_T10_rnn_sgd_s0" + EXTRA]["iterations"]
    assert 20 <= stopped_at < 400

    p = _run(args, tmp_path)  # the same command: the interrupted job resumes, the other starts
    assert p.returncode == 0, p.stderr
    r = _results(sweep)
    assert {k: v["status"] for k, v in r.items()} == {"addition_T10_rnn_sgd_s0" + EXTRA: "budget_exhausted",
                                                      "xor_T10_rnn_sgd_s0" + EXTRA: "budget_exhausted"}
    assert _iterations(first) == list(range(1, 401))  # continued where it stopped: no step twice
    assert "resuming" in (first / "cli.log").read_text()

    # An uninterrupted run of the same job ends in the same place (the resume is exact).
    alone = tmp_path / "alone"
    p = _run(["train", "task=addition", "T=10", *SGD, "budget.max_iterations=400", f"hydra.run.dir={alone}"], tmp_path)
    assert p.returncode == 0, p.stderr
    last = lambda d: json.loads((d / "metrics.jsonl").read_text().splitlines()[-1])  # noqa: E731
    assert last(alone)["train_loss"] == last(first)["train_loss"]

    files = {q: q.read_bytes() for q in sweep.rglob("*") if q.is_file() and q.name in ("result.json", "metrics.jsonl",
                                                                                          "checkpoint.pt")}
    p = _run(args, tmp_path)  # and again: nothing left to do, nothing is recomputed or rewritten
    assert p.returncode == 0, p.stderr
    assert "nothing to do" in p.stdout
    assert {q: q.read_bytes() for q in files} == files


def test_sweep_session_cap_then_more(tmp_path):
    """budget.session_wall_s stops every job of this invocation; the same command gives them more."""
    sweep = tmp_path / "sweep"
    args = ["train", "-m", "task=addition", "seed=0,1", "T=10", *SGD, "budget.max_iterations=100000",
            "budget.session_wall_s=1.5", f"hydra.sweep.dir={sweep}"]
    p = _run(args, tmp_path)
    assert p.returncode == 0, p.stderr
    r = _results(sweep)
    assert set(r) == {"addition_T10_rnn_sgd_s0" + EXTRA, "addition_T10_rnn_sgd_s1" + EXTRA}
    for res in r.values():
        assert res["status"] == "budget_exhausted" and "session_wall_s" in res["message"]
        assert 1.5 <= res["wall_s"] < 10
    before = {k: v["iterations"] for k, v in r.items()}
    p = _run(args, tmp_path)
    assert p.returncode == 0, p.stderr
    r = _results(sweep)
    for k, res in r.items():
        assert res["iterations"] > before[k] and 3.0 <= res["wall_s"]
        assert _iterations(sweep / k) == list(range(1, res["iterations"] + 1))


def test_sweep_job_with_changed_setting_is_refused_in_one_line(tmp_path):
    """A job directory reused with a setting that alters the optimisation (here through a preset
    key not in the directory name) is not silently continued."""
    sweep = tmp_path / "sweep"
    base = ["train", "-m", "task=addition", "T=10", *SGD, "budget.max_iterations=3", f"hydra.sweep.dir={sweep}"]
    assert _run(base, tmp_path).returncode == 0
    job = sweep / ("addition_T10_rnn_sgd_s0" + EXTRA)
    cfg = job / ".hydra" / "config.yaml"
    # Same directory name, different learning rate: simulate an edited preset by changing the saved config.
    state = ckpt.load(job)
    state["config"]["optimizer"]["lr"] = 123.0
    ckpt.save(job, state)
    p = _run([*base[:-2], "budget.max_iterations=6", base[-1]], tmp_path)
    assert p.returncode == 1 and "optimizer.lr changed" in p.stderr
    assert cfg.is_file()


# --- a parallel sweep (hydra/launcher=local2), stopped by a signal ----------------------------------------

def _parallel_sweep_stopped(tmp_path, to: str):
    """Start a 3-job sweep on two loky workers, signal it once both running jobs have written steps;
    returns (sweep dir, args, return code, stderr, the two running jobs' directories)."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    args = ["train", "-m", "task=addition,xor,temporal_order", "T=10", *SGD, "budget.max_iterations=100000",
            "hydra/launcher=local2", f"hydra.sweep.dir={sweep}"]
    cmd, kw = _cmd(args, tmp_path)
    proc = subprocess.Popen(cmd, cwd=kw["cwd"], env=kw["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    running = [sweep / (f"{t}_T10_rnn_sgd_s0" + EXTRA) for t in ("addition", "xor")]
    deadline = time.time() + 180
    try:
        while time.time() < deadline:  # both workers have a job with some steps written
            try:
                if all(len((d / "metrics.jsonl").read_text().splitlines()) >= 20 for d in running):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("the sweep's jobs did not start")
        if to == "whole-group":
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the parent and both workers
        elif to == "workers-only":  # as a scheduler would signal the jobs, not the sweep
            from hfrnn.train.sweep_stop import children
            for pid in children(proc.pid):
                os.kill(pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGINT)  # `kill -INT` of the parent alone
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return sweep, args, proc.returncode, err, running


@pytest.mark.parametrize("to", ["parent-only", "whole-group",
                                pytest.param("workers-only", marks=pytest.mark.slow)])  # ~30 s each
def test_parallel_sweep_stopped_by_a_signal_keeps_every_run(tmp_path, to):
    """The parent does not let joblib kill its workers: both running jobs finish their iteration and
    write their checkpoint and result, the queued job does not start, the sweep exits 130, and the
    same command continues every run without repeating a step."""
    sweep, args, rc, err, running = _parallel_sweep_stopped(tmp_path, to)
    assert rc == 130, err
    assert "the same command continues it" in err
    r = _results(sweep)
    assert set(r) == {d.name for d in running}, err  # the third job did not start
    for d in running:
        assert r[d.name]["status"] == "interrupted", r[d.name]["message"]
        assert (d / "checkpoint.pt").is_file()
        assert _iterations(d) == list(range(1, r[d.name]["iterations"] + 1))
    assert not (sweep / ("temporal_order_T10_rnn_sgd_s0" + EXTRA) / "metrics.jsonl").exists()
    stopped_at = {d.name: r[d.name]["iterations"] for d in running}

    p = _run([*args, "budget.session_wall_s=1"], tmp_path)  # continue: the two resume, the third starts
    assert p.returncode == 0, p.stderr
    r = _results(sweep)
    assert len(r) == 3 and {v["status"] for v in r.values()} == {"budget_exhausted"}
    for d in running:
        n = r[d.name]["iterations"]
        assert n > stopped_at[d.name] and _iterations(d) == list(range(1, n + 1))  # no step twice
        assert "resuming" in (d / "cli.log").read_text()


def test_sweep_parent_forwards_a_second_signal_to_its_children():
    """The parent's second signal reaches every child twice (the loop's "abandon now"), however the
    first one arrived; a first one only asks for the stop."""
    from hfrnn.train import sweep_stop

    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import signal, sys, time
        n = 0
        def h(s, f):
            global n
            n += 1
        signal.signal(signal.SIGINT, h)
        print("ready", flush=True)
        end = time.time() + 20
        while time.time() < end and n < 2:
            time.sleep(0.01)
        print(n, flush=True)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert child.pid in sweep_stop.children()
        out = io.StringIO()
        with sweep_stop.SweepParent(out=out) as parent:
            assert not sweep_stop.requested() and not sweep_stop.in_worker()
            os.kill(os.getpid(), signal.SIGINT)  # first: the stop file, nothing forwarded
            time.sleep(0.2)
            assert sweep_stop.requested() and child.poll() is None
            os.kill(os.getpid(), signal.SIGTERM)  # second: two SIGINTs to the child
            assert child.stdout.readline().strip() == "2"
        assert parent.stopped and parent.signals == 2
        assert "stopping the sweep" in out.getvalue() and "abandon" in out.getvalue()
        assert sweep_stop.stop_file() is None  # the environment is restored
    finally:
        child.kill()
        child.wait()
