"""`hfrnn report` figures: PNG/SVG/PDF, nothing clipped, no empty figures, curves ending at the final evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hfrnn.report import diagnostics, figure3, table1
from hfrnn.report.cli import main as report_main
from hfrnn.report.collect import Run, with_final
from hfrnn.report.figure3 import Cell
from hfrnn.report.figures import DPI, save_figure, text_outside, use_formats

from .test_report_helpers import eval_fields, write_run

PATHOLOGICAL = ("addition", "multiplication", "temporal_order", "temporal_order_3bit", "random_permutation",
                "xor", "memorization", "memorization_20bit")


@pytest.fixture
def captured(monkeypatch):
    """Every figure the report saves, with the name it was saved under (saved for real too)."""
    figs: list[tuple[str, object]] = []

    def save(fig, png):
        written = save_figure(fig, png)
        figs.append((Path(png).name, fig))
        return written

    for module in (figure3, diagnostics, table1):
        monkeypatch.setattr(module, "save_figure", save)
    return figs


def _lines_with_data(fig) -> int:
    return sum(1 for ax in fig.axes for line in ax.get_lines()
               if np.isfinite(np.asarray(line.get_ydata(), float)).any())


def test_every_figure_is_png_svg_pdf_at_200_dpi(tmp_path):
    from PIL import Image

    root = tmp_path / "sweep"
    write_run(root, "0_addition_T30_hf_s0", evals=[(500.0, eval_fields("0.3.0", 0.3, error=0.5)),
                                                     (1000.0, eval_fields("0.3.0", 0.1, error=0.0))])
    out = tmp_path / "report"
    assert report_main([str(root), "--out", str(out), "-q"]) == 0
    for stem in ("figure3", "curves_addition", "hf_addition"):
        png, svg, pdf = (out / f"{stem}.{ext}" for ext in ("png", "svg", "pdf"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        assert b"<svg" in svg.read_bytes()[:1000] and pdf.read_bytes()[:5] == b"%PDF-", stem
        dpi = Image.open(png).info["dpi"]
        assert min(dpi) >= DPI - 1 and DPI >= 200, (stem, dpi)
    md = (out / "summary.md").read_text()
    assert "figure3.svg" in md and "figure3.pdf" in md
    png_only = tmp_path / "png_only"
    assert report_main([str(root), "--out", str(png_only), "-q", "--formats", "png", "--no-curves"]) == 0
    assert (png_only / "figure3.png").exists() and not (png_only / "figure3.svg").exists()
    assert report_main([str(root), "--out", str(png_only), "--formats", "png,gif"]) == 2


@pytest.mark.parametrize("n_tasks", [1, len(PATHOLOGICAL)])
def test_no_text_is_clipped_one_panel_and_many(n_tasks, tmp_path):
    """Title, legend, axis labels and tick labels of Figure 3 lie inside the canvas, however many panels.

    Two models and three optimizers make the widest legend; one panel is the narrowest figure."""
    cells = []
    for task in PATHOLOGICAL[:n_tasks]:
        for T in (30, 50, 100, 200):
            for model in ("rnn", "lstm"):
                for opt in ("hf_nosd", "hf", "sgd"):
                    cells.append(Cell(task=task, T=T, model=model, optimizer=opt, n_runs=5, n_solved=4, n_failed=1,
                                      mean_minibatches=12345.0, min_minibatches=1000.0, max_minibatches=49999.0,
                                      failure_rate=0.2))
    fig = figure3.figure(cells)
    with use_formats(["png"]):
        written = save_figure(fig, tmp_path / "figure3.png")
    assert [p.suffix for p in written] == [".png"]
    assert text_outside(fig) == []
    texts = [t.get_text() for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
    assert fig.get_suptitle() and any("LSTM + HF, structural damping" in t.get_text()
                                      for lg in fig.legends for t in lg.get_texts())
    assert "failure rate" in texts


@pytest.mark.slow  # renders every report figure (~30 s); test_every_figure_is_png_svg_pdf_at_200_dpi runs by default
def test_no_text_is_clipped_in_any_report_figure(tmp_path, captured):
    """The whole report on a one-task sweep and on a many-task one: every saved figure fits its canvas."""
    one, many = tmp_path / "one", tmp_path / "many"
    write_run(one, "0_addition_T30_hf_s0")
    write_run(one, "1_addition_T30_sgd_s0", model="lstm", opt="sgd", status="budget_exhausted", minibatches=50000.0)
    for i, task in enumerate(PATHOLOGICAL[:4]):  # Figure 3 with all eight tasks: the test above
        for j, opt in enumerate(("hf", "hf_nosd")):
            write_run(many, f"{i}{j}_{task}_T30_{opt}_s0", task=task, opt=opt, minibatches=1000.0 * (i + 1))
    for root in (one, many):
        captured.clear()
        assert report_main([str(root), "--out", str(tmp_path / f"out_{root.name}"), "-q", "--formats", "png"]) == 0
        assert {name for name, _ in captured} >= {"figure3.png", "curves_addition.png", "hf_addition.png"}
        for name, fig in captured:
            assert text_outside(fig) == [], name


def test_natural_only_sweep_writes_no_empty_figure(tmp_path, captured):
    """No Figure 3 and no error-rate plot from natural tasks; the summary says why; the loss is drawn."""
    root = tmp_path / "natural"
    for s in (0, 1):
        write_run(root, f"{s}_bouncing_balls_T30_hf_s{s}", task="bouncing_balls", seed=s, status="budget_exhausted",
                  minibatches=400.0, evals=[(200.0, eval_fields("0.3.0", 2.0, steps=29.0)),
                                            (400.0, eval_fields("0.3.0", 1.5, steps=29.0))])
    out = tmp_path / "report"
    assert report_main([str(root), "--out", str(out), "--formats", "png"]) == 0
    for ext in ("png", "svg", "pdf", "csv"):
        assert not (out / f"figure3.{ext}").exists()
    md = (out / "summary.md").read_text()
    assert "figure3.png, figure3.csv: not written" in md
    assert "no test error rate recorded (bouncing_balls has no success rule)" in md
    names = {name for name, _ in captured}
    assert "curves_bouncing_balls.png" in names and "figure3.png" not in names
    for name, fig in captured:
        assert _lines_with_data(fig) > 0, name
        ylabels = {ax.get_ylabel() for ax in fig.axes}
        assert "test error rate" not in ylabels, name
    curves = dict(captured)["curves_bouncing_balls.png"]
    assert curves.axes[0].get_ylabel() == "test loss per sequence"


def test_learning_curve_ends_with_the_final_evaluation(tmp_path, captured):
    """SGD evaluates every so many minibatches: the curve must still end at result.json's numbers."""
    root = tmp_path / "sgd"
    final = eval_fields("0.3.0", 0.05, error=0.137)
    write_run(root, "0_addition_T30_sgd_s0", opt="sgd", status="budget_exhausted", minibatches=1000.0,
              evals=[(300.0, eval_fields("0.3.0", 0.3, error=0.9)), (900.0, eval_fields("0.3.0", 0.2, error=0.62))],
              final=final)
    assert report_main([str(root), "--out", str(tmp_path / "out"), "-q", "--formats", "png"]) == 0
    fig = dict(captured)["curves_addition.png"]
    err_ax, loss_ax = fig.axes[0], fig.axes[1]
    line = next(ln for ln in err_ax.get_lines() if ln.get_label() == "sgd")
    assert list(line.get_xdata()) == [300.0, 900.0, 1000.0] and line.get_ydata()[-1] == pytest.approx(0.137)
    line = next(ln for ln in loss_ax.get_lines() if ln.get_label() == "sgd")
    assert line.get_xdata()[-1] == 1000.0 and line.get_ydata()[-1] == pytest.approx(0.5)  # per sequence


def test_with_final_appends_marks_or_skips():
    rec = lambda mb, err: {"minibatches": mb, "test_error_rate": err}  # noqa: E731
    run = Run(path=Path("r"), status="solved", state="solved", minibatches=100.0,
              result={"status": "solved", "minibatches": 100.0, "test_error_rate": 0.0})
    same = with_final([rec(50.0, 0.5), rec(100.0, 0.0), {"minibatches": 100.0}], run)
    assert len(same) == 3 and same[1]["final"] and "final" not in same[0]  # the last evaluation was the final one
    later = with_final([rec(50.0, 0.5)], run)
    assert later[-1]["final"] and later[-1]["minibatches"] == 100.0 and later[-1]["test_error_rate"] == 0.0
    crashed = Run(path=Path("c"), status="error", state="crashed", minibatches=100.0, result=run.result)
    assert with_final([rec(50.0, 0.5)], crashed) == [rec(50.0, 0.5)]  # a crash's last test is stale
    assert with_final([rec(50.0, 0.5)], Run(path=Path("i"))) == [rec(50.0, 0.5)]  # no result.json


def test_summary_header_and_rows_count_states_the_same_way(tmp_path, capsys):
    """A stopped run is 'stopped' in the header and in its row, never 'incomplete' in one and not the other."""
    root = tmp_path / "sweep"
    write_run(root, "0_addition_T30_hf_s0")                                                    # solved
    write_run(root, "1_addition_T30_hf_s1", seed=1, status="diverged", minibatches=300.0)      # failed
    write_run(root, "2_addition_T30_hf_s2", seed=2, status="budget_exhausted", minibatches=9000.0)  # stopped
    write_run(root, "3_addition_T30_hf_s3", seed=3, status="budget_exhausted", minibatches=4000.0)  # stopped
    write_run(root, "4_addition_T30_hf_s4", seed=4, status="interrupted", minibatches=500.0)   # incomplete
    write_run(root, "5_addition_T50_hf_s0", T=50, status=None)                                 # incomplete
    write_run(root, "6_addition_T50_hf_s1", T=50, seed=1, status="error")                      # crashed
    out = tmp_path / "report"
    assert report_main([str(root), "--out", str(out), "--no-curves", "--formats", "png"]) == 0
    printed = capsys.readouterr().out
    md = (out / "summary.md").read_text()
    header = next(line for line in md.splitlines() if "run directories:" in line)
    counts = {w: int(n) for n, w in (part.split() for part in header.split(":", 1)[1].strip(" .").split(", "))}
    assert counts == {"solved": 1, "failed": 1, "stopped": 2, "incomplete": 2, "crashed": 1}
    assert "1 solved, 1 failed, 2 stopped, 2 incomplete, 1 crashed" in printed
    cell_tables = md.split("\n## Runs", 1)[0]  # the per-task tables (the per-run table follows)
    lines = [line for line in cell_tables.splitlines() if line.startswith("| ")]
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:] if line.split("|")[1].strip() != "T"]
    for state in ("solved", "failed", "stopped", "incomplete", "crashed"):
        assert sum(int(r[cols.index(state)]) for r in rows) == counts[state], state
    import csv
    with open(out / "figure3.csv") as fh:
        csv_rows = list(csv.DictReader(fh))
    for state in ("solved", "failed", "stopped", "incomplete", "crashed"):
        assert sum(int(r[f"n_{state}"]) for r in csv_rows) == counts[state], state
    assert md.count("## Stopped before") == 1 and "2_addition_T30_hf_s2" in md


def test_summary_lists_each_state_defined_once():
    from hfrnn.report import collect
    assert list(collect.STATES)[:2] == list(collect.FIGURE3_COUNTED)
    assert set(collect.FIGURE3_COUNTED) | set(collect.TABLE1_COUNTED) | set(collect.LISTED) | {"refused"} == set(
        collect.STATES)


def test_metrics_only_run_without_evaluations_writes_no_curves(tmp_path):
    root = tmp_path / "sweep"
    d = write_run(root, "0_addition_T30_hf_s0", status=None, evals=[(10.0, {}), (20.0, {})], hf=False)
    assert (d / "metrics.jsonl").exists()
    out = tmp_path / "out"
    assert report_main([str(root), "--out", str(out), "-q", "--formats", "png"]) == 0
    assert not (out / "curves_addition.png").exists()
    assert "curves_addition: not written" in (out / "summary.md").read_text()
    assert json.loads((d / "metrics.jsonl").read_text().splitlines()[0])["iteration"] == 1


def test_figure3_panels_share_the_lengths_and_mark_cells_not_run():
    """Like the paper: every panel has the same T ticks; a length a problem was not run at is a
    tick with "not run" in the failure panel, not a missing tick."""
    cells = [Cell(task="addition", T=T, model="rnn", optimizer="hf", n_runs=1, n_solved=1, n_failed=0,
                  mean_minibatches=1000.0, min_minibatches=1000.0, max_minibatches=1000.0, failure_rate=0.0)
             for T in (30, 50, 100, 200)]
    cells.append(Cell(task="xor", T=100, model="rnn", optimizer="hf", n_runs=0, n_solved=0, n_failed=0,
                      mean_minibatches=float("nan"), min_minibatches=float("nan"), max_minibatches=float("nan"),
                      failure_rate=float("nan")))
    fig = figure3.figure(cells)
    bottoms = [ax for ax in fig.axes if ax.get_xlabel() == "T"]
    assert len(bottoms) == 2
    for ax in bottoms:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["30", "50", "100", "200"]
    xor_texts = sorted((t.get_position()[0], t.get_text()) for t in bottoms[1].texts)
    assert xor_texts == [(0, "not run"), (1, "not run"), (2, "n/a"), (3, "not run")]
    assert all(t.get_text() != "not run" for t in bottoms[0].texts)
