"""benchmarks/keep_results.py: what a sweep keeps in results/, including runs continued from there."""
from __future__ import annotations

import gzip
import json
import sys

import pytest

from .benchmark_script import load


@pytest.fixture(scope="module")
def kr():
    return load("keep_results")


def _records(n):
    return "".join(json.dumps({"iteration": i, "minibatches": 10.0 * i}) + "\n" for i in range(1, n + 1))


def _main(kr, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["keep_results.py", *map(str, args)])
    kr.main()


def test_a_kept_solved_run_keeps_its_gzipped_metrics_when_kept_again(kr, tmp_path, monkeypatch):
    """The README's continuation copies results/ to outputs/, runs the sweep, keeps it back: a solved
    run there has only metrics.jsonl.gz, which must survive the second keep."""
    sweep = tmp_path / "outputs" / "figure3"
    run = sweep / "addition_T100_rnn_hf_s0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"status": "solved", "minibatches": 30.0}))
    with gzip.open(run / "metrics.jsonl.gz", "wt") as f:
        f.write(_records(3))
    _main(kr, monkeypatch, sweep, "--to", tmp_path / "results")
    kept = tmp_path / "results" / "figure3" / "addition_T100_rnn_hf_s0"
    with gzip.open(kept / "metrics.jsonl.gz", "rt") as f:
        assert f.read() == _records(3)
    assert not (kept / "checkpoint.pt").exists()


def test_a_run_killed_before_its_result_is_kept_with_its_checkpoint(kr, tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "outputs" / "figure3"
    run = sweep / "memorization_T200_rnn_hf_s0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- T=200\n")
    (run / "checkpoint.pt").write_bytes(b"ckpt")
    (run / "metrics.jsonl").write_text(_records(5))
    (run / "previous-1").mkdir()
    (run / "previous-1" / "checkpoint.pt").write_bytes(b"old")
    _main(kr, monkeypatch, sweep, "--to", tmp_path / "results")
    kept = tmp_path / "results" / "figure3" / "memorization_T200_rnn_hf_s0"
    assert (kept / "checkpoint.pt").read_bytes() == b"ckpt"
    assert (kept / "metrics.jsonl").read_text() == _records(5)
    assert (kept / ".hydra" / "overrides.yaml").exists() and not (kept / "result.json").exists()
    out = capsys.readouterr().out
    assert "no result" in out and "previous-1" not in out
