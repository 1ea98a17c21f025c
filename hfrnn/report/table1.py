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

Runs that finished (``budget_exhausted``, ``diverged``, ``solved``) are counted; a diverged run
keeps the test measures of its last accepted parameters, and the ``diverged`` column says how
many there were. Incomplete (no ``result.json``, or interrupted) and crashed runs are counted in
their own columns, never in the means. Reads only run files (``collect.py``); no torch, no Hydra.
"""
from __future__ import annotations

import ast
import csv
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .collect import Run, as_float, finite, read_block_yaml, read_metrics

NATURAL_TASKS = ("bouncing_balls", "midi", "speech")
# hfrnn.tasks.natural.DEFAULT_PATHS, repeated here because the report never imports the core.
DEFAULT_DATA = {"bouncing_balls": "data/bouncing_balls.h5", "midi": "data/nottingham.h5", "speech": "data/fsdd.h5"}
# The paper's Table 1: (RNN + HF, LSTM + GD), units undefined.
PAPER = {"bouncing_balls": (22.0, 35.0), "midi": (-569.0, -683.0), "speech": (22.0, 41.0)}
# result.json keys (without "test_") of the per-step and per-sequence measure of each task.
MEASURES = {"bouncing_balls": ("sq_err", "per_frame"), "midi": ("log_lik", "per_step"),
            "speech": ("sq_err", "per_frame")}
MEASURE_NAMES = {"sq_err": "summed squared error", "log_lik": "log-likelihood (nats)"}
COUNTED = ("budget_exhausted", "diverged", "solved")
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
    data_note: str = ""                 # the data set's description, from the run log
    runs: list[Run] = field(default_factory=list, repr=False)


def config_of(run: Run) -> dict[str, Any]:
    """The run's resolved config: from ``result.json``, else ``.hydra/config.yaml``."""
    cfg = run.result.get("config")
    return cfg if isinstance(cfg, dict) else read_block_yaml(run.path / ".hydra" / "config.yaml")


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
    """The task's description of its data (window mode, features), from the run's log, or ''."""
    for log in sorted(run.path.glob("*.log")):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        m = re.search(r"hfrnn\.tasks\.natural\]\[INFO\] - task \w+ on .*?: (\{.*\})\s*$", text, re.M)
        if m:
            try:
                info = ast.literal_eval(m.group(1))
            except (ValueError, SyntaxError):
                return ""
            desc = str(info.get("description") or info.get("dataset") or "")
            mode = info.get("mode")
            return desc if not mode or f"mode={mode}" in desc else f"{desc} (mode={mode})"
    return ""


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
    loss = as_float(result.get("test_loss"))
    if "loss_unit" in result:
        return loss
    frames, seqs = as_float(result.get("test_frames")), as_float(result.get("test_sequences"))
    return loss * frames / seqs if finite(frames) and finite(seqs) and seqs else math.nan


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
        done = [r for r in members if r.status in COUNTED]
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


def plot_curves(rows: list[Row], path: Path, refused: list[tuple[Path, str]] | None = None) -> bool:
    """``table1_curves.png``: the per-step measure on the test set against wall-clock seconds,
    one panel per (task, data, T), one line per run, coloured by row. Returns whether drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = sorted({(r.task, r.data, r.T) for r in rows}, key=lambda k: (NATURAL_TASKS.index(k[0]), k[1:]))
    if not panels:
        return False
    fig = Figure(figsize=(4.2 * len(panels) + 0.6, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:gray")
    for ax, key in zip(axes, panels):
        mine = [r for r in rows if (r.task, r.data, r.T) == key]
        for i, row in enumerate(mine):
            label = f"{row.model} {row.optimizer}" + (f" ({row.arm})" if row.arm else "")
            for j, run in enumerate(r for r in row.runs if r.metrics_path is not None):
                recs = [m for m in read_metrics(run.metrics_path, refused) if f"test_{row.per_step_key}" in m]
                x = [as_float(m.get("wall_s")) for m in recs]
                y = [as_float(m.get(f"test_{row.per_step_key}")) for m in recs]
                pts = [(a, b) for a, b in zip(x, y) if finite(a) and finite(b)]
                if pts:  # markers where a run has few evaluations (a lone point has no line)
                    ax.plot(*zip(*pts), color=colors[i % len(colors)], lw=1, alpha=0.8,
                            marker="o" if len(pts) < 30 else None, ms=3, label=label if j == 0 else None)
        unit = "step" if mine[0].measure == "log_lik" else "frame"
        ax.set_title(f"{key[0]} ({Path(key[1]).name}, T={key[2]})", fontsize=9)
        ax.set_xlabel("wall-clock seconds")
        ax.set_ylabel(f"test {MEASURE_NAMES[mine[0].measure]} per {unit}", fontsize=8)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)
    return True


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
    if curves and plot_curves(rows, out / "table1_curves.png", refused):
        written.append(out / "table1_curves.png")
    return written
