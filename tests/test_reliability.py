"""Resume reproduces an uninterrupted run; interruption and divergence are recorded, never lost."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hfrnn.config import ConfigError
from hfrnn.curvature.rnn_fast import RNNFastCurvature
from hfrnn.train import loop

from .compose import cfg_of, fit_with

BASE = ["task=addition", "T=12", "hidden=8", "task.test_size=200", "eval.every_minibatches=1", "checkpoint_every=1"]
HF = ["optimizer.batch.gradient=200", "optimizer.batch.curvature=100", "optimizer.cg.max_iters=10"]
TINY = BASE + HF


_cfg, _fit = cfg_of, fit_with


def _metrics(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("wall_s")
    return rows


@pytest.mark.parametrize("optimizer", ["hf", "sgd"])
def test_resume_reproduces_uninterrupted_run(tmp_path, optimizer):
    full, half = tmp_path / "full", tmp_path / "half"
    full.mkdir(), half.mkdir()
    extra = [f"optimizer={optimizer}"] + (HF if optimizer == "hf" else [])
    n = 4 if optimizer == "hf" else 30
    _fit(BASE + extra + [f"budget.max_iterations={n}"], full)
    _fit(BASE + extra + [f"budget.max_iterations={n // 2}"], half)
    cfg, raw = _cfg(BASE + extra + [f"budget.max_iterations={n}", f"resume={half}"])
    res = loop.fit(cfg, tmp_path / "ignored", raw)
    assert res["iterations"] == n
    assert _metrics(full) == _metrics(half)
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(half / "checkpoint.pt", weights_only=True)
    assert torch.equal(a["theta"], b["theta"])


def test_resume_refuses_changed_key(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    _fit(TINY + ["budget.max_iterations=1"], run)
    cfg, raw = _cfg(TINY + ["budget.max_iterations=2", "optimizer.cg.max_iters=11", f"resume={run}"])
    with pytest.raises(ConfigError, match="optimizer.cg.max_iters"):
        loop.fit(cfg, tmp_path / "x", raw)


def test_resume_from_non_run_dir(tmp_path):
    cfg, raw = _cfg(TINY + [f"resume={tmp_path}"])
    with pytest.raises(ConfigError, match="no checkpoint.pt"):
        loop.fit(cfg, tmp_path / "x", raw)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="unreadable"):
        loop.fit(cfg, tmp_path / "x", raw)


class AlwaysNaN(RNNFastCurvature):
    def loss_and_grad(self, theta, batch, norm=None):
        f, g = super().loss_and_grad(theta, batch, norm)
        return math.nan, g


def test_repeated_non_finite_steps_end_as_diverged(tmp_path, monkeypatch):
    import hfrnn.api

    monkeypatch.setattr(hfrnn.api, "make_backend", lambda model, loss, *a, **k: AlwaysNaN(
        __import__("hfrnn.linalg.params", fromlist=["ParamLayout"]).ParamLayout.of(dict(model.named_parameters())),
        loss))
    run = tmp_path / "r"
    run.mkdir()
    res = _fit(TINY + ["optimizer.max_rejections=3"], run)
    assert res["status"] == "diverged" and res["rejected_steps"] == 3
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rows] == ["non_finite_gradient"] * 3
    lambdas = [r["lambda"] for r in rows]
    assert lambdas[1] > lambdas[0] and lambdas[2] > lambdas[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_interrupted_result_and_resumes(tmp_path, sig):
    run = tmp_path / "r"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "hfrnn.cli", "train", *BASE, "optimizer=sgd", "optimizer.batch_size=20",
            "eval.every_minibatches=1000", f"hydra.run.dir={run}"]
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) > 20:
            break
        time.sleep(0.2)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode != 0
    res = json.loads((run / "result.json").read_text())
    assert res["status"] == "interrupted" and res["success"] is False
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["counters"]["iteration"] == res["iterations"] > 0
    # Resume for a few more iterations: numbering continues, no iteration is written twice.
    q = subprocess.run(args[:-1] + [f"budget.max_iterations={res['iterations'] + 5}", f"resume={run}",
                                    f"hydra.run.dir={tmp_path / 'unused'}"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert q.returncode == 0, q.stderr
    its = [json.loads(x)["iteration"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert its == list(range(1, res["iterations"] + 6))


def test_source_revision_names_the_checkout():
    """Result files record the git commit of the source that produced them (trust and rerun)."""
    import subprocess

    from hfrnn.provenance import SOURCE_DIR, source_revision
    source_revision.cache_clear()  # cached per process; earlier tests may have called it
    if not (SOURCE_DIR / ".git").exists():
        assert source_revision() is None  # an installed copy: nothing to record
        return
    head = subprocess.run(["git", "-C", str(SOURCE_DIR), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    rev = source_revision()
    assert rev is not None and rev.split("+")[0] == head and rev in (head, head + "+dirty")


# ----------------------------------------------------------------------------------------------
# Issue 15: defects that lost or falsified results.

FIRST_ORDER = ["task=addition", "T=10", "hidden=8", "task.test_size=200", "eval.every_minibatches=1",
               "checkpoint_every=1", "optimizer.batch_size=20"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _cli(args, prelude="", timeout=120, **kw):
    """``hfrnn train ARGS`` in a subprocess, after running ``prelude`` (to inject a fault)."""
    code = f"import sys\n{prelude}\nfrom hfrnn.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, "train", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout, **kw)


def _files(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_nan_learning_rate_never_reaches_the_parameters(tmp_path, optimizer, monkeypatch):
    """lr=nan (validation bypassed): every step is rejected, theta stays, the run diverges."""
    import hfrnn.api

    monkeypatch.setattr(hfrnn.api, "check_options", lambda opts, prefix="": opts)  # the optimiser's own defence
    run = tmp_path / "r"
    run.mkdir()
    res = _fit(FIRST_ORDER + [f"optimizer={optimizer}", "optimizer.lr=nan", "optimizer.max_rejections=3"], run)
    assert res["status"] == "diverged" and res["success"] is False and res["rejected_steps"] == 3
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["accepted"] for r in rows] == [False] * 3 and rows[0]["reason"] == "non_finite_update"
    theta = torch.load(run / "checkpoint.pt", weights_only=True)["theta"]
    assert torch.isfinite(theta).all()


def test_nan_predictions_count_as_wrong():
    from hfrnn.tasks.pathological import PATHOLOGICAL_TASKS, make_task

    for name in PATHOLOGICAL_TASKS:
        task = make_task(name, 10, test_size=50)
        b = task.test_set()
        for bad in (math.nan, math.inf):
            assert task.wrong(torch.full_like(b.targets, bad), b).all(), (name, bad)
        assert not task.wrong(torch.where(b.targets > 0.5, 10.0, -10.0) if task.loss != "squared"
                              else b.targets, b).any(), name


def test_nan_predictions_count_as_wrong_on_natural_tasks():
    from hfrnn.tasks.base import Batch
    from hfrnn.tasks.natural import NaturalTask

    y = torch.zeros(3, 4, 2)
    mask = torch.ones(3, 4)
    b = Batch(inputs=y, targets=y, mask=mask, score_mask=mask)
    s = y.clone()
    s[1, 2, 0] = math.nan
    assert NaturalTask.wrong(None, s, b).tolist() == [False, False, True, False]


def test_non_finite_initial_model_is_refused(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    with pytest.raises(ConfigError, match="not finite"):
        _fit(TINY + ["model.input_scale=nan", "budget.max_iterations=2"], run)
    assert not (run / "result.json").exists()


def test_fresh_run_never_reuses_a_run_directory(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    _fit(FIRST_ORDER + ["optimizer=sgd", "budget.max_iterations=3"], run)
    before = _files(run)
    with pytest.raises(ConfigError, match="already holds a run"):
        _fit(FIRST_ORDER + ["optimizer=sgd", "budget.max_iterations=3", "hidden=9"], run)
    assert _files(run) == before


def test_resume_tolerates_a_torn_last_metrics_line(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    _fit(FIRST_ORDER + ["optimizer=sgd", "budget.max_iterations=3"], run)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"iteration": 4, "train_lo')  # a crash in the middle of a line
    cfg, raw = _cfg(FIRST_ORDER + ["optimizer=sgd", "budget.max_iterations=5", f"resume={run}"])
    assert loop.fit(cfg, tmp_path / "x", raw)["iterations"] == 5
    assert [r["iteration"] for r in _metrics(run)] == [1, 2, 3, 4, 5]


def test_metrics_cut_back_is_atomic(tmp_path, monkeypatch):
    """A failure while cutting metrics.jsonl back leaves the file as it was (never empty)."""
    from hfrnn.train import records

    path = tmp_path / "metrics.jsonl"
    text = "".join(json.dumps({"iteration": i}) + "\n" for i in range(1, 6))
    path.write_text(text)

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records.os, "fsync", fail)
    with pytest.raises(OSError):
        records.MetricsWriter(path, truncate_after=2)
    assert path.read_text() == text
    monkeypatch.undo()
    records.MetricsWriter(path, truncate_after=2).close()
    assert path.read_text() == "".join(text.splitlines(keepends=True)[:2])
    assert not [p for p in tmp_path.iterdir() if p.name != "metrics.jsonl"]  # no temporary left


SLOW_RESULT = """
import pathlib, time
import hfrnn.train.loop as L

_write = L.write_json_atomic
def _slow(path, obj):
    if pathlib.Path(path).name == "result.json":
        pathlib.Path(path).with_name("finishing").touch()
        time.sleep(1.5)
    _write(path, obj)
L.write_json_atomic = _slow
"""


@pytest.mark.slow  # subprocesses; a near cousin runs by default (make test-slow runs it)
def test_late_signals_do_not_lose_the_result(tmp_path):
    """Signals that arrive while the run writes its checkpoint and result are ignored."""
    run = tmp_path / "r"
    code = f"import sys\n{SLOW_RESULT}\nfrom hfrnn.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    p = subprocess.Popen([sys.executable, "-c", code, "train", *FIRST_ORDER, "optimizer=sgd",
                          "budget.max_iterations=3", f"hydra.run.dir={run}"],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "finishing").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        p.send_signal(sig)
        time.sleep(0.005)
    _, err = p.communicate(timeout=120)
    res = json.loads((run / "result.json").read_text())
    assert res["status"] == "budget_exhausted" and res["iterations"] == 3, err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["counters"]["iteration"] == 3


def test_resuming_a_solved_run_changes_nothing(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    # Solved at the first evaluation (after the first iteration).
    solve = FIRST_ORDER + ["optimizer=sgd", "task.success_threshold=1.5", "eval.every_minibatches=0.01"]
    res = _fit(solve + ["budget.max_iterations=5"], run)
    assert res["status"] == "solved" and res["iterations"] == 1
    before = _files(run)
    cfg, raw = _cfg(solve + ["budget.max_iterations=50", f"resume={run}"])
    again = loop.fit(cfg, tmp_path / "x", raw)
    assert again["status"] == "solved" and again["iterations"] == 1 and again["minibatches"] == res["minibatches"]
    assert _files(run) == before


def test_wall_clock_budget_run_resumes_with_a_larger_cap(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    base = FIRST_ORDER + ["optimizer=sgd", "eval.every_minibatches=1000"]
    res = _fit(base + ["budget.max_wall_s=0.3"], run)
    assert res["status"] == "budget_exhausted" and res["iterations"] > 0
    n = res["iterations"]
    before = _files(run)
    cfg, raw = _cfg(base + ["budget.max_wall_s=0.3", f"resume={run}"])  # nothing left to do
    assert loop.fit(cfg, tmp_path / "x", raw)["iterations"] == n
    assert _files(run) == before
    cfg, raw = _cfg(base + ["budget.max_wall_s=1000", f"budget.max_iterations={n + 3}", f"resume={run}"])
    assert loop.fit(cfg, tmp_path / "x", raw)["iterations"] == n + 3
    assert [r["iteration"] for r in _metrics(run)] == list(range(1, n + 4))


DISK_FULL = """
import errno, os
def _full(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
"""


def test_checkpoint_write_failure_is_an_error_status(tmp_path):
    run = tmp_path / "r"
    p = _cli([*FIRST_ORDER, "optimizer=sgd", "budget.max_iterations=3", f"hydra.run.dir={run}"],
             DISK_FULL + "import hfrnn.train.checkpoint as C\nC.save_checkpoint_atomic = _full\n")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "No space left on device" in p.stderr.strip().splitlines()[-1]
    res = json.loads((run / "result.json").read_text())
    assert res["status"] == "error" and "No space left on device" in res["message"]


def test_unwritable_run_directory_is_a_one_line_error(tmp_path):
    run = tmp_path / "r"
    p = _cli([*FIRST_ORDER, "optimizer=sgd", "budget.max_iterations=3", f"hydra.run.dir={run}"],
             DISK_FULL + "import hfrnn.train.records as R\nR._atomic = _full\nR.MetricsWriter.write = _full\n")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("hfrnn train: error:") and "No space left on device" in last


@pytest.mark.parametrize("damage", ["list", "no_theta", "theta_shape", "counters", "optimizer", "rng"])
def test_checkpoint_with_wrong_contents_is_unreadable(tmp_path, damage):
    run = tmp_path / "r"
    run.mkdir()
    args = FIRST_ORDER + ["optimizer=sgd", "budget.max_iterations=2"]
    _fit(args, run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    if damage == "list":
        state = [state]
    elif damage == "no_theta":
        del state["theta"]
    elif damage == "theta_shape":
        state["theta"] = state["theta"][:1]
    elif damage == "counters":
        state["counters"] = {"iteration": 2}
    elif damage == "optimizer":
        state["optimizer"] = {}
    else:
        state["data_rng"] = torch.zeros(3)
    torch.save(state, run / "checkpoint.pt")
    cfg, raw = _cfg(args + ["budget.max_iterations=4", f"resume={run}"])
    with pytest.raises(ConfigError, match="unreadable"):
        loop.fit(cfg, tmp_path / "x", raw)


def test_file_size_limit_is_an_error_status(tmp_path):
    """A real short write (RLIMIT_FSIZE: the checkpoint, ~15 kB, cannot be written; result.json can)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    run = tmp_path / "r"
    p = _cli([*FIRST_ORDER, "optimizer=sgd", "budget.max_iterations=3", f"hydra.run.dir={run}"], preexec_fn=limit)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("hfrnn train: error:")
    res = json.loads((run / "result.json").read_text())
    assert res["status"] == "error" and "checkpoint.pt" in res["message"]


def test_parameters_that_become_non_finite_end_the_run(tmp_path, monkeypatch):
    """Whatever the optimiser, a NaN never reaches a checkpoint: the iteration is dropped, diverged."""
    make = loop.make_optimizer

    class Poison:
        def __init__(self, opt):
            self.opt, self.n = opt, 0

        def __getattr__(self, name):
            return getattr(self.opt, name)

        def step(self, *batches):
            self.n += 1
            info = self.opt.step(*batches)
            if self.n == 3:  # the model's parameters are the source of truth
                with torch.no_grad():
                    next(self.opt.model.parameters()).view(-1)[0] = math.nan
            return info

    monkeypatch.setattr(loop, "make_optimizer", lambda *a: Poison(make(*a)))
    run = tmp_path / "r"
    run.mkdir()
    res = _fit(FIRST_ORDER + ["optimizer=sgd", "budget.max_iterations=5"], run)
    assert res["status"] == "diverged" and res["iterations"] == 2 and "non-finite" in res["message"]
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert torch.isfinite(state["theta"]).all() and state["counters"]["iteration"] == 2
