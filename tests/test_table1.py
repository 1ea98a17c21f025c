"""Table 1: the arm and preset configs compose, and `hfrnn report` writes table1.md/.csv from run files."""
import csv
import json
import statistics
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hfrnn.cli import CONFIG_DIR
from hfrnn.config import register, validate
from hfrnn.optim.adam import AdamOptions
from hfrnn.optim.hessian_free import HFOptions
from hfrnn.optim.sgd import SGDOptions
from hfrnn.report.cli import main as report_main
from hfrnn.report.table1 import PAPER

NATURAL = ("bouncing_balls", "midi", "speech")
PAPER_T = {"bouncing_balls": 30, "midi": 200, "speech": 100}
DATA = {"bouncing_balls": "data/bouncing_balls.h5", "midi": "data/nottingham.h5", "speech": "data/fsdd.h5"}
ARMS = {"rnn_hf": ("rnn", HFOptions), "lstm_sgd": ("lstm", SGDOptions), "lstm_adam": ("lstm", AdamOptions)}
PRESETS = [f"table1_{t}{s}" for t in NATURAL for s in ("", "_small")]


def _compose(overrides, hydra_cfg=False):
    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=hydra_cfg)


def _typed(overrides):
    cfg = OmegaConf.to_object(_compose(overrides))
    validate(cfg)
    return cfg


# ---------------------------------------------------------------------------------------- configs

def test_arm_files_exist():
    assert {p.stem for p in Path(CONFIG_DIR, "arm").glob("*.yaml")} == set(ARMS)


@pytest.mark.parametrize("task", NATURAL)
@pytest.mark.parametrize("arm", sorted(ARMS))
def test_arm_picks_model_optimizer_and_sizes(arm, task):
    cfg = _typed([f"arm={arm}", f"task={task}"])
    model, opt_type = ARMS[arm]
    assert cfg.task.name == task and cfg.model.name == model and isinstance(cfg.optimizer, opt_type)
    if model == "rnn":
        assert cfg.hidden == 300
        assert (cfg.optimizer.batch.gradient, cfg.optimizer.batch.curvature) == (10000, 1000)  # no preset: full
        assert cfg.optimizer.structural.enabled
    else:
        assert (cfg.model.blocks, cfg.model.cells_per_block) == (30, 10)


def test_without_arm_the_defaults_are_unchanged():
    cfg = _typed(["task=midi"])
    assert (cfg.model.name, cfg.optimizer.name, cfg.hidden) == ("rnn", "hf", 100)


def test_command_line_keys_override_the_arm():
    cfg = _typed(["arm=rnn_hf", "task=speech", "hidden=50", "optimizer=hf_nosd"])
    assert cfg.hidden == 50 and cfg.optimizer.name == "hf_nosd" and not cfg.optimizer.structural.enabled


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_sweep_both_arms(preset):
    cfg = _compose([f"experiment={preset}"], hydra_cfg=True)
    task = preset[len("table1_"):].removesuffix("_small")
    params = cfg.hydra.sweeper.params
    assert {"rnn_hf", "lstm_sgd"} <= {a.strip() for a in str(params.arm).split(",")}
    assert len(str(params.seed).split(",")) >= 2
    assert "table1" in cfg.hydra.sweep.dir
    assert cfg.task.name == task and cfg.T == PAPER_T[task] and cfg.data.path == DATA[task]
    assert cfg.budget.max_wall_s is not None and cfg.budget.max_minibatches >= 1e8  # the clock ends runs
    # Without -m the preset's own arm (rnn_hf) applies.
    assert (cfg.model.name, cfg.optimizer.name, cfg.hidden) == ("rnn", "hf", 300)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("arm", sorted(ARMS))
def test_every_arm_of_every_preset_validates(preset, arm):
    """What each job of the sweep composes (the sweeper's `arm=` override), plus Adam."""
    cfg = _typed([f"experiment={preset}", f"arm={arm}"])
    model, opt_type = ARMS[arm]
    assert cfg.model.name == model and isinstance(cfg.optimizer, opt_type)
    if model == "rnn":
        assert cfg.hidden == 300
    else:
        assert (cfg.model.blocks, cfg.model.cells_per_block) == (30, 10)
    if arm == "rnn_hf":
        full = (cfg.optimizer.batch.gradient, cfg.optimizer.batch.curvature) == (10000, 1000)
        assert full != preset.endswith("_small")  # small presets shrink the HF batches, paper scale keeps them
        frames = cfg.optimizer.batch.gradient * (cfg.T - 1)
        assert not preset.endswith("_small") or 40_000 <= frames <= 80_000


def test_small_presets_give_both_arms_the_same_short_budget():
    for task in NATURAL:
        walls = {_typed([f"experiment=table1_{task}_small", f"arm={arm}"]).budget.max_wall_s
                 for arm in ("rnn_hf", "lstm_sgd")}
        assert len(walls) == 1 and 240 <= walls.pop() <= 480


# ---------------------------------------------------------------------------------------- report

def make_run(root: Path, name: str, task: str, arm: str, seed: int, status: str | None, measures: dict,
             T: int | None = None, hidden: int = 300, minibatches: float = 100.0, wall_s: float = 360.0,
             frames: float = 29000.0, sequences: float = 1000.0, n_params: int = 1000, log: bool = True) -> Path:
    """A run directory as `hfrnn train` writes it for a natural task (the fields the report reads)."""
    T = T or PAPER_T[task]
    model = "rnn" if arm.startswith("rnn") else "lstm"
    opt = arm.split("_", 1)[1]
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "config.yaml").write_text(
        f"task:\n  name: {task}\n  options: {{}}\nmodel:\n  name: {model}\n  blocks: 30\n  cells_per_block: 10\n"
        f"  peepholes: false\noptimizer:\n  name: {opt}\nT: {T}\nseed: {seed}\nhidden: {hidden}\n"
        f"budget:\n  max_minibatches: 1000000000.0\n  max_wall_s: 360.0\ndata:\n  path: {DATA[task]}\n")
    (d / ".hydra" / "overrides.yaml").write_text(f"- experiment=table1_{task}_small\n- arm={arm}\n- seed={seed}\n")
    base, unit = ("log_lik", "per_step") if task == "midi" else ("sq_err", "per_frame")
    tests = {"test_frames": frames, "test_sequences": sequences, "test_loss": measures.get("loss", 1.0)}
    if "per_step" in measures:
        s = measures["per_step"] * frames
        tests.update({f"test_{base}_sum": s, f"test_{base}_{unit}": s / frames,
                      f"test_{base}_per_sequence": s / sequences})
    with open(d / "metrics.jsonl", "w") as fh:
        for i in (1, 2):
            fh.write(json.dumps({"iteration": i, "minibatches": minibatches * i / 2, "wall_s": wall_s * i / 2,
                                 "train_loss": 1.0 / i, **tests}) + "\n")
    if log:
        info = {"dataset": task, "path": DATA[task], "T": T, "mode": "stream" if task == "speech" else "sequences",
                "description": f"synthetic {task} frames"}
        (d / "cli.log").write_text(f"[2026-01-01 00:00:00,000][hfrnn.tasks.natural][INFO] - task {task} on "
                                   f"{DATA[task]}: {info!r}\n")
    if status is not None:
        res = {"task": task, "T": T, "model": model, "optimizer": opt, "seed": seed, "status": status,
               "success": False, "message": "boom" if status == "error" else "", "iterations": 2,
               "minibatches": minibatches, "forward_evals": 1.0, "rejected_steps": 0, "wall_s": wall_s,
               "n_params": n_params, **tests, "hfrnn_version": "0.1.0",
               "config": {"task": {"name": task, "options": {}, "success_threshold": 0.01},
                          "model": {"name": model, "blocks": 30, "cells_per_block": 10, "peepholes": False},
                          "optimizer": {"name": opt}, "T": T, "seed": seed, "hidden": hidden,
                          "budget": {"max_minibatches": 1e9, "max_wall_s": 360.0}, "data": {"path": DATA[task]}}}
        (d / "result.json").write_text(json.dumps(res))
    return d


BB_HF = [(10.0, 0.5, 400.0, 361.0), (12.0, 0.7, 500.0, 370.0), (17.0, 0.9, 600.0, 380.0)]  # per frame, loss, mb, wall
BB_GD = [(20.0, 1.0, 50.0, 360.0), (30.0, 2.0, 70.0, 362.0)]
MIDI_GD = [-4.0, -5.0]


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "table1_small"
    for s, (e, loss, mb, w) in enumerate(BB_HF):
        make_run(root / "bb", f"{s}_bouncing_balls_T30_hf_s{s}", "bouncing_balls", "rnn_hf", s, "budget_exhausted",
                 {"per_step": e, "loss": loss}, minibatches=mb, wall_s=w, n_params=225825)
    for s, (e, loss, mb, w) in enumerate(BB_GD):
        make_run(root / "bb", f"{3 + s}_bouncing_balls_T30_sgd_s{s}", "bouncing_balls", "lstm_sgd", s,
                 "budget_exhausted", {"per_step": e, "loss": loss}, minibatches=mb, wall_s=w, n_params=272865)
    make_run(root / "bb", "5_bouncing_balls_T30_sgd_s2", "bouncing_balls", "lstm_sgd", 2, None, {"per_step": 1.0})
    make_run(root / "bb", "6_bouncing_balls_T30_sgd_s3", "bouncing_balls", "lstm_sgd", 3, "error", {})
    make_run(root / "bb", "7_bouncing_balls_T30_sgd_s4", "bouncing_balls", "lstm_sgd", 4, "interrupted",
             {"per_step": 99.0})
    make_run(root / "bb", "8_bouncing_balls_T30_hf_s0", "bouncing_balls", "rnn_hf", 0, "budget_exhausted",
             {"per_step": 50.0}, hidden=100, n_params=70000)  # another size: its own row
    make_run(root / "midi", "0_midi_T200_hf_s0", "midi", "rnn_hf", 0, "diverged", {"per_step": -3.5},
             frames=222995.0, sequences=1193.0, log=False)
    for s, ll in enumerate(MIDI_GD):
        make_run(root / "midi", f"{1 + s}_midi_T200_sgd_s{s}", "midi", "lstm_sgd", s, "budget_exhausted",
                 {"per_step": ll}, frames=222995.0, sequences=1193.0)
    # A pathological run beside them: Figure 3 only, never Table 1.
    d = root / "fig3" / "0_addition_T30_hf_s0"
    (d / ".hydra").mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({
        "task": "addition", "T": 30, "model": "rnn", "optimizer": "hf", "seed": 0, "status": "solved",
        "success": True, "minibatches": 1000.0, "wall_s": 10.0, "test_error_rate": 0.005, "hfrnn_version": "0.1.0",
        "config": {"task": {"name": "addition", "success_threshold": 0.01}, "optimizer": {"name": "hf"}, "T": 30,
                   "seed": 0, "budget": {"max_minibatches": 50000}}}))
    return root


def _rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _row(rows, task, model, optimizer):
    match = [r for r in rows if (r["task"], r["model"], r["optimizer"]) == (task, model, optimizer)]
    assert len(match) == 1, (task, model, optimizer, rows)
    return match[0]


def test_table1_csv_means_equal_hand_computed(sweep, tmp_path):
    out = tmp_path / "report"
    assert report_main([str(sweep), "--out", str(out), "-q"]) == 0
    rows = _rows(out / "table1.csv")
    assert len(rows) == 5

    hf = _row(rows, "bouncing_balls", "rnn 300", "hf")
    per_frame = [e for e, *_ in BB_HF]
    assert hf["data"] == "data/bouncing_balls.h5" and hf["T"] == "30" and hf["arm"] == "RNN+HF"
    assert int(hf["n_runs"]) == 3 and hf["seeds"] == "0,1,2" and hf["measure"] == "sq_err"
    assert float(hf["per_step_mean"]) == pytest.approx(13.0, rel=1e-5)
    assert float(hf["per_step_std"]) == pytest.approx(statistics.stdev(per_frame), rel=1e-5)
    assert float(hf["per_sequence_mean"]) == pytest.approx(13.0 * 29, rel=1e-5)  # 29,000 frames / 1,000 windows
    # hfrnn 0.1.0 recorded test_loss per frame: the report converts it to per sequence (x N / S)
    assert float(hf["test_loss_mean"]) == pytest.approx(0.7 * 29, rel=1e-5)
    assert float(hf["minibatches_mean"]) == pytest.approx(500.0)
    assert float(hf["wall_s_mean"]) == pytest.approx(370.333333, rel=1e-5)
    assert hf["n_params"] == "225825" and float(hf["max_wall_s"]) == 360.0
    assert float(hf["test_frames"]) == 29000 and float(hf["test_sequences"]) == 1000
    assert (float(hf["paper_this_arm"]), float(hf["paper_rnn_hf"]), float(hf["paper_lstm_gd"])) == (22, 22, 35)

    gd = _row(rows, "bouncing_balls", "lstm 30x10", "sgd")
    assert gd["arm"] == "LSTM+GD" and int(gd["n_runs"]) == 2 and gd["seeds"] == "0,1"
    assert (int(gd["n_incomplete"]), int(gd["n_crashed"])) == (2, 1)  # no result.json + interrupted; error
    assert float(gd["per_step_mean"]) == pytest.approx(25.0, rel=1e-5)
    assert float(gd["per_sequence_mean"]) == pytest.approx(25.0 * 29, rel=1e-5)
    assert float(gd["test_loss_mean"]) == pytest.approx(1.5 * 29) and float(gd["minibatches_mean"]) == pytest.approx(60.0)
    assert float(gd["paper_this_arm"]) == 35 and gd["n_params"] == "272865"

    small = _row(rows, "bouncing_balls", "rnn 100", "hf")
    assert int(small["n_runs"]) == 1 and float(small["per_step_mean"]) == pytest.approx(50.0)
    assert small["per_step_std"] == ""  # one run: no standard deviation

    midi_hf = _row(rows, "midi", "rnn 300", "hf")
    assert midi_hf["measure"] == "log_lik" and midi_hf["per_step_key"] == "log_lik_per_step"
    assert (int(midi_hf["n_runs"]), int(midi_hf["n_diverged"])) == (1, 1)  # diverged runs count, flagged
    assert float(midi_hf["per_step_mean"]) == pytest.approx(-3.5)
    assert float(midi_hf["per_sequence_mean"]) == pytest.approx(-3.5 * 222995 / 1193, rel=1e-5)
    assert float(midi_hf["paper_this_arm"]) == PAPER["midi"][0]
    midi_gd = _row(rows, "midi", "lstm 30x10", "sgd")
    assert float(midi_gd["per_step_mean"]) == pytest.approx(statistics.mean(MIDI_GD))
    assert float(midi_gd["per_sequence_mean"]) == pytest.approx(statistics.mean(MIDI_GD) * 222995 / 1193, rel=1e-5)
    assert float(midi_gd["paper_this_arm"]) == -683

    # Natural tasks are not Figure 3 cells; the pathological run still is.
    fig3 = _rows(out / "figure3.csv")
    assert [r["task"] for r in fig3] == ["addition"]


def test_table1_md_defines_its_measures(sweep, tmp_path):
    out = tmp_path / "report"
    assert report_main([str(sweep), "--out", str(out), "-q"]) == 0
    md = (out / "table1.md").read_text()
    for text in ("| bouncing_balls | `data/bouncing_balls.h5` | 30 | rnn 300 | hf | 3 |", "13 ± 3.6",
                 "22 / 35", "-569 / -683", "E = sum_{t,b} sum_d (p - y)^2", "ln(1 - p)",
                 "N = 29,000 predicted frames in S = 1,000 windows",
                 "N = 222,995 predicted frames in S = 1,193 windows",
                 "synthetic bouncing_balls frames", "2, 2 incomplete, 1 crashed", "1, 1 diverged",
                 "**RNN+HF** is better here", "wall-clock budget per run: 360.0 s"):
        assert text in md, text
    assert md.index("| bouncing_balls | `data/bouncing_balls.h5` | 30 | rnn 300 | hf") < md.index("lstm 30x10 | sgd")
    assert (out / "table1_curves.png").stat().st_size > 0
    assert "table1.md" in (out / "summary.md").read_text()


def test_no_table1_without_natural_runs(sweep, tmp_path):
    out = tmp_path / "report"
    assert report_main([str(sweep / "fig3"), "--out", str(out), "-q", "--no-curves"]) == 0
    assert not (out / "table1.md").exists() and not (out / "table1.csv").exists()


def test_report_does_not_import_torch_or_hydra():
    import subprocess
    import sys

    code = ("import sys, hfrnn.report.cli, hfrnn.report.table1; "
            "bad = [m for m in ('torch', 'hydra', 'hfrnn.train', 'hfrnn.tasks') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr



def test_test_loss_is_reported_per_sequence_whatever_the_version():
    from hfrnn.report.table1 import test_loss_per_sequence
    new = {"test_loss": 58.0, "loss_unit": "per sequence", "test_frames": 290.0, "test_sequences": 10.0}
    old = {"test_loss": 2.0, "test_frames": 290.0, "test_sequences": 10.0}  # hfrnn < 0.3: per frame
    assert test_loss_per_sequence(new) == 58.0 and test_loss_per_sequence(old) == pytest.approx(58.0)
    assert test_loss_per_sequence({"test_loss": 2.0}) != test_loss_per_sequence({"test_loss": 2.0})  # nan: unknown
