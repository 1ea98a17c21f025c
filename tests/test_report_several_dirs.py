"""``hfrnn report DIR DIR ... --out OUT``: one Figure 3 from several sweeps (e.g. T = 30/50 kept in
results/ and T = 100/200 in outputs/), with a per-run table that names every run's directory."""
from __future__ import annotations

import csv

from hfrnn.report.cli import main as report_main

from .test_report_helpers import write_run


def test_several_dirs_make_one_report_with_every_run(tmp_path):
    short, long = tmp_path / "results" / "short", tmp_path / "outputs" / "long"
    write_run(short, "addition_T30_rnn_hf_s0", T=30, minibatches=1000.0)
    write_run(short, "addition_T30_rnn_hf_s1", T=30, seed=1, minibatches=1500.0)
    write_run(long, "addition_T100_rnn_hf_s0", T=100, minibatches=3000.0)
    write_run(long, "addition_T200_rnn_hf_s0", T=200, status="budget_exhausted", minibatches=700.0)
    out = tmp_path / "report"
    # The same sweep named twice (and through a path with ..) is read once.
    assert report_main([str(short), str(long), str(long / ".." / "long"), "--out", str(out), "--no-curves",
                        "--formats", "png"]) == 0
    rows = {int(r["T"]): r for r in csv.DictReader(open(out / "figure3.csv"))}
    assert set(rows) == {30, 100, 200}
    assert rows[30]["n_solved"] == "2" and rows[100]["mean_minibatches"] == "3000"
    assert rows[200]["n_stopped"] == "1" and rows[200]["n_failed"] == "0"
    summary = (out / "summary.md").read_text()
    assert "4 run directories" in summary
    table = summary.split("## Runs", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in table.splitlines() if ln.startswith("| addition")]
    assert len(lines) == 4  # one row per run, seeds and directories named
    assert "| addition | 200 | rnn | hf | 0 | stopped | 700 |" in table
    assert "`results/short/addition_T30_rnn_hf_s1`" in table and "`outputs/long/addition_T100_rnn_hf_s0`" in table


def test_several_dirs_need_out(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, "r1")
    write_run(b, "r2")
    assert report_main([str(a), str(b)]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_kept_run_with_only_gzipped_metrics_is_read(tmp_path):
    """benchmarks/keep_results.py keeps a solved run's metrics as metrics.jsonl.gz only."""
    import gzip
    import shutil

    from hfrnn.report.collect import collect, read_metrics

    d = write_run(tmp_path / "kept", "addition_T30_rnn_hf_s0", evals=[(100.0, {"test_error_rate": 0.5}),
                                                                      (200.0, {"test_error_rate": 0.0})])
    plain = read_metrics(d / "metrics.jsonl")
    with open(d / "metrics.jsonl", "rb") as src, gzip.open(d / "metrics.jsonl.gz", "wb") as out:
        shutil.copyfileobj(src, out)
    (d / "metrics.jsonl").unlink()
    (run,), refused = collect(tmp_path / "kept")
    assert run.metrics_path == d / "metrics.jsonl.gz" and not refused
    assert read_metrics(run.metrics_path) == plain and len(plain) == 2
