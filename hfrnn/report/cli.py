"""``hfrnn report DIR [DIR ...]``: tables and plots from the files of sweeps (or of single runs).

Reads only what runs wrote (``result.json``, ``metrics.jsonl``, ``.hydra/config.yaml``) with the
standard library, PyYAML, numpy and matplotlib, and writes into DIR (or ``--out``, which several
DIRs need: e.g. the T = 30/50 sweep and the T = 100/200 sweep in one Figure 3):

- ``figure3.png``, ``figure3.csv``: the paper's Figure 3 (see :mod:`hfrnn.report.figure3`), when
  runs of tasks with a success rule are present (otherwise neither is written, and the summary
  says so);
- ``summary.md``: one table per task, the runs not counted and why, the hfrnn versions mixed;
- ``curves_<task>.png``, ``hf_<task>.png``: learning curves and HF diagnostics per task;
- ``table1.md``, ``table1.csv``, ``table1_curves.png``: the paper's Table 1, when runs of the natural
  tasks are present (see :mod:`hfrnn.report.table1`; they are left out of Figure 3).

Every figure is written as PNG (200 dpi), SVG and PDF side by side (:mod:`hfrnn.report.figures`).

Exit status: 0 when a report was written (refused files are listed, not fatal), 1 when no run
directory was found, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .collect import FAILURE_LIMIT, collect, states_line, versions
from .diagnostics import plot_all
from .figure3 import aggregate, drawable, plot, write_csv
from .figures import FORMATS, use_formats
from .summary import render
from .table1 import write_table1

EPILOG = """examples:
  hfrnn report outputs/multirun/figure3_small
  hfrnn report outputs/runs/2025-01-01/12-00-00-000000_addition_T30_rnn_hf_s0     (one run)
  hfrnn report results/v0.3/figure3_small outputs/multirun/figure3 --out /tmp/figure3   (several)
  hfrnn report outputs/multirun --out /tmp/report --no-curves
  hfrnn report outputs/multirun --out /tmp/report --formats png            (no SVG, PDF: faster)
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hfrnn report", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Figure 3 (minibatches to success, failure rates), a summary table, learning curves and "
                    "HF diagnostics from the run directories found under DIR (searched recursively).")
    p.add_argument("dirs", metavar="DIR", type=Path, nargs="+",
                   help="a sweep directory, any folder above runs, or one run; several are read together")
    p.add_argument("--out", type=Path, default=None, help="where to write the report (default: DIR; needed with several)")
    p.add_argument("--limit", type=float, default=FAILURE_LIMIT,
                   help="minibatches beyond which a run counts as a failure (default: %(default).0f, the paper's)")
    p.add_argument("--no-curves", action="store_true", help="skip the per-task learning curves and HF diagnostics")
    p.add_argument("--formats", default=",".join(FORMATS), metavar="LIST",
                   help="figure formats, comma-separated, PNG always included (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the report; returns the exit status."""
    try:
        args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # --help (0) or a usage error (2): argparse has printed why
        return int(e.code or 0)
    for d in args.dirs:
        if not d.is_dir():
            print(f"hfrnn report: error: {d} is not a directory", file=sys.stderr)
            return 2
    if len(args.dirs) > 1 and args.out is None:
        print("hfrnn report: error: with several DIRs, say where the report goes with --out", file=sys.stderr)
        return 2
    # Paths in the summary are shown relative to the folder the DIRs share.
    root = args.dirs[0] if len(args.dirs) == 1 else Path(os.path.commonpath([d.resolve() for d in args.dirs]))
    formats = [f.strip().lower().lstrip(".") for f in args.formats.split(",") if f.strip()]
    if set(formats) - set(FORMATS):
        print(f"hfrnn report: error: --formats: expected some of {', '.join(FORMATS)}, got {args.formats!r}",
              file=sys.stderr)
        return 2
    out: Path = args.out or args.dirs[0]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"hfrnn report: error: cannot create {out}: {e}", file=sys.stderr)
        return 2
    runs, refused, seen = [], [], set()
    for d in args.dirs:
        found, bad = collect(d, args.limit)
        runs += [r for r in found if r.path.resolve() not in seen and not seen.add(r.path.resolve())]
        refused += bad
    if not runs:
        print(f"hfrnn report: no run directories (with .hydra/, result.json or metrics.jsonl) under "
              f"{', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 1
    cells = drawable(aggregate(runs))  # natural tasks have no success rule: Table 1, not Figure 3
    written: list[Path] = []
    notes: list[str] = []
    with use_formats(formats):
        if cells:
            written.append(out / "figure3.csv")
            write_csv(cells, written[0])
            written += plot(cells, out / "figure3.png", args.limit)
        else:
            notes.append("figure3.png, figure3.csv: not written: no run of a task with a success rule "
                         "(natural tasks are in Table 1).")
        if not args.no_curves:
            written += plot_all(runs, out, refused, notes)
        written += write_table1(runs, out, curves=not args.no_curves, refused=refused)
    summary = out / "summary.md"
    summary.write_text(render(root, runs, cells, refused, args.limit, written, out, notes))
    if not args.quiet:
        print(f"{len(runs)} runs under {root}: {states_line(runs)}")
        vers = versions(runs)
        if len(vers) > 1:
            print("warning: mixed hfrnn versions: " + ", ".join(f"{v} ({n})" for v, n in vers.items()))
        for path, why in refused:
            print(f"refused {path}: {why}")
        for note in notes:
            print(f"note: {note}")
        print(f"wrote {summary} and {len(written)} more files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
