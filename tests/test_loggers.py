"""Scalar loggers by config (``logger=``): TensorBoard events and CSV beside metrics.jsonl, resumable."""
import csv
import json
import shutil
import sys

import pytest

from hfrnn.config import ConfigError
from hfrnn.train import loggers, loop
from hfrnn.train.schema import TrainConfig, validate

from .compose import cfg_of, fit_with


BASE = ["task=addition", "T=12", "hidden=8", "task.test_size=200", "eval.every_minibatches=1"]
TINY = BASE + ["optimizer.batch.gradient=200", "optimizer.batch.curvature=100", "optimizer.cg.max_iters=10"]
BOTH = ["logger=[tensorboard,csv]"]


_cfg, _fit = cfg_of, fit_with


def _csv_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_default_is_metrics_jsonl_only(tmp_path):
    assert TrainConfig().logger == "none" and _cfg([])[0].logger == "none"
    _fit(TINY + ["budget.max_iterations=1"], tmp_path)
    assert (tmp_path / "metrics.jsonl").exists()
    assert not (tmp_path / "metrics.csv").exists() and not (tmp_path / "tb").exists()


def test_tensorboard_and_csv_match_metrics_jsonl(tmp_path):
    _fit(TINY + BOTH + ["budget.max_iterations=3"], tmp_path)
    jsonl = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = _csv_rows(tmp_path)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]  # HF: every iteration
    header = list(rows[0])
    assert header[:4] == ["iteration", "minibatches", "forward_evals", "wall_s"]
    assert set(header) == set().union(*jsonl)  # the union of the records' keys
    for row, rec in zip(rows, jsonl):
        assert float(row["train_loss"]) == pytest.approx(rec["train_loss"])
        assert float(row["rho"]) == pytest.approx(rec["rho"])
    losses = _scalars(tmp_path, "train/loss")
    assert [s for s, _ in losses] == [1, 2, 3]
    assert [v for _, v in losses] == pytest.approx([r["train_loss"] for r in jsonl], rel=1e-6)
    assert [s for s, _ in _scalars(tmp_path, "test/error_rate")] == [1, 2, 3]
    assert len(_scalars(tmp_path, "optimizer/lambda")) == 3


def test_first_order_logs_every_kth_step_and_each_evaluation(tmp_path):
    _fit(BASE + ["optimizer=sgd", "logger=csv", "log_every=4", "eval.every_minibatches=100",
                 "budget.max_iterations=10"], tmp_path)
    # The first step is evaluated; then every 4th step, and the segment's last one.
    assert [int(r["iteration"]) for r in _csv_rows(tmp_path)] == [1, 4, 8, 10]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 10  # never thinned


def test_resume_continues_the_loggers_without_duplicates(tmp_path):
    """A crash after the checkpoint leaves later rows and events; the resume cuts them."""
    run = tmp_path / "run"
    run.mkdir()
    _fit(TINY + BOTH + ["budget.max_iterations=2"], run)
    early = tmp_path / "checkpoint_at_2.pt"
    shutil.copy(run / "checkpoint.pt", early)
    cfg, raw = _cfg(TINY + BOTH + ["budget.max_iterations=4", f"resume={run}"])
    loop.fit(cfg, tmp_path / "ignored", raw)
    assert [int(r["iteration"]) for r in _csv_rows(run)] == [1, 2, 3, 4]
    shutil.copy(early, run / "checkpoint.pt")  # as if killed after iterations 3 and 4 were logged
    cfg, raw = _cfg(TINY + BOTH + ["budget.max_iterations=5", f"resume={run}"])
    assert loop.fit(cfg, tmp_path / "ignored", raw)["iterations"] == 5
    rows = _csv_rows(run)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5]
    jsonl = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [float(r["train_loss"]) for r in rows] == pytest.approx([r["train_loss"] for r in jsonl])
    steps = [s for s, _ in _scalars(run, "train/loss")]
    assert steps == [1, 2, 3, 4, 5]  # the first 3, 4 are purged


def test_a_logger_can_be_added_on_resume(tmp_path):
    _fit(TINY + ["budget.max_iterations=1"], tmp_path)
    cfg, raw = _cfg(TINY + ["logger=csv", "budget.max_iterations=2", f"resume={tmp_path}"])
    loop.fit(cfg, tmp_path / "ignored", raw)
    assert [int(r["iteration"]) for r in _csv_rows(tmp_path)] == [2]


def test_csv_drops_a_torn_last_row_on_resume(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("iteration,train_loss\n1,0.5\n2,0.4\n3,0.")
    log = loggers.CSVLogger(path, truncate_after=2)
    log.write({"iteration": 3, "train_loss": 0.3, "test_loss": 1.0})  # a new key: the header grows
    log.write({"iteration": 4, "train_loss": float("nan")})
    log.close()
    assert path.read_text() == ("iteration,train_loss,test_loss\n1,0.5,\n2,0.4,\n3,0.3,1.0\n4,nan,\n")


@pytest.mark.parametrize("value,names", [("none", ()), (None, ()), ("csv", ("csv",)),
                                         (["tensorboard", "csv", "csv"], ("tensorboard", "csv")), ([], ())])
def test_logger_values(value, names):
    assert loggers.parse(value) == names


def test_unknown_logger_is_one_line_with_the_choices():
    cfg, _ = _cfg(["logger=[csv,tensorbord]"])
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "'tensorbord'" in msg
    assert "none, tensorboard, csv" in msg and "did you mean 'tensorboard'" in msg


def test_negative_log_every_refused():
    cfg, _ = _cfg(["log_every=-1"])
    with pytest.raises(ConfigError, match="log_every must be >= 0"):
        validate(cfg)


def test_missing_tensorboard_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    cfg, raw = _cfg(TINY + ["logger=tensorboard", "budget.max_iterations=1"])
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert str(e.value) == "logger=tensorboard needs the tensorboard package: pip install 'hfrnn[loggers]'"
    with pytest.raises(ConfigError, match="hfrnn\\[loggers\\]"):
        loop.fit(cfg, tmp_path, raw)
    assert not (tmp_path / "metrics.jsonl").exists()  # refused before the directory was claimed
