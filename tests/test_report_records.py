"""`hfrnn report` from recorded facts: the model in a run's identity, YAML read by PyYAML, constants
defined once, the data record preferred to the log, and every loss labelled with its unit."""
from __future__ import annotations

import ast
import csv
import math
from pathlib import Path

import pytest

import hfrnn.report
from hfrnn.report import collect, figure3
from hfrnn.report.cli import main as report_main
from hfrnn.report.collect import collect as collect_runs
from hfrnn.report.collect import common_loss_unit, loss_pair, read_yaml

from .test_report_helpers import eval_fields, write_run


def _csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _capture(monkeypatch, module) -> dict:
    """The figures ``module`` would save, by file name (nothing is written)."""
    figs: dict = {}

    def save(fig, png):
        figs[Path(png).name] = fig
        return []

    monkeypatch.setattr(module, "save_figure", save)
    return figs


def _table(md: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """The columns and rows of the Markdown table under ``## heading``."""
    lines = md.split(f"## {heading}\n", 1)[1].strip().split("\n\n", 1)[0].splitlines()
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    return cols, [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


# ------------------------------------------------------------------------------ the model in the identity

@pytest.fixture
def two_models(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for s, mb in enumerate((1000.0, 3000.0)):
        write_run(root, f"{s}_addition_T30_hf_s{s}", seed=s, minibatches=mb)
    for s, mb in enumerate((5000.0, 7000.0)):
        write_run(root, f"{2 + s}_addition_T30_hf_s{s}", model="lstm", seed=s, minibatches=mb)
    write_run(root, "4_addition_T30_hf_s9", model="lstm", seed=9, status=None)  # identity from .hydra only
    return root


def test_rnn_and_lstm_runs_get_their_own_cells(two_models, tmp_path):
    out = tmp_path / "report"
    assert report_main([str(two_models), "--out", str(out), "-q", "--formats", "png"]) == 0
    rows = {(r["task"], r["T"], r["model"], r["optimizer"]): r for r in _csv(out / "figure3.csv")}
    assert set(rows) == {("addition", "30", "rnn", "hf"), ("addition", "30", "lstm", "hf")}
    assert float(rows[("addition", "30", "rnn", "hf")]["mean_minibatches"]) == 2000
    lstm = rows[("addition", "30", "lstm", "hf")]
    assert float(lstm["mean_minibatches"]) == 6000 and lstm["n_incomplete"] == "1" and lstm["n_solved"] == "2"
    md = (out / "summary.md").read_text()
    cols, table = _table(md, "addition")
    assert cols[:3] == ["T", "model", "optimizer"]
    assert [(r[1], r[2], r[3]) for r in table] == [("rnn", "hf", "2"), ("lstm", "hf", "2")]
    assert "addition T=30 lstm hf seed=9" in md  # the incomplete run's label names its model


def test_model_shown_in_figure_legends_only_when_several(two_models, tmp_path, monkeypatch):
    figs = _capture(monkeypatch, figure3)
    runs, _ = collect_runs(two_models)
    assert {r.model for r in runs} == {"rnn", "lstm"}
    figure3.plot(figure3.aggregate(runs), two_models / "figure3.png")
    labels = [t.get_text() for lg in figs["figure3.png"].legends for t in lg.get_texts()]
    assert labels == ["RNN + HF, structural damping (hf)", "LSTM + HF, structural damping (hf)"]
    figs.clear()
    figure3.plot(figure3.aggregate([r for r in runs if r.model == "rnn"]), two_models / "figure3.png")
    labels = [t.get_text() for lg in figs["figure3.png"].legends for t in lg.get_texts()]
    assert labels == ["HF, structural damping (hf)"]


def test_one_model_csv_has_the_model_and_summary_has_no_model_column(tmp_path):
    root = tmp_path / "sweep"
    write_run(root, "0_addition_T30_hf_s0")
    out = tmp_path / "report"
    assert report_main([str(root), "--out", str(out), "-q", "--no-curves", "--formats", "png"]) == 0
    assert _csv(out / "figure3.csv")[0]["model"] == "rnn"
    cols, _ = _table((out / "summary.md").read_text(), "addition")
    assert "model" not in cols


def test_curves_tell_models_apart(two_models, tmp_path, monkeypatch):
    from hfrnn.report import diagnostics
    figs = _capture(monkeypatch, diagnostics)
    runs, refused = collect_runs(two_models)
    diagnostics.plot_all(runs, tmp_path, refused)
    labels = {ln.get_label(): ln.get_linestyle() for ax in figs["curves_addition.png"].axes for ln in ax.get_lines()
              if not ln.get_label().startswith("_")}
    assert labels["RNN + hf"] == "-" and labels["LSTM + hf"] == "--"


# ------------------------------------------------------------------------------ YAML, constants, data record

def test_config_yaml_is_read_by_pyyaml(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("# a comment\ntask:\n  name: 'addition'  # quoted, commented\n  options: {a: 1, b: [2, 3]}\n"
                   "model: {name: lstm, blocks: 30}\nT: 30\nseed: 7\nbudget:\n  max_minibatches: 50000.0\n"
                   "  max_wall_s: null\nnotes: |\n  two\n  lines\n")
    data = read_yaml(cfg)
    assert data["task"] == {"name": "addition", "options": {"a": 1, "b": [2, 3]}}
    assert data["model"]["name"] == "lstm" and data["T"] == 30 and data["budget"]["max_minibatches"] == 50000.0
    assert data["budget"]["max_wall_s"] is None and data["notes"] == "two\nlines\n"
    (tmp_path / "bad.yaml").write_text("task: [unclosed\n")
    assert read_yaml(tmp_path / "bad.yaml") == {} and read_yaml(tmp_path / "missing.yaml") == {}
    # A run known only from .hydra/config.yaml (no result.json yet): identity, model included.
    write_run(tmp_path / "s", "still_running", status=None, config_yaml=cfg.read_text())
    (run,), _ = collect_runs(tmp_path / "s")
    assert (run.task, run.T, run.model, run.seed, run.state, run.budget) == ("addition", 30, "lstm", 7, "incomplete",
                                                                          50000.0)


def test_each_constant_is_defined_once_in_the_report():
    """NATURAL_TASKS, TASK_ORDER, DEFAULT_DATA, ... are assigned in one module; the others import them."""
    assigned: dict[str, list[str]] = {}
    for path in Path(hfrnn.report.__file__).parent.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else [])
            for t in targets:
                if isinstance(t, ast.Name) and t.id.isupper():
                    assigned.setdefault(t.id, []).append(path.name)
    twice = {k: v for k, v in assigned.items() if len(v) > 1 and k not in ("CSV_FIELDS",)}
    assert not twice, twice
    assert assigned["NATURAL_TASKS"] == ["constants.py"] and assigned["DEFAULT_DATA"] == ["constants.py"]
    source = "".join(p.read_text() for p in Path(hfrnn.report.__file__).parent.glob("*.py"))
    assert "read_block_yaml" not in source and "yaml.safe_load" in source


def _natural_run(root: Path, name: str, *, data: dict | None, log: str | None) -> Path:
    d = write_run(root, name, task="bouncing_balls", status="budget_exhausted", minibatches=400.0,
                  evals=[(400.0, eval_fields("0.3.0", 1.5, steps=29.0, test_frames=290.0, test_sequences=10.0,
                                              test_sq_err_per_frame=2.0, test_sq_err_per_sequence=58.0))],
                  result_extra={"data": data} if data is not None else None)
    if log is not None:
        info = {"dataset": "bouncing_balls", "path": "data/bouncing_balls.h5", "T": 30, "mode": "sequences",
                "description": log}
        (d / "cli.log").write_text("[2026-01-01 00:00:00,000][hfrnn.tasks.natural][INFO] - task bouncing_balls on "
                                   f"data/bouncing_balls.h5: {info!r}\n")
    return d


def test_data_record_is_preferred_to_the_log(tmp_path):
    root = tmp_path / "sweep"
    record = {"dataset": "bouncing_balls", "path": "data/bouncing_balls.h5", "description": "from the record",
              "mode": "sequences", "T": 30}
    _natural_run(root, "0_bouncing_balls_T30_hf_s0", data=record, log="from the log")
    runs, _ = collect_runs(root)
    assert collect.data_record(runs[0])["description"] == "from the record"
    out = tmp_path / "report"
    assert report_main([str(root), "--out", str(out), "-q", "--no-curves"]) == 0
    md = (out / "table1.md").read_text()
    assert "data: from the record (mode=sequences)" in md and "from the log" not in md


def test_old_runs_still_give_their_data_from_the_log(tmp_path):
    root = tmp_path / "sweep"
    _natural_run(root, "0_bouncing_balls_T30_hf_s0", data=None, log="from the log")
    out = tmp_path / "report"
    assert report_main([str(root), "--out", str(out), "-q", "--no-curves"]) == 0
    assert "data: from the log (mode=sequences)" in (out / "table1.md").read_text()
    _natural_run(tmp_path / "bare", "0_bouncing_balls_T30_hf_s0", data=None, log=None)
    runs, _ = collect_runs(tmp_path / "bare")
    assert collect.data_record(runs[0]) == {}


def test_natural_runs_are_finished_not_stopped(tmp_path):
    """A natural task has no success rule: a run ended by its wall clock is 'finished' (Table 1 counts it)."""
    root = tmp_path / "sweep"
    _natural_run(root, "0_bouncing_balls_T30_hf_s0", data=None, log=None)
    write_run(root, "1_bouncing_balls_T30_hf_s1", task="bouncing_balls", seed=1, status="diverged")
    out = tmp_path / "report"
    assert report_main([str(root), "--out", str(out), "-q", "--no-curves"]) == 0
    md = (out / "summary.md").read_text()
    assert "2 run directories: 0 solved, 1 failed, 1 finished." in md and "Stopped before" not in md
    row = _csv(out / "table1.csv")[0]
    assert (row["n_runs"], row["n_diverged"]) == ("2", "1")


# ------------------------------------------------------------------------------ loss units

def test_loss_pair_reads_every_version():
    new = {"test_loss": 5.0, "test_loss_per_step": 0.5, "loss_unit": "per sequence ..."}
    assert loss_pair(new) == (5.0, 0.5)
    assert loss_pair({"test_loss": 5.0, "test_loss_per_step": 0.5}) == (5.0, 0.5)  # a 0.3 metrics record
    assert loss_pair({"train_loss": 4.0, "train_loss_per_step": 0.4}, "train") == (4.0, 0.4)
    old_natural = {"test_loss": 0.5, "test_frames": 290.0, "test_sequences": 10.0}
    assert loss_pair(old_natural) == pytest.approx((14.5, 0.5))
    seq, step = loss_pair({"test_loss": 0.5})  # hfrnn < 0.3, pathological: scored steps unknown
    assert math.isnan(seq) and step == 0.5
    assert all(math.isnan(v) for v in loss_pair({}))
    assert common_loss_unit([(5.0, 0.5), (14.5, 0.5)]) == "per sequence"
    assert common_loss_unit([(5.0, 0.5), (math.nan, 0.5)]) == "per step"


def test_summary_never_mixes_loss_units(tmp_path, monkeypatch):
    root = tmp_path / "sweep"
    write_run(root, "0_addition_T30_hf_s0", evals=[(1000.0, eval_fields("0.3.0", 0.02, steps=10.0, error=0.0))])
    write_run(root, "1_addition_T50_hf_s0", T=50, evals=[(1000.0, eval_fields("0.3.0", 0.02, steps=10.0, error=0.0))])
    write_run(root, "2_addition_T50_hf_s1", T=50, seed=1, version="0.2.0",
              evals=[(1000.0, eval_fields("0.2.0", 0.04, error=0.0))])
    out = tmp_path / "report"
    from hfrnn.report import diagnostics
    figs = _capture(monkeypatch, diagnostics)
    assert report_main([str(root), "--out", str(out), "-q", "--formats", "png"]) == 0
    cells = {(c["T"]): c for c in _csv(out / "figure3.csv")}
    assert cells["30"]["test_loss_unit"] == "per sequence"
    assert float(cells["30"]["test_loss_mean"]) == pytest.approx(0.2)
    # T=50 mixes a 0.3 run (per sequence 0.2) with a 0.2 one (per step 0.04, steps unknown): per step for both.
    assert cells["50"]["test_loss_unit"] == "per step" and float(cells["50"]["test_loss_mean"]) == pytest.approx(0.03)
    _, table = _table((out / "summary.md").read_text(), "addition")
    assert [r[8] for r in table] == ["0.2 per sequence", "0.03 per step"]
    ylabels = {ax.get_ylabel() for ax in figs["curves_addition.png"].axes} - {""}
    assert ylabels == {"test error rate", "test loss per step"}
    assert "curves_addition: test loss per step" in (out / "summary.md").read_text()


def test_table1_curves_are_per_sequence_with_their_unit(tmp_path, monkeypatch):
    from hfrnn.report import table1
    figs = _capture(monkeypatch, table1)
    root = tmp_path / "sweep"
    _natural_run(root, "0_bouncing_balls_T30_hf_s0", data=None, log=None)
    assert report_main([str(root), "--out", str(tmp_path / "out"), "-q", "--formats", "png"]) == 0
    ax = figs["table1_curves.png"].axes[0]
    assert ax.get_ylabel() == "test summed squared error\nper sequence"
    line = next(ln for ln in ax.get_lines() if not ln.get_label().startswith("_"))
    assert list(line.get_ydata()) == [58.0]
