"""Data-parallel HF: shards add up to the whole batch, and 2 gloo processes reproduce 1 process."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hfrnn.cli import CONFIG_DIR
from hfrnn.config import ConfigError, register, validate
from hfrnn.curvature.generic import GenericCurvature
from hfrnn.curvature.rnn_fast import RNNFastCurvature
from hfrnn.parallel.sharded import ShardedBackend
from hfrnn.train import loop

from .cases import CASES, make_case

# lambda_0 = 1: HF amplifies rounding differences (CG on an ill-conditioned system; rho is a ratio
# of differences); at lambda_0 = 0.1 even a change of optimizer.batch.chunk alone moves the metrics
# by 1e-3 after 4 iterations. With more damping a rounding change stays near 1e-9, so the
# comparison below measures the sharding, not the chaos.
TINY = ["task=addition", "T=12", "hidden=8", "task.test_size=200", "dtype=float64", "eval.every_minibatches=0.5",
        "optimizer.batch.gradient=200", "optimizer.batch.curvature=101", "optimizer.cg.max_iters=10",
        "optimizer.damping.initial=1.0"]
ENDLESS = ["budget.max_iterations=100000", "task.success_threshold=0"]  # runs until stopped


def _compose(overrides):
    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        c = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_object(c), OmegaConf.to_container(c, resolve=True)


def _cli(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", **kw.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "hfrnn.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _rows(run_dir):
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _setup(backend_cls, case, block=0):
    model, layout, theta, batch = make_case(case)
    if backend_cls is RNNFastCurvature:
        return (lambda: RNNFastCurvature(layout, case.loss, 1.0, block)), theta, batch
    return (lambda: GenericCurvature(model, case.loss, 1.0)), theta, batch


BACKENDS = pytest.mark.parametrize("backend_cls", [RNNFastCurvature, GenericCurvature])
CASE = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])


@BACKENDS
@CASE
def test_world_of_one_is_the_plain_backend(backend_cls, case):
    make, theta, batch = _setup(backend_cls, case)
    plain, sharded = make(), ShardedBackend(make(), rank=0, world=1)
    v = torch.randn(theta.numel(), dtype=torch.float64)
    assert sharded.loss(theta, batch) == plain.loss(theta, batch)
    (f1, g1), (f2, g2) = sharded.loss_and_grad(theta, batch), plain.loss_and_grad(theta, batch)
    assert f1 == f2 and torch.equal(g1, g2)
    assert sharded.prepare(theta, batch) == plain.prepare(theta, batch)
    assert torch.equal(sharded.product(v, 0.3), plain.product(v, 0.3))


@pytest.mark.parametrize("backend_cls,block", [(RNNFastCurvature, 0), (RNNFastCurvature, 2), (GenericCurvature, 0)],
                         ids=["fast", "fast-blocked", "generic"])
@CASE
@pytest.mark.parametrize("world", [2, 3, 5])  # 5 > batch size: some shards are empty
def test_shards_add_up_to_the_whole_batch(backend_cls, block, case, world):
    # Without a process group the all-reduce is the identity: each rank returns its own share.
    # With block=2 each shard is further cut into cache blocks that do not line up with the
    # whole batch's: the sums still agree.
    make, theta, batch = _setup(backend_cls, case, block)
    plain, ranks = make(), [ShardedBackend(make(), rank=r, world=world) for r in range(world)]
    v = torch.randn(theta.numel(), dtype=torch.float64)
    close = dict(rtol=1e-12, atol=1e-14)
    assert sum(s.loss(theta, batch) for s in ranks) == pytest.approx(plain.loss(theta, batch), rel=1e-12)
    f, g = plain.loss_and_grad(theta, batch)
    parts = [s.loss_and_grad(theta, batch) for s in ranks]
    assert sum(p[0] for p in parts) == pytest.approx(f, rel=1e-12)
    torch.testing.assert_close(sum(p[1] for p in parts), g, **close)
    assert sum(s.prepare(theta, batch) for s in ranks) == pytest.approx(plain.prepare(theta, batch), rel=1e-12)
    torch.testing.assert_close(sum(s.product(v, 0.3) for s in ranks), plain.product(v, 0.3), **close)
    sizes = [0 if s.shard(batch) is None else s.shard(batch).size for s in ranks]
    assert sum(sizes) == batch.size and max(sizes) - min(sizes) <= 1


def _assert_same_metrics(a, b, rel=1e-8):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for k in x:
            if k == "wall_s":
                continue
            if isinstance(x[k], float):
                assert y[k] == pytest.approx(x[k], rel=rel, abs=1e-12), (x["iteration"], k)
            else:
                assert y[k] == x[k], (x["iteration"], k)


def test_two_gloo_processes_reproduce_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    run = TINY + ["budget.max_iterations=4"]
    p = _cli(run + ["dist.procs=2", "dist.timeout_s=60", f"hydra.run.dir={two}"])
    cfg, raw = _compose(run)
    loop.fit(cfg, one, raw)  # meanwhile, the 1-process reference in this process
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    _assert_same_metrics(_rows(one), _rows(two))
    ta = torch.load(one / "checkpoint.pt", weights_only=True)["theta"]
    tb = torch.load(two / "checkpoint.pt", weights_only=True)["theta"]
    torch.testing.assert_close(tb, ta, rtol=1e-8, atol=1e-12)
    res = json.loads((two / "result.json").read_text())
    assert res["status"] == "budget_exhausted" and res["machine"]["processes"] == 2
    assert res["config"]["dist"]["procs"] == 2


def test_two_process_run_resumes_exactly(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    p = _cli(TINY + ["budget.max_iterations=2", "dist.procs=2", f"hydra.run.dir={two}"])
    cfg, raw = _compose(TINY + ["budget.max_iterations=4"])
    loop.fit(cfg, one, raw)
    assert p.wait(timeout=120) == 0
    p = _cli(TINY + ["budget.max_iterations=4", "dist.procs=2", f"resume={two}", f"hydra.run.dir={tmp_path / 'x'}"])
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    _assert_same_metrics(_rows(one), _rows(two))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_rows(run_dir, n, procs, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run_dir / "metrics.jsonl").exists() and len(_rows(run_dir)) >= n:
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    for p in procs:
        p.kill()
    pytest.fail("the run did not start: " + " | ".join(p.communicate()[1][-2000:] for p in procs))


@pytest.mark.slow  # subprocesses; a near cousin runs by default (make test-slow runs it)
def test_dead_rank_ends_the_run_with_error(tmp_path):
    # Two ranks started the torchrun way (RANK, WORLD_SIZE, MASTER_ADDR/PORT), so the test owns both pids.
    run = tmp_path / "r"
    args = TINY + [*ENDLESS, "dist.timeout_s=20", f"hydra.run.dir={run}"]
    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    ranks = [_cli(args, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in (0, 1)]
    _wait_for_rows(run, 2, ranks)
    ranks[1].kill()
    t0 = time.time()
    _, err = ranks[0].communicate(timeout=60)
    ranks[1].communicate()
    assert time.time() - t0 < 20 and ranks[0].returncode == 1, err
    res = json.loads((run / "result.json").read_text())
    assert res["status"] == "error" and res["machine"]["processes"] == 2
    its = [r["iteration"] for r in _rows(run)]
    assert its == list(range(1, len(its) + 1))  # written once, by rank 0 only


def _children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return None


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def _running(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow  # subprocesses; a near cousin runs by default (make test-slow runs it)
def test_interrupting_rank_zero_stops_all_ranks(tmp_path):
    run = tmp_path / "r"
    p = _cli(TINY + [*ENDLESS, "dist.procs=2", "dist.timeout_s=20", f"hydra.run.dir={run}"])
    _wait_for_rows(run, 2, [p])
    children = [c for c in _children(p.pid) or [] if "spawn_main" in _cmdline(c)]
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert json.loads((run / "result.json").read_text())["status"] == "interrupted"
    if not children:
        pytest.skip("cannot list the worker processes here (/proc/<pid>/task/<pid>/children)")
    alive = [c for c in children if _running(c)]
    assert not alive, f"worker processes {alive} outlived rank 0"


def test_zero_processes_refused(tmp_path):
    cfg, _ = _compose(["dist.procs=0"])
    with pytest.raises(ConfigError, match="dist.procs must be >= 1"):
        validate(cfg)
    p = _cli(["dist.procs=0", f"hydra.run.dir={tmp_path / 'r'}"], cwd=tmp_path)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "dist.procs must be >= 1" in err and "Traceback" not in err
