"""benchmarks/time_to_solve.py: the rows it keeps, the runs it adopts, the table it writes (no training)."""
from __future__ import annotations

import json

import pytest

from .benchmark_script import load


@pytest.fixture(scope="module")
def tts():
    return load("time_to_solve")


def _row(label, procs, seed, mb, wall, load=0.5):
    return {"label": label, "commit": "abc1234" if label == "before" else "def5678", "procs": procs, "seed": seed,
            "task": "addition", "T": 100, "extra": "", "status": "solved", "minibatches": mb, "wall_s": wall,
            "load": load, "neighbours": 1, "cpus": "0"}


def test_table_gives_medians_and_the_before_after_ratio(tts):
    rows = [_row("after", 1, s, 1000.0, w) for s, w in ((0, 250.0), (1, 300.0), (2, 260.0))]
    rows += [_row("before", 1, s, 2000.0, w) for s, w in ((0, 1200.0), (1, 1000.0), (2, 1100.0))]
    text = tts.table(rows, "title")
    lines = text.splitlines()
    # before rows first, then after; seeds in order
    body = [ln for ln in lines if ln.startswith("| before (") or ln.startswith("| after (")]
    assert [ln.split("|")[3].strip() for ln in body] == ["0", "1", "2", "0", "1", "2"]
    assert body[0].startswith("| before (abc1234)")
    # medians: before wall 1100, 550 s / 1000 mb; after wall 260, 260 s / 1000 mb
    assert "| **before, median of 3** | 1 | | | | 1100 | 550 |" in text
    assert "| **after, median of 3** | 1 | | | | 260 | 260 |" in text
    assert "| **before / after** | 1 | | | | 4.23x | 2.12x |" in text


def test_no_ratio_without_both_revisions(tts):
    text = tts.table([_row("after", 2, 0, 1000.0, 150.0)], "t")
    assert "before / after" not in text and "| **after, median of 1** | 2 |" in text


def test_adopt_reads_a_finished_run_dir_whose_task_has_underscores(tts, tmp_path):
    d = tmp_path / "before-2a9561f_temporal_order_3bit_T200_p2_s4_135759"
    d.mkdir()
    (d / "result.json").write_text(json.dumps({"status": "solved", "minibatches": 1234, "wall_s": 56.5}))
    row = tts.adopt(d)
    assert (row["label"], row["commit"], row["task"], row["T"], row["procs"], row["seed"]) == \
        ("before", "2a9561f", "temporal_order_3bit", 200, 2, 4)
    assert row["minibatches"] == 1234.0 and row["load"] is None
    # unknown load and neighbours are blank cells, not an error
    line = next(ln for ln in tts.table([row], "t").splitlines() if ln.startswith("| before ("))
    assert line.endswith("| 1,234 | 56 | 46 |  |  |  |")


def test_main_adopts_then_tabulates_without_running(tts, tmp_path, monkeypatch):
    d = tmp_path / "after-def5678_addition_T100_p1_s0_120000"
    d.mkdir()
    (d / "result.json").write_text(json.dumps({"status": "solved", "minibatches": 2000, "wall_s": 500.0}))
    monkeypatch.setattr(tts, "commit_of", lambda rev: {"A": "abc1234", "B": "def5678"}[rev])
    monkeypatch.setattr(tts, "run_one", lambda *a, **k: pytest.fail("nothing may run with --adopt"))
    rows = tmp_path / "rows.jsonl"
    out = tmp_path / "table.md"
    assert tts.main(["--before", "A", "--after", "B", "--work", str(tmp_path), "--rows", str(rows),
                     "--adopt", str(d), "--out", str(out)]) == 0
    assert len(rows.read_text().splitlines()) == 1
    assert "| after (def5678) | 1 | 0 | solved | 2,000 | 500 | 250 |" in out.read_text()


def test_adopt_refuses_a_foreign_or_unfinished_directory(tts, tmp_path):
    foreign = tmp_path / "addition_T100_rnn_hf_s0"
    foreign.mkdir()
    with pytest.raises(SystemExit, match="not a run directory of this script"):
        tts.adopt(foreign)
    unfinished = tmp_path / tts.run_name("after", "def5678", "xor", 50, 1, 3)
    unfinished.mkdir()
    with pytest.raises(SystemExit, match="no result.json"):
        tts.adopt(unfinished)
    (unfinished / "result.json").write_text(json.dumps({"status": "solved", "minibatches": 10, "wall_s": 1.0}))
    row = tts.adopt(unfinished)
    assert (row["task"], row["T"], row["procs"], row["seed"]) == ("xor", 50, 1, 3)
