"""Copy the small files behind the README's numbers from ``outputs/`` into ``results/`` (committed).

    python benchmarks/keep_results.py outputs/multirun/v03_f3s_hf_a ... --to results/v0.3

For every run directory under the given folders (one holding a ``result.json``, or only a
``checkpoint.pt``: a run killed before it wrote its result), writes
``<to>/<sweep folder>/<run folder>/``:

* ``result.json`` as the run wrote it (status, minibatches, wall time, test metrics, resolved config,
  hfrnn version and commit, machine);
* ``metrics.jsonl.gz``: the per-iteration record, gzipped: whole for HF runs (a few hundred
  lines), thinned for first-order runs to every k-th step plus every test evaluation (at most
  500 lines; SGD writes a line per step);
* ``checkpoint.pt``, ``.hydra/`` and the plain ``metrics.jsonl`` only for a run that did not finish
  (status other than ``solved``), so that it can be resumed from the repository after ``outputs/``
  is gone:
  ``hfrnn train <its overrides> resume=results/.../<run folder>``.

Existing copies are replaced, so running it again after a resumed run finishes updates them; a
run continued from ``results/`` (only ``metrics.jsonl.gz``) keeps its gzipped records.
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

MOST_LINES = 500  # metrics records kept per run (thinned beyond: see thinned)


def thinned(lines: list[str], most: int = MOST_LINES) -> list[str]:
    """``lines`` when there are at most ``most``; else every k-th iteration's record (k the smallest
    that fits), every record with test metrics and the last one. First-order runs write a record
    per step (50,000 for 5,000 minibatches of SGD); HF runs a few hundred, kept whole. A resumed run
    appends to a thinned file as to a whole one (the cut-back keeps records up to the checkpoint)."""
    if len(lines) <= most:
        return lines
    k = -(-len(lines) // most)
    keep = []
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("iteration", 0) % k == 0 or "test_error_rate" in rec or "test_loss" in rec or i == len(lines) - 1:
            keep.append(line)
    return keep


def metric_lines(run: Path) -> list[str] | None:
    """The run's metrics records: ``metrics.jsonl``, or a kept run's ``metrics.jsonl.gz`` (a sweep
    continued from ``results/`` has only that for its solved runs); None when there are none."""
    if (run / "metrics.jsonl").exists():
        return (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    if (run / "metrics.jsonl.gz").exists():
        with gzip.open(run / "metrics.jsonl.gz", "rt") as f:
            return f.read().splitlines(keepends=True)
    return None


def keep(run: Path, dest: Path) -> str:
    """Copy what cites or continues ``run`` to ``dest``; a run killed before it wrote ``result.json``
    (its checkpoint is all there is) is kept as unfinished, with status ``no result``."""
    has_result = (run / "result.json").exists()
    result = json.loads((run / "result.json").read_text()) if has_result else {"status": "no result"}
    lines = metric_lines(run)
    lines = thinned(lines) if lines is not None else None
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if has_result:
        shutil.copy2(run / "result.json", dest / "result.json")
    if lines is not None:
        with gzip.open(dest / "metrics.jsonl.gz", "wt", compresslevel=9) as out:
            out.writelines(lines)
    if result.get("status") != "solved":
        if (run / "checkpoint.pt").exists():
            shutil.copy2(run / "checkpoint.pt", dest / "checkpoint.pt")
        if lines is not None:
            (dest / "metrics.jsonl").write_text("".join(lines))
        if (run / ".hydra").is_dir():
            shutil.copytree(run / ".hydra", dest / ".hydra")
    return result.get("status", "?")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", nargs="+", type=Path, help="folders holding run directories")
    ap.add_argument("--to", type=Path, required=True, help="destination folder, e.g. results/v0.3")
    args = ap.parse_args()
    for sweep in args.sweeps:
        runs = {p.parent for p in sweep.rglob("result.json")} | {p.parent for p in sweep.rglob("checkpoint.pt")}
        for run in sorted(runs):
            if "previous-" in str(run.relative_to(sweep)):
                continue  # an earlier attempt kept by a restart, not a run of the sweep
            rel = run.relative_to(sweep)
            status = keep(run, args.to / sweep.name / rel)
            print(f"{status:17s} {args.to / sweep.name / rel}")


if __name__ == "__main__":
    main()
