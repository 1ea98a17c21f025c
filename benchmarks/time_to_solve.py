"""Time to solve, before and after a change: the same runs from two git revisions, side by side.

    python benchmarks/time_to_solve.py --before e2c5edb~1 --after HEAD --out docs/time_to_solve.md
    python benchmarks/time_to_solve.py --before e2c5edb~1 --after HEAD -- budget.max_iterations=3  # a dry run

For each revision, each number of processes (``--procs``, default 1 and 2: ``dist.procs``) and each
seed (``--seeds``, default 0 1 2), runs ``hfrnn train task=<task> T=<T> seed=<s> dist.procs=<p>``
(extra overrides after ``--``) from a detached git worktree of that revision (made once under
``--work``), one run at a time, and tabulates minibatches to success, wall time and seconds per
1,000 minibatches (the speed of the machinery, independent of how long a seed takes). The
machine should be otherwise idle: the load average before each run is recorded in the table.
Run directories are kept under ``--work`` so a table can be checked against its files.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def worktree(rev: str, work: Path) -> tuple[Path, str]:
    """A detached worktree of ``rev`` (made once) and its commit."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], capture_output=True, text=True,
                            check=True).stdout.strip()
    path = work / f"src-{commit}"
    if not path.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit], check=True,
                       capture_output=True)
    return path, commit


def run_one(src: Path, out: Path, overrides: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    load = os.getloadavg()[0]
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "hfrnn.cli", "train", *overrides, f"hydra.run.dir={out}"], cwd=src,
                       env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{out}: hfrnn train failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    r = json.loads((out / "result.json").read_text())
    return {"status": r["status"], "minibatches": float(r["minibatches"]), "wall_s": float(r["wall_s"]),
            "elapsed_s": time.time() - t0, "load": load}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", default="HEAD")
    ap.add_argument("--task", default="addition")
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--work", type=Path, default=Path("/tmp/hfrnn-time-to-solve"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("extra", nargs="*", help="more overrides, after --")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, rev in (("before", a.before), ("after", a.after)):
        src, commit = worktree(rev, a.work)
        for procs in a.procs:
            for seed in a.seeds:
                out = a.work / "runs" / f"{label}-{commit}_{a.task}_T{a.T}_p{procs}_s{seed}_{time.strftime('%H%M%S')}"
                r = run_one(src, out, [f"task={a.task}", f"T={a.T}", f"seed={seed}", f"dist.procs={procs}", *a.extra])
                rows.append({"label": label, "commit": commit, "procs": procs, "seed": seed, **r})
                print(f"{label} {commit} procs={procs} seed={seed}: {r['status']} {r['minibatches']:,.0f} mb "
                      f"{r['wall_s']:.0f} s ({1000 * r['wall_s'] / max(r['minibatches'], 1):.0f} s / 1000 mb; "
                      f"load before {r['load']:.2f})", flush=True)
    lines = [f"Time to solve {a.task} at T = {a.T} ({os.cpu_count()} cores, one thread per process; "
             f"extra overrides: {' '.join(a.extra) or 'none'})", "",
             "| code | processes | seed | status | minibatches | wall (s) | s / 1000 mb | load before |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} ({r['commit']}) | {r['procs']} | {r['seed']} | {r['status']} | "
                     f"{r['minibatches']:,.0f} | {r['wall_s']:.0f} | {1000 * r['wall_s'] / max(r['minibatches'], 1):.0f} | "
                     f"{r['load']:.2f} |")
    for label in ("before", "after"):
        for procs in a.procs:
            mine = [r for r in rows if r["label"] == label and r["procs"] == procs]
            if mine:
                lines.append(f"| **{label}, median** | {procs} | | | | {statistics.median(r['wall_s'] for r in mine):.0f} | "
                             f"{statistics.median(1000 * r['wall_s'] / max(r['minibatches'], 1) for r in mine):.0f} | |")
    text = "\n".join(lines) + "\n"
    if a.out:
        a.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
