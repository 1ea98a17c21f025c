"""Copy the small files behind the README's numbers from ``outputs/`` into ``results/`` (committed).

    python benchmarks/keep_results.py outputs/multirun/v03_f3s_hf_a ... --to results/v0.3

For every run directory under the given folders (one holding a ``result.json``), writes
``<to>/<sweep folder>/<run folder>/``:

* ``result.json`` as the run wrote it (status, minibatches, wall time, test metrics, resolved config,
  hfrnn version and commit, machine);
* ``metrics.jsonl.gz``: the whole per-iteration record, gzipped (HF runs: a few hundred lines);
* ``checkpoint.pt``, ``.hydra/`` and the plain ``metrics.jsonl`` only for a run that did not finish
  (status other than ``solved``), so that it can be resumed from the repository after ``outputs/``
  is gone:
  ``hfrnn train <its overrides> resume=results/.../<run folder>``.

Existing copies are replaced, so running it again after a resumed run finishes updates them.
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path


def keep(run: Path, dest: Path) -> str:
    result = json.loads((run / "result.json").read_text())
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(run / "result.json", dest / "result.json")
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        with open(metrics, "rb") as src, gzip.open(dest / "metrics.jsonl.gz", "wb", compresslevel=9) as out:
            shutil.copyfileobj(src, out)
    if result.get("status") != "solved":
        if (run / "checkpoint.pt").exists():
            shutil.copy2(run / "checkpoint.pt", dest / "checkpoint.pt")
        if metrics.exists():
            shutil.copy2(metrics, dest / "metrics.jsonl")
        if (run / ".hydra").is_dir():
            shutil.copytree(run / ".hydra", dest / ".hydra")
    return result.get("status", "?")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", nargs="+", type=Path, help="folders holding run directories")
    ap.add_argument("--to", type=Path, required=True, help="destination folder, e.g. results/v0.3")
    args = ap.parse_args()
    for sweep in args.sweeps:
        for res in sorted(sweep.rglob("result.json")):
            run = res.parent
            rel = run.relative_to(sweep)
            status = keep(run, args.to / sweep.name / rel)
            print(f"{status:17s} {args.to / sweep.name / rel}")


if __name__ == "__main__":
    main()
