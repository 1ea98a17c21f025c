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
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hfrnn.cli import CONFIG_DIR
from hfrnn.config import ConfigError, register
from hfrnn.curvature.rnn_fast import RNNFastCurvature
from hfrnn.train import loop

BASE = ["task=addition", "T=12", "hidden=8", "task.test_size=200", "eval.every_minibatches=1", "checkpoint_every=1"]
HF = ["optimizer.batch.gradient=200", "optimizer.batch.curvature=100", "optimizer.cg.max_iters=10"]
TINY = BASE + HF


def _cfg(overrides):
    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        c = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_object(c), OmegaConf.to_container(c, resolve=True)


def _fit(overrides, run_dir):
    cfg, raw = _cfg(overrides)
    return loop.fit(cfg, run_dir, raw)


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
    monkeypatch.setattr(loop, "make_backend", lambda cfg, model, task: AlwaysNaN(
        __import__("hfrnn.linalg.params", fromlist=["ParamLayout"]).ParamLayout.of(dict(model.named_parameters())),
        task.loss))
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
