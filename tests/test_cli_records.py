"""What a run's files look like to other tools: readable modes, counts without float noise."""
import json
import os
import stat

import pytest

from hfrnn.train.records import MetricsWriter, save_checkpoint_atomic, write_json_atomic


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def _mode(p):
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_new_files_get_open_modes_under_the_umask(tmp_path, umask, mask):
    umask(mask)
    write_json_atomic(tmp_path / "result.json", {"a": 1})
    save_checkpoint_atomic(tmp_path / "checkpoint.pt", {"x": 1})
    assert _mode(tmp_path / "result.json") == 0o666 & ~mask
    assert _mode(tmp_path / "checkpoint.pt") == 0o666 & ~mask
    assert os.umask(mask) == mask  # reading the umask left it as it was


def test_an_existing_files_mode_is_kept(tmp_path, umask):
    p = tmp_path / "result.json"
    p.write_text("{}")
    p.chmod(0o640)
    write_json_atomic(p, {"a": 1})
    assert _mode(p) == 0o640


def test_counts_are_recorded_rounded_and_the_callers_sums_kept(tmp_path):
    record = {"minibatches": 199.99999999999292, "forward_evals": 0.1 + 0.2, "train_loss": 0.1 + 0.2,
              "iteration": 3}
    write_json_atomic(tmp_path / "result.json", record)
    w = MetricsWriter(tmp_path / "metrics.jsonl", fresh=True)
    w.write(record)
    w.close()
    for got in (json.loads((tmp_path / "result.json").read_text()),
                json.loads((tmp_path / "metrics.jsonl").read_text())):
        assert got["minibatches"] == 200.0 and got["forward_evals"] == 0.3
        assert got["train_loss"] == 0.1 + 0.2  # only the counts are rounded
    assert record["minibatches"] == 199.99999999999292  # the loop's arithmetic is untouched
