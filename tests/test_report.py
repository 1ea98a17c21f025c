"""`hfrnn report` on synthetic run files, and the Figure 3 sweep and launcher presets."""
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hfrnn.report.cli import main as report_main

LIMIT = 50_000


def make_run(root: Path, name: str, task: str, T: int, opt: str, seed: int, status: str | None = None,
             minibatches: float = 0.0, wall_s: float = 0.0, version: str = "0.1.0", n_iters: int = 4,
             result_text: str | None = None, budget: float = 50000.0) -> Path:
    """A run directory as `hfrnn train` writes it (only the fields the report reads)."""
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "config.yaml").write_text(
        f"task:\n  name: {task}\n  success_threshold: 0.01\nmodel:\n  name: rnn\noptimizer:\n  name: {opt}\n"
        f"  cg:\n    max_iters: 300\nT: {T}\nseed: {seed}\nbudget:\n  max_minibatches: {budget}\n")
    (d / ".hydra" / "overrides.yaml").write_text(f"- task={task}\n- T={T}\n- optimizer={opt}\n- seed={seed}\n")
    with open(d / "metrics.jsonl", "w") as fh:
        for i in range(1, n_iters + 1):
            rec = {"iteration": i, "minibatches": minibatches * i / n_iters, "wall_s": wall_s * i / n_iters,
                   "train_loss": 1.0 / i, "lambda": 0.1 / i, "rho": 0.5 if i > 1 else "nan", "cg_iters": 10 * i,
                   "test_error_rate": 1.0 - i / n_iters, "forward_evals": i}
            fh.write(json.dumps(rec) + "\n")
    if result_text is not None:
        (d / "result.json").write_text(result_text)
    elif status is not None:
        res = {"task": task, "T": T, "model": "rnn", "optimizer": opt, "seed": seed, "status": status,
               "success": status == "solved", "message": "boom" if status == "error" else "",
               "minibatches": minibatches, "wall_s": wall_s, "hfrnn_version": version,
               "test_error_rate": 0.005 if status == "solved" else 0.5,
               "config": {"task": {"name": task, "success_threshold": 0.01}, "optimizer": {"name": opt},
                          "T": T, "seed": seed, "budget": {"max_minibatches": budget}}}
        (d / "result.json").write_text(json.dumps(res))
    return d


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    # addition T=30 hf: three solved (1000, 2000, 4000) and one out of budget.
    for s, (mb, w) in enumerate([(1000, 10), (2000, 20), (4000, 30)]):
        make_run(root, f"{s}_addition_T30_hf_s{s}", "addition", 30, "hf", s, "solved", mb, w)
    make_run(root, "3_addition_T30_hf_s3", "addition", 30, "hf", 3, "budget_exhausted", 50000, 100)
    # addition T=30 hf_nosd: one solved, one "solved" past the limit, one diverged.
    make_run(root, "4_addition_T30_hf_nosd_s0", "addition", 30, "hf_nosd", 0, "solved", 3000, 40)
    make_run(root, "5_addition_T30_hf_nosd_s1", "addition", 30, "hf_nosd", 1, "solved", 50500, 50)
    make_run(root, "6_addition_T30_hf_nosd_s2", "addition", 30, "hf_nosd", 2, "diverged", 800, 60)
    # addition T=50 hf: incomplete (no result.json; named so only .hydra/config.yaml identifies it),
    # crashed, interrupted, unparsable result.json, and one solved run from another version.
    make_run(root / "nested", "still_running", "addition", 50, "hf", 0, None, 700, 7)
    make_run(root, "8_addition_T50_hf_s1", "addition", 50, "hf", 1, "error", 100, 1)
    make_run(root, "9_addition_T50_hf_s2", "addition", 50, "hf", 2, "interrupted", 900, 9)
    make_run(root, "10_addition_T50_hf_s3", "addition", 50, "hf", 3, result_text='{"task": "addition", "T": 5')
    make_run(root, "11_addition_T50_hf_s4", "addition", 50, "hf", 4, "solved", 5000, 70, version="0.0.9")
    make_run(root, "12_xor_T30_hf_s0", "xor", 30, "hf", 0, "solved", 700, 5)
    with open(root / "12_xor_T30_hf_s0" / "metrics.jsonl", "a") as fh:
        fh.write('{"iteration": 5, "minib\n')  # a torn line: refused, the rest still read
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def read_csv(path: Path) -> dict[tuple[str, int, str], dict[str, str]]:
    with open(path) as fh:
        return {(r["task"], int(r["T"]), r["optimizer"]): r for r in csv.DictReader(fh)}


def test_report_numbers_equal_hand_computed(sweep, capsys):
    assert report_main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "13 runs" in out and "refused" in out and "mixed hfrnn versions" in out
    for name in ("figure3.png", "figure3.csv", "summary.md", "curves_addition.png", "hf_addition.png",
                 "curves_xor.png", "hf_xor.png"):
        assert (sweep / name).stat().st_size > 1000 or name.endswith((".csv", ".md")), name
    assert (sweep / "figure3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_csv(sweep / "figure3.csv")
    assert set(rows) == {("addition", 30, "hf"), ("addition", 30, "hf_nosd"), ("addition", 50, "hf"),
                         ("xor", 30, "hf")}
    r = rows[("addition", 30, "hf")]
    assert (int(r["n_runs"]), int(r["n_solved"]), int(r["n_failed"])) == (4, 3, 1)
    assert math.isclose(float(r["mean_minibatches"]), 7000 / 3, rel_tol=1e-5)
    assert float(r["min_minibatches"]) == 1000 and float(r["max_minibatches"]) == 4000
    assert float(r["failure_rate"]) == 0.25 and float(r["mean_wall_s"]) == 40
    r = rows[("addition", 30, "hf_nosd")]  # 50,500 "solved" minibatches is a failure, so is diverged
    assert (int(r["n_runs"]), int(r["n_solved"]), int(r["n_failed"])) == (3, 1, 2)
    assert float(r["mean_minibatches"]) == float(r["min_minibatches"]) == float(r["max_minibatches"]) == 3000
    assert math.isclose(float(r["failure_rate"]), 2 / 3, abs_tol=1e-4)
    r = rows[("addition", 50, "hf")]  # only the 0.0.9 run counts; the others are listed
    assert (int(r["n_runs"]), int(r["n_solved"]), int(r["n_failed"])) == (1, 1, 0)
    assert float(r["mean_minibatches"]) == 5000 and float(r["failure_rate"]) == 0
    assert (int(r["n_incomplete"]), int(r["n_crashed"])) == (2, 1)
    assert rows[("xor", 30, "hf")]["n_solved"] == "1"

    md = (sweep / "summary.md").read_text()
    assert "## addition" in md and "## xor" in md
    assert "Incomplete runs" in md and "nested/still_running" in md and "9_addition_T50_hf_s2" in md
    assert "Crashed runs" in md and "8_addition_T50_hf_s1" in md and "boom" in md
    assert "Refused files" in md and "10_addition_T50_hf_s3/result.json" in md
    assert "12_xor_T30_hf_s0/metrics.jsonl" in md
    assert "0.0.9 (1 run)" in md and "0.1.0 (10 runs)" in md


def test_report_single_run_and_out_dir(sweep, tmp_path):
    out = tmp_path / "out"
    assert report_main([str(sweep / "0_addition_T30_hf_s0"), "--out", str(out), "--no-curves"]) == 0
    rows = read_csv(out / "figure3.csv")
    assert list(rows) == [("addition", 30, "hf")] and rows[("addition", 30, "hf")]["mean_minibatches"] == "1000"
    assert (out / "figure3.png").exists() and not (out / "curves_addition.png").exists()


def test_limit_option(sweep, tmp_path):
    assert report_main([str(sweep), "--out", str(tmp_path / "o"), "--limit", "2500", "-q", "--no-curves"]) == 0
    r = read_csv(tmp_path / "o" / "figure3.csv")[("addition", 30, "hf")]
    assert (r["n_solved"], r["n_failed"], r["max_minibatches"]) == ("2", "2", "2000")


def test_errors_and_help(tmp_path, capsys):
    assert report_main([str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty")]) == 1
    assert report_main(["--help"]) == 0
    assert "usage: hfrnn report" in capsys.readouterr().out
    from hfrnn.cli import main as hfrnn_main
    assert hfrnn_main(["report", "--help"]) == 0


def test_report_never_imports_training_code_torch_or_hydra():
    code = ("import sys, hfrnn.report.cli, hfrnn.report.collect, hfrnn.report.figure3, hfrnn.report.diagnostics\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'hydra', 'omegaconf')\n"
            "       or (m.startswith('hfrnn.') and not m.startswith('hfrnn.report'))]\n"
            "assert not bad, bad\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


# ---- the sweep presets and launchers compose -------------------------------------------------

def _compose(overrides, hydra_config=False):
    from hydra import compose, initialize_config_dir

    from hfrnn.cli import CONFIG_DIR
    from hfrnn.config import register
    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=hydra_config)


def _jobs(experiment: str) -> list[list[str]]:
    """The job overrides Hydra's basic sweeper makes of ``-m experiment=<name>``."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    params = _compose([f"experiment={experiment}"], hydra_config=True).hydra.sweeper.params
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return BasicSweeper.split_arguments(overrides, None)[0]


def test_figure3_grid_is_320_runs():
    jobs = _jobs("figure3")
    assert len(jobs) == 8 * 4 * 2 * 5 == 320
    combos = {tuple(sorted(j)) for j in jobs}
    assert len(combos) == 320
    tasks = {o.split("=")[1] for j in jobs for o in j if o.startswith("task=")}
    from hfrnn.tasks.pathological import PATHOLOGICAL_TASKS
    assert tasks == set(PATHOLOGICAL_TASKS)
    for job in (jobs[0], jobs[-1]):
        cfg = _compose(["experiment=figure3", *job])
        assert cfg.budget.max_minibatches == 50000


def test_figure3_small_every_job_composes():
    from omegaconf import OmegaConf

    from hfrnn.config import validate
    jobs = _jobs("figure3_small")
    assert len(jobs) == 4 * 2 * 2 * 2
    seen = set()
    for job in jobs:
        cfg = OmegaConf.to_object(_compose(["experiment=figure3_small", *job]))
        validate(cfg)
        seen.add((cfg.task.name, cfg.T, cfg.optimizer.name, cfg.seed))
        assert cfg.optimizer.structural.enabled == (cfg.optimizer.name == "hf")
    assert len(seen) == 32 and {s[1] for s in seen} == {30, 50}


def test_no_experiment_leaves_defaults():
    cfg = _compose([], hydra_config=True)
    assert cfg.task.name == "addition" and cfg.T == 30 and not cfg.hydra.sweeper.params


@pytest.mark.parametrize("preset,plugin,target,fields", [
    ("local2", "hydra_plugins.hydra_joblib_launcher", "JoblibLauncher", {"n_jobs": 2}),
    ("slurm", "hydra_plugins.hydra_submitit_launcher", "SlurmLauncher", {"cpus_per_task": 1, "tasks_per_node": 1}),
])
def test_launcher_presets(preset, plugin, target, fields):
    pytest.importorskip(plugin)
    cfg = _compose(["experiment=figure3_small", f"hydra/launcher={preset}"], hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    for k, v in fields.items():
        assert cfg.hydra.launcher[k] == v
    assert cfg.threads == 1  # one torch thread per job: jobs x threads <= cores


def test_runs_stopped_by_a_cap_are_not_failures():
    from hfrnn.report.collect import Run, classify
    capped = Run(path=Path("x"), status="budget_exhausted", minibatches=9846.0)
    spent = Run(path=Path("y"), status="budget_exhausted", minibatches=50000.0)
    diverged = Run(path=Path("z"), status="diverged", minibatches=10.0)
    assert [classify(r) for r in (capped, spent, diverged)] == ["stopped", "failed", "failed"]
