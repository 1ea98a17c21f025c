"""Config composition, clear errors for bad input, and real `hfrnn train` subprocess runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hfrnn.cli import CONFIG_DIR
from hfrnn.config import ConfigError, register, validate
from hfrnn.optim.hessian_free import HFOptions
from hfrnn.optim.adam import AdamOptions
from hfrnn.optim.sgd import SGDOptions

TASKS = sorted(p.stem for p in Path(CONFIG_DIR, "task").glob("*.yaml"))
MODELS = sorted(p.stem for p in Path(CONFIG_DIR, "model").glob("*.yaml"))
OPTIMIZERS = sorted(p.stem for p in Path(CONFIG_DIR, "optimizer").glob("*.yaml"))
RESULT_KEYS = {"task", "T", "model", "optimizer", "seed", "status", "success", "minibatches", "forward_evals",
               "wall_s", "hfrnn_version", "hfrnn_source", "config", "iterations", "test_error_rate", "test_loss"}


def _compose(overrides):
    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def test_all_pathological_tasks_have_configs():
    from hfrnn.tasks.pathological import PATHOLOGICAL_TASKS
    assert set(PATHOLOGICAL_TASKS) <= set(TASKS)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_combination_composes(task, model, optimizer):
    cfg = OmegaConf.to_object(_compose([f"task={task}", f"model={model}", f"optimizer={optimizer}"]))
    validate(cfg)
    assert cfg.task.name == task and cfg.optimizer.name == optimizer
    assert isinstance(cfg.optimizer, {"sgd": SGDOptions, "adam": AdamOptions}.get(optimizer, HFOptions))


def _resolved(overrides):
    return OmegaConf.to_object(_compose(overrides))


def test_hf_presets():
    hf = _resolved(["optimizer=hf"]).optimizer
    nosd = _resolved(["optimizer=hf_nosd"]).optimizer
    assert hf.structural.enabled and hf.structural.mu == 0.03 and hf.structural.scale == 0.25
    assert hf.damping.initial == 0.1 and hf.weight_cost == 2e-5
    assert not nosd.structural.enabled and nosd.damping.initial == 0.3
    assert hf.batch.gradient == 10000 and hf.batch.curvature == 1000 and hf.cg.max_iters == 300


@pytest.mark.parametrize("task", TASKS)
def test_one_structural_mu_for_every_task(task):
    """The paper's objective makes the 2011 code's mu = 0.03 mean the same on every task: no
    per-task value (README, "Structural mu"); an explicit mu wins."""
    assert _resolved([f"task={task}"]).optimizer.structural.mu == 0.03
    assert _resolved([f"task={task}", "optimizer.structural.mu=0.07"]).optimizer.structural.mu == 0.07


def test_yaml_presets_match_the_dataclass_defaults():
    """hf.yaml is exactly the HFOptions defaults (tests/test_defaults.py checks every preset)."""
    from dataclasses import asdict

    hf = asdict(_resolved(["optimizer=hf"]).optimizer)
    assert hf == asdict(HFOptions())


@pytest.mark.parametrize("bad", ["optimizer.cg.max_itrs=3", "T=abc", "budget.max_minibatchs=5", "task=adition",
                                 "hidden=1.5"])
def test_bad_keys_and_types_fail_in_hydra(bad):
    with pytest.raises(Exception) as e:
        OmegaConf.to_object(_compose([bad]))
    assert type(e.value).__name__ in ("ConfigCompositionException", "ValidationError", "ConfigKeyError",
                                      "MissingConfigException")


@pytest.mark.parametrize("bad,word", [("T=1", "T must be"), ("hidden=0", "hidden must be"),
                                      ("device=tpu", "device must be"), ("optimizer.curvature=slow", "curvature"),
                                      ("optimizer.structural.mu=-1", "structural.mu")])
def test_bad_values_fail_with_one_line(bad, word):
    with pytest.raises(ConfigError, match=word):
        validate(OmegaConf.to_object(_compose([bad])))


def _run(args, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "hfrnn.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


TINY = ["T=12", "hidden=8", "task.test_size=200", "optimizer.batch.gradient=200", "optimizer.batch.curvature=100",
        "optimizer.cg.max_iters=10", "budget.max_iterations=2"]


def test_train_subprocess_writes_result(tmp_path):
    out = tmp_path / "run"
    p = _run(["train", "task=addition", *TINY, f"hydra.run.dir={out}"], tmp_path)
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "result.json").read_text())
    assert RESULT_KEYS <= set(res)
    assert res["status"] == "budget_exhausted" and res["iterations"] == 2 and res["success"] is False
    assert res["config"]["optimizer"]["structural"]["mu"] == 0.03  # the number used, not the preset's null
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for key in ("iteration", "minibatches", "forward_evals", "wall_s", "train_loss", "lambda", "rho", "cg_iters",
                "cg_chosen_iter", "step_size", "accepted", "loss_before", "loss_after"):
        assert key in lines[0], key
    assert (out / "checkpoint.pt").exists() and (out / ".hydra" / "config.yaml").exists()


def test_bad_value_is_one_line_error(tmp_path):
    p = _run(["train", "T=1", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert p.returncode == 2 and "T must be >= 2" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()  # the refused run leaves no empty run directory behind


def test_unknown_command(tmp_path):
    p = _run(["frobnicate"], tmp_path)
    assert p.returncode == 2 and "try: train" in p.stderr


def test_multirun_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    p = _run(["train", "-m", "task=addition,xor", "optimizer=sgd", "T=12", "hidden=8", "task.test_size=200",
              "budget.max_iterations=3", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert p.returncode == 0, p.stderr
    results = sorted(sweep.glob("*/result.json"))
    assert len(results) == 2
    assert {json.loads(r.read_text())["task"] for r in results} == {"addition", "xor"}


# ----------------------------------------------------------------------------------------------
# Issue 15: NaN settings, run directories, sweeps with a failing job.

@pytest.mark.parametrize("bad", ["optimizer=sgd optimizer.lr=nan", "optimizer=adam optimizer.lr=nan",
                                 "model.input_scale=nan", "model.init_scale=inf", "budget.max_minibatches=nan",
                                 "optimizer.damping.initial=inf", "task.success_threshold=nan",
                                 "optimizer=adam optimizer.eps=nan"])
def test_non_finite_values_are_refused(bad):
    with pytest.raises(ConfigError, match="finite"):
        validate(OmegaConf.to_object(_compose(bad.split())))


def test_an_infinite_budget_is_allowed():
    validate(OmegaConf.to_object(_compose(["budget.max_minibatches=inf", "budget.max_wall_s=inf"])))


def test_nan_learning_rate_is_a_one_line_error(tmp_path):
    p = _run(["train", "optimizer=sgd", "optimizer.lr=nan", "T=12", "hidden=8", "budget.max_iterations=2",
              f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert p.returncode == 2 and "optimizer.lr" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()


def test_default_run_directories_name_the_model_and_are_unique():
    """Two single runs started in the same second get two directories; a sweep job's directory is the
    run's identity (task, T, model, optimizer, seed and its other overrides), so that running the
    sweep again finds it (tests/test_sweep_continue.py)."""
    hydra = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "train.yaml"), resolve=False)["hydra"]
    for name in (hydra["run"]["dir"], hydra["sweep"]["subdir"]):
        for key in ("task.name", "T", "model.name", "optimizer.name", "seed"):
            assert "${" + key + "}" in name, (name, key)
    assert "%f" in hydra["run"]["dir"]
    assert "${hfrnn_overrides:${hydra.overrides.task}}" in hydra["sweep"]["subdir"]
    assert "now:" not in hydra["sweep"]["dir"] + hydra["sweep"]["subdir"]


@pytest.mark.slow  # subprocesses; a near cousin runs by default (make test-slow runs it)
def test_two_runs_started_together_get_two_directories(tmp_path):
    """The default names, two runs at once that differ only in `hidden`."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "hfrnn.cli", "train", "task=addition", "optimizer=sgd", "T=10",
            "task.test_size=200", "budget.max_iterations=2"]
    procs = [subprocess.Popen(args + [f"hidden={h}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for h in (8, 9)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    results = sorted((tmp_path / "outputs" / "runs").glob("*/*/result.json"))
    assert len(results) == 2
    assert {json.loads(r.read_text())["config"]["hidden"] for r in results} == {8, 9}


def test_fresh_run_into_a_run_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    (out / ".hydra").mkdir(parents=True)
    for name in (".hydra/config.yaml", "train.log", "metrics.jsonl"):  # what a run leaves (in part)
        (out / name).write_text(f"{name} of the earlier run\n")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    p = _run(["train", "task=addition", *TINY, "hidden=9", f"hydra.run.dir={out}"], tmp_path)
    assert p.returncode == 2 and "already holds a run" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.slow  # subprocesses; a near cousin runs by default (make test-slow runs it)
def test_multirun_continues_after_a_failed_job(tmp_path):
    sweep = tmp_path / "sweep"
    p = _run(["train", "-m", "T=10,1,12", "optimizer=sgd", "hidden=8", "task.test_size=200",
              "budget.max_iterations=2", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert p.returncode == 1, p.stderr
    results = {json.loads(r.read_text())["T"]: json.loads(r.read_text()) for r in sweep.glob("*/result.json")}
    assert set(results) == {10, 1, 12}
    assert results[1]["status"] == "error" and "T must be >= 2" in results[1]["message"]
    assert results[10]["status"] == results[12]["status"] == "budget_exhausted"
    assert "1 of 3 jobs failed" in p.stderr
