"""Table 1 of Martens & Sutskever (2011): the natural problems, RNN + HF against LSTM + GD.

The paper reports, without defining units, bouncing balls error 22 (RNN + HF) vs 35 (LSTM + GD),
MIDI log-likelihood -569 vs -683 and speech error 22 vs 41. This module puts our runs beside those
numbers, one row per (task, data file, T, model with its sizes, optimizer, task options), and
states exactly what each of our numbers is.

The measures are the ones a run writes into ``result.json`` (``test_`` prefix), computed by
``hfrnn.tasks.natural`` on the whole test split. With ``p`` the network's prediction of frame
``x_{t+1}`` (logistic units: probabilities; linear units: the output), ``y = x_{t+1}``, the sums
over every predicted frame ``t`` of every test window ``b`` and over the ``D`` output units ``d``::

    bouncing balls, speech:  E = sum_{t,b} sum_d (p - y)^2          (squared error, not halved)
                             per frame = E / N,  per sequence = E / S
    MIDI:                    L = sum_{t,b} sum_d [y ln p + (1 - y) ln(1 - p)]      (nats)
                             per step = L / N,   per sequence = L / S

``N`` is the number of predicted frames (``test_frames``) and ``S`` the number of test windows
(``test_sequences``): every test sequence is cut into windows of ``T`` frames starting at
``0, T-1, 2(T-1), ...``, each predicted from a zero hidden state, so every transition of the test
split is predicted exactly once and a full window holds ``T - 1`` predictions (a sequence's last
window may be shorter). Each row gives the mean (and standard deviation) over its runs (seeds).

Runs in the states ``finished`` (ended by their budget) and ``failed`` (diverged) are counted
(:data:`hfrnn.report.collect.TABLE1_COUNTED`); a diverged run keeps the test measures of its last
accepted parameters, and the ``diverged`` column says how many there were. Incomplete (no
``result.json``, or interrupted) and crashed runs are counted in their own columns, never in the
means. The data set's description comes from the run's ``data`` record in ``result.json``
(older runs: their log). Reads only run files (``collect.py``); no torch, no Hydra.
"""
from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .collect import (TABLE1_COUNTED, Run, as_float, data_record, finite, loss_pair, read_metrics, read_yaml,
                      with_final)
from .constants import DEFAULT_DATA, NATURAL_TASKS, OTHER_COLORS
from .figures import save_figure, suptitle
# The paper's Table 1: (RNN + HF, LSTM + GD), units undefined.
PAPER = {"bouncing_balls": (22.0, 35.0), "midi": (-569.0, -683.0), "speech": (22.0, 41.0)}
# result.json keys (without "test_") of the per-step and per-sequence measure of each task.
MEASURES = {"bouncing_balls": ("sq_err", "per_frame"), "midi": ("log_lik", "per_step"),
            "speech": ("sq_err", "per_frame")}
MEASURE_NAMES = {"sq_err": "summed squared error", "log_lik": "log-likelihood (nats)"}
ROW_COLORS = ("tab:blue", "tab:red", *OTHER_COLORS)  # rows of a table1_curves panel, in table order
CSV_FIELDS = ("task", "data", "T", "model", "optimizer", "options", "arm", "n_runs", "n_diverged", "n_incomplete",
              "n_crashed", "seeds", "measure", "per_step_key", "per_step_mean", "per_step_std", "per_sequence_key",
              "per_sequence_mean", "per_sequence_std", "test_loss_mean", "minibatches_mean", "iterations_mean",
              "wall_s_mean", "max_wall_s", "n_params", "test_frames", "test_sequences", "paper_this_arm",
              "paper_rnn_hf", "paper_lstm_gd")


@dataclass
class Row:
    """One row of Table 1; NaN (empty in the CSV) where no counted run gives a value."""

    task: str
    data: str
    T: int
    model: str
    optimizer: str
    options: str = ""
    arm: str = ""                       # "RNN+HF", "LSTM+GD" (the paper's arms) or ""
    n_runs: int = 0
    n_diverged: int = 0
    n_incomplete: int = 0
    n_crashed: int = 0
    seeds: str = ""
    measure: str = ""
    per_step_key: str = ""
    per_step_mean: float = math.nan
    per_step_std: float = math.nan
    per_sequence_key: str = ""
    per_sequence_mean: float = math.nan
    per_sequence_std: float = math.nan
    test_loss_mean: float = math.nan
    minibatches_mean: float = math.nan
    iterations_mean: float = math.nan
    wall_s_mean: float = math.nan
    max_wall_s: str = ""                # budget.max_wall_s of the runs ("a|b" if they differ)
    n_params: str = ""                  # one value, or "min-max" if the runs differ
    test_frames: float = math.nan       # N, when all counted runs agree
    test_sequences: float = math.nan    # S, when all counted runs agree
    paper_this_arm: float = math.nan
    paper_rnn_hf: float = math.nan
    paper_lstm_gd: float = math.nan
    data_note: str = ""                 # the data set's description: result.json's data record, else the run log
    runs: list[Run] = field(default_factory=list, repr=False)


def config_of(run: Run) -> dict[str, Any]:
    """The run's resolved config: from ``result.json``, else ``.hydra/config.yaml``."""
    cfg = run.result.get("config")
    return cfg if isinstance(cfg, dict) else read_yaml(run.path / ".hydra" / "config.yaml")


def _int(x: Any, default: int | None = None) -> int | None:
    v = as_float(x)
    return int(v) if v is not None and math.isfinite(v) else default


def model_label(run: Run, cfg: dict[str, Any]) -> str:
    """``rnn 300`` or ``lstm 30x10`` (``+peep``): the architecture with its sizes."""
    m = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    name = m.get("name") or run.result.get("model") or "?"
    if name == "rnn":
        return f"rnn {_int(cfg.get('hidden'), 0) or '?'}"
    if name == "lstm":
        peep = str(m.get("peepholes", "")).lower() == "true"
        return f"lstm {_int(m.get('blocks'), 0) or '?'}x{_int(m.get('cells_per_block'), 0) or '?'}" + (
            " +peep" if peep else "")
    return str(name)


def paper_arm(model: str, optimizer: str) -> str:
    """Which of the paper's two arms a row is: RNN + HF (any HF variant) or LSTM + GD (SGD)."""
    if model.startswith("rnn") and optimizer.startswith("hf"):
        return "RNN+HF"
    if model.startswith("lstm") and optimizer == "sgd":
        return "LSTM+GD"
    return ""


def data_note(run: Run) -> str:
    """The task's description of its data (window mode, features), or ''.

    From the ``data`` record of ``result.json`` (dataset, path, description, mode, T) where the run
    wrote one; older runs only logged it, and their log line is read instead (a fallback)."""
    info = data_record(run)
    desc = str(info.get("description") or info.get("dataset") or "")
    mode = info.get("mode")
    return desc if not mode or f"mode={mode}" in desc else f"{desc} (mode={mode})"


def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if finite(x)]
    if not xs:
        return math.nan, math.nan
    return float(np.mean(xs)), (float(np.std(xs, ddof=1)) if len(xs) > 1 else math.nan)


def _one(values: list[Any]) -> Any:
    """The common value of ``values``, or None when they differ or are absent."""
    vals = {v for v in values if v is not None}
    return vals.pop() if len(vals) == 1 else None


def row_key(run: Run) -> tuple[str, str, int, str, str, str]:
    cfg = config_of(run)
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    task = cfg.get("task") if isinstance(cfg.get("task"), dict) else {}
    opts = task.get("options") if isinstance(task.get("options"), dict) else {}
    options = " ".join(f"{k}={v}" for k, v in sorted(opts.items()))
    return (run.task or "?", str(data.get("path") or DEFAULT_DATA.get(run.task or "", "?")),
            run.T if run.T is not None else -1, model_label(run, cfg), run.optimizer or "?", options)


def test_loss_per_sequence(result: dict) -> float:
    """The test objective in the paper's unit (summed over a window's predicted frames, mean over windows).

    hfrnn >= 0.3 records it as ``test_loss`` (``result.json`` says so in ``loss_unit``); earlier
    versions recorded the mean over predicted frames, converted here with the run's frame and
    window counts.
    """
    return loss_pair(result)[0]


def build(runs: list[Run]) -> list[Row]:
    """The rows of Table 1 from every natural-task run in ``runs`` (others are ignored)."""
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        if r.task in NATURAL_TASKS and r.state != "refused":
            groups.setdefault(row_key(r), []).append(r)
    rows = []
    for (task, data, T, model, opt, options), members in groups.items():
        base, unit = MEASURES[task]
        row = Row(task=task, data=data, T=T, model=model, optimizer=opt, options=options,
                  arm=paper_arm(model, opt), measure=base, per_step_key=f"{base}_{unit}",
                  per_sequence_key=f"{base}_per_sequence", runs=members)
        done = [r for r in members if r.state in TABLE1_COUNTED]
        row.n_runs, row.n_diverged = len(done), sum(r.status == "diverged" for r in done)
        row.n_incomplete = sum(r.state == "incomplete" for r in members)
        row.n_crashed = sum(r.state == "crashed" for r in members)
        row.seeds = ",".join(str(s) for s in sorted({r.seed for r in done if r.seed is not None}))
        get = lambda key: [as_float(r.result.get(key)) for r in done]  # noqa: E731
        row.per_step_mean, row.per_step_std = _mean_std(get(f"test_{row.per_step_key}"))
        row.per_sequence_mean, row.per_sequence_std = _mean_std(get(f"test_{row.per_sequence_key}"))
        row.test_loss_mean = _mean_std([test_loss_per_sequence(r.result) for r in done])[0]
        row.minibatches_mean = _mean_std(get("minibatches"))[0]
        row.iterations_mean = _mean_std(get("iterations"))[0]
        row.wall_s_mean = _mean_std(get("wall_s"))[0]
        frames, seqs = _one(get("test_frames")), _one(get("test_sequences"))
        row.test_frames = frames if frames is not None else math.nan
        row.test_sequences = seqs if seqs is not None else math.nan
        params = sorted({_int(r.result.get("n_params")) for r in done} - {None})
        row.n_params = (str(params[0]) if len(params) == 1 else f"{params[0]}-{params[-1]}") if params else ""
        walls = sorted({str(as_float((config_of(r).get("budget") or {}).get("max_wall_s"))) for r in members
                        if isinstance(config_of(r).get("budget"), dict)} - {"None"})
        row.max_wall_s = "|".join(walls)
        rnn_hf, lstm_gd = PAPER[task]
        row.paper_rnn_hf, row.paper_lstm_gd = rnn_hf, lstm_gd
        row.paper_this_arm = {"RNN+HF": rnn_hf, "LSTM+GD": lstm_gd}.get(row.arm, math.nan)
        row.data_note = next((n for n in (data_note(r) for r in done or members) if n), "")
        rows.append(row)
    arm_order = {"RNN+HF": 0, "LSTM+GD": 1}
    return sorted(rows, key=lambda r: (NATURAL_TASKS.index(r.task), r.data, r.T, arm_order.get(r.arm, 2),
                                       r.model, r.optimizer, r.options))


def _fmt(x: float, fmt: str = ".4g") -> str:
    return "" if x is None or not math.isfinite(x) else format(x, fmt)


def write_csv(rows: list[Row], path: Path) -> None:
    """``table1.csv``: one line per row, numbers as ``%.6g``, empty where undefined."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            d = {k: v for k, v in asdict(row).items() if k in CSV_FIELDS}
            w.writerow({k: _fmt(v, ".6g") if isinstance(v, float) else v for k, v in d.items()})


def _count(x: float) -> str:
    """Minibatches: whole numbers with separators, three digits below 100."""
    return "–" if not math.isfinite(x) else (f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}")


def _pm(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.4g}" + (f" ± {std:.2g}" if math.isfinite(std) else "")


def render(rows: list[Row]) -> str:
    """The whole ``table1.md`` text."""
    lines = ["# Table 1: natural problems (RNN + HF against LSTM + GD)", "",
             "Our measures beside the paper's numbers (Martens & Sutskever 2011, Table 1; the paper does not "
             "define their units, so compare our two arms row against row, not our numbers against the paper's). "
             "Means ± standard deviation over the counted runs (seeds); definitions below the table.", "",
             "| task | data | T | model | optimizer | runs | measure | per sequence | per frame / step "
             "| paper, this arm | paper RNN+HF / LSTM+GD | test loss per sequence | minibatches | wall (s) | params |",
             "|---|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        runs = f"{r.n_runs}" + "".join(f", {n} {what}" for n, what in ((r.n_diverged, "diverged"),
                                       (r.n_incomplete, "incomplete"), (r.n_crashed, "crashed")) if n)
        opt = r.optimizer + (f" ({r.options})" if r.options else "")
        lines.append(
            f"| {r.task} | `{r.data}` | {r.T} | {r.model} | {opt} | {runs} | {MEASURE_NAMES[r.measure]} "
            f"| {_pm(r.per_sequence_mean, r.per_sequence_std)} | {_pm(r.per_step_mean, r.per_step_std)} "
            f"| {_fmt(r.paper_this_arm, 'g') or '–'} | {r.paper_rnn_hf:g} / {r.paper_lstm_gd:g} "
            f"| {_fmt(r.test_loss_mean) or '–'} | {_count(r.minibatches_mean)} "
            f"| {_fmt(r.wall_s_mean, ',.0f') or '–'} | {r.n_params or '–'} |")
    lines += [""] + side_by_side(rows) + definitions(rows)
    return "\n".join(lines) + "\n"


def side_by_side(rows: list[Row]) -> list[str]:
    """One line per data set where both paper arms were run: who wins, as in the paper?"""
    out = []
    for key in sorted({(r.task, r.data, r.T) for r in rows}, key=lambda k: (NATURAL_TASKS.index(k[0]), k[1:])):
        arms: dict[str, Row] = {}  # the first row of each paper arm (rows are sorted)
        for r in rows:
            if (r.task, r.data, r.T) == key and r.arm and math.isfinite(r.per_sequence_mean):
                arms.setdefault(r.arm, r)
        if len(arms) < 2:
            continue
        hf, gd = arms["RNN+HF"], arms["LSTM+GD"]
        higher_better = hf.measure == "log_lik"
        hf_wins = (hf.per_sequence_mean > gd.per_sequence_mean if higher_better
                   else hf.per_sequence_mean < gd.per_sequence_mean)
        paper_hf, paper_gd = PAPER[key[0]]
        out.append(f"- {key[0]} (`{key[1]}`, T={key[2]}): RNN+HF {hf.per_sequence_mean:.4g} vs LSTM+GD "
                   f"{gd.per_sequence_mean:.4g} per sequence "
                   f"({'higher' if higher_better else 'lower'} is better): "
                   f"**{'RNN+HF' if hf_wins else 'LSTM+GD'}** is better here; the paper: RNN+HF {paper_hf:g} vs "
                   f"LSTM+GD {paper_gd:g}. Wall clock {hf.wall_s_mean:,.0f} s vs {gd.wall_s_mean:,.0f} s per run.")
    return (["## Side by side", ""] + out + [""]) if out else []


def definitions(rows: list[Row]) -> list[str]:
    """The exact definition of every measure in the table, and what it was computed over."""
    out = ["## Measures", "",
           "All measures are on the whole test split of the data file, after the last evaluation of the run "
           "(`test_*` in `result.json`). `p` is the network's prediction of the next frame `y = x_{t+1}` "
           "(logistic output units: probabilities; linear units: the outputs); sums run over every predicted "
           "frame `t` of every test window `b` and over the output units `d`.", "",
           "- **summed squared error** (bouncing balls, speech): `E = sum_{t,b} sum_d (p - y)^2`, not halved; "
           "*per frame* `= E / N` (`test_sq_err_per_frame`), *per sequence* `= E / S` (`test_sq_err_per_sequence`).",
           "- **log-likelihood** (MIDI; nats, independent Bernoulli pitches): "
           "`L = sum_{t,b} sum_d [y ln p + (1 - y) ln(1 - p)]`; *per step* `= L / N` (`test_log_lik_per_step`), "
           "*per sequence* `= L / S` (`test_log_lik_per_sequence`).",
           "- `N` = predicted frames (`test_frames`), `S` = test windows (`test_sequences`): every test sequence "
           "is cut into windows of `T` frames starting at `0, T-1, 2(T-1), ...`, each predicted from a zero "
           "hidden state, so each transition of the test split is predicted exactly once; a full window holds "
           "`T - 1` predictions (a sequence's last window may hold fewer, zero-padded and masked). The paper's "
           "\"per sequence of length T\" corresponds to our per-sequence value.",
           "- *test loss per sequence*: the training objective on the test set in the paper's unit (section 2): "
           "summed over a window's predicted frames (cross-entropy summed over units for logistic outputs, half "
           "the squared error for linear outputs), mean over windows; runs of hfrnn < 0.3 recorded the mean over "
           "frames, converted with `N / S`; *minibatches*: "
           "work in the paper's unit (1,000 sequences through a gradient or a curvature product); *wall*: "
           "seconds of training including evaluations.", "",
           "Computed over:", ""]
    for key in sorted({(r.task, r.data, r.T) for r in rows}, key=lambda k: (NATURAL_TASKS.index(k[0]), k[1:])):
        mine = [r for r in rows if (r.task, r.data, r.T) == key]
        frames = {_fmt(r.test_frames, ",.0f") for r in mine} - {""}
        seqs = {_fmt(r.test_sequences, ",.0f") for r in mine} - {""}
        note = next((r.data_note for r in mine if r.data_note), "")
        count = (f"N = {' | '.join(sorted(frames))} predicted frames in S = {' | '.join(sorted(seqs))} windows"
                 if frames and seqs else "N and S not recorded (no finished run)")
        budgets = sorted({r.max_wall_s for r in mine if r.max_wall_s})
        out.append(f"- {key[0]}, `{key[1]}`, T={key[2]} ({key[2] - 1} predictions per full window): {count}"
                   + (f"; data: {note}" if note else "")
                   + (f"; wall-clock budget per run: {', '.join(budgets)} s" if budgets else "") + ".")
    return out + [""]


def measure_value(rec: dict[str, Any], row: Row, unit: str) -> float:
    """A record's test measure of ``row`` in ``unit`` (``per sequence``, or per frame / step);
    per sequence from the per-step value and ``N / S`` where a record lacks it; NaN when unknown."""
    if unit != "per sequence":
        v = as_float(rec.get(f"test_{row.per_step_key}"))
        return math.nan if v is None else v
    v = as_float(rec.get(f"test_{row.per_sequence_key}"))
    if v is not None:
        return v
    step = as_float(rec.get(f"test_{row.per_step_key}"))
    frames, seqs = as_float(rec.get("test_frames")), as_float(rec.get("test_sequences"))
    return step * frames / seqs if finite(step) and finite(frames) and finite(seqs) and seqs else math.nan


def plot_curves(rows: list[Row], path: Path, refused: list[tuple[Path, str]] | None = None) -> list[Path]:
    """``table1_curves.png`` (and SVG, PDF): the test measure per sequence (per frame / step where a
    run's records do not give it per sequence: then the whole panel) against wall-clock seconds,
    one panel per (task, data, T), one line per run ending with its final evaluation (a dot),
    coloured by row. Returns the paths written (none when no run recorded a measure)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = sorted({(r.task, r.data, r.T) for r in rows}, key=lambda k: (NATURAL_TASKS.index(k[0]), k[1:]))
    recs: dict[Path, list[dict[str, Any]]] = {}
    for row in rows:
        for run in row.runs:
            metrics = read_metrics(run.metrics_path, refused) if run.metrics_path is not None else []
            recs[run.path] = [m for m in with_final(metrics, run, x="wall_s")
                              if f"test_{row.per_step_key}" in m or f"test_{row.per_sequence_key}" in m]
    panels = [k for k in panels if any(recs.get(run.path) for r in rows if (r.task, r.data, r.T) == k
                                       for run in r.runs)]
    if not panels:
        return []
    fig = Figure(figsize=(4.2 * len(panels) + 0.6, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, key in zip(axes, panels):
        mine = [r for r in rows if (r.task, r.data, r.T) == key]
        per_seq = all(finite(measure_value(m, row, "per sequence")) for row in mine for run in row.runs
                      for m in recs.get(run.path, []))
        step_unit = "per step" if mine[0].measure == "log_lik" else "per frame"
        unit = "per sequence" if per_seq else step_unit
        for i, row in enumerate(mine):
            label = f"{row.model} {row.optimizer}" + (f" ({row.arm})" if row.arm else "")
            color = ROW_COLORS[i % len(ROW_COLORS)]
            for j, run in enumerate(r for r in row.runs if recs.get(r.path)):
                x = [as_float(m.get("wall_s")) for m in recs[run.path]]
                y = [measure_value(m, row, unit) for m in recs[run.path]]
                pts = [(a, b) for a, b in zip(x, y) if finite(a) and finite(b)]
                if pts:  # markers where a run has few evaluations (a lone point has no line)
                    ax.plot(*zip(*pts), color=color, lw=1, alpha=0.8,
                            marker="o" if len(pts) < 30 else None, ms=3, label=label if j == 0 else None)
                    if recs[run.path][-1].get("final") and finite(y[-1]) and finite(x[-1]):
                        ax.plot(*pts[-1], color=color, marker="o", ms=4, ls="none")
        ax.set_title(f"{key[0]} ({Path(key[1]).name}, T={key[2]})", fontsize=9)
        ax.set_xlabel("wall-clock seconds")
        ax.set_ylabel(f"test {MEASURE_NAMES[mine[0].measure]}\n{unit}", fontsize=8)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    suptitle(fig, "Table 1 runs: test measure vs wall clock (one line per run; dot: final evaluation)", 10)
    return save_figure(fig, path)


def write_table1(runs: list[Run], out: Path, curves: bool = True,
                 refused: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Write ``table1.md``, ``table1.csv`` (and ``table1_curves.png``) when natural-task runs exist;
    returns the paths written (none without such runs)."""
    rows = build(runs)
    if not rows:
        return []
    written = [out / "table1.md", out / "table1.csv"]
    written[0].write_text(render(rows))
    write_csv(rows, written[1])
    if curves:
        written += plot_curves(rows, out / "table1_curves.png", refused)
    return written
