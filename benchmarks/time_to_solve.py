"""Time to solve, before and after a change: the same runs from two git revisions, side by side.

    python benchmarks/time_to_solve.py --before e2c5edb~1 --after HEAD --out docs/time_to_solve.md
    python benchmarks/time_to_solve.py --before e2c5edb~1 --after HEAD -- budget.max_iterations=3  # a dry run

For each revision, each number of processes (``--procs``, default 1 and 2: ``dist.procs``) and each
seed (``--seeds``, default 0 1 2), runs ``hfrnn train task=<task> T=<T> seed=<s> dist.procs=<p>``
(extra overrides after ``--``) from a detached git worktree of that revision (made once under
``--work``), one run at a time, and tabulates minibatches to success, wall time and seconds per
1,000 minibatches (the speed of the machinery, independent of how long a seed takes).

Every finished run appends one JSON line to ``--rows`` (default ``<work>/rows.jsonl``), with the
load average before it, the CPUs the process may use and the other hfrnn processes running at its
start; a run already in the rows file is not run again. So the work can be split and resumed:

    taskset -c 0 python benchmarks/time_to_solve.py --before A --after B --labels before --procs 1 &
    taskset -c 1 python benchmarks/time_to_solve.py --before A --after B --labels after --procs 1 &
    python benchmarks/time_to_solve.py --before A --after B --table-only --out docs/time_to_solve.md

A run whose driver was stopped while the run went on (``kill -9`` of this script leaves its child
running) is added to the rows with ``--adopt RUN_DIR ...`` once it has finished; its load and
neighbours at start are unknown and left blank.

Timings are only comparable when the machine was otherwise idle or equally loaded: the table shows
each run's load and neighbours, and the machine should be idle for the numbers that are cited.
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


def commit_of(rev: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], capture_output=True, text=True,
                          check=True).stdout.strip()


def worktree(rev: str, work: Path) -> tuple[Path, str]:
    """A detached worktree of ``rev`` (made once) and its commit."""
    commit = commit_of(rev)
    path = work / f"src-{commit}"
    if not path.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit], check=True,
                       capture_output=True)
    return path, commit


def neighbours() -> int:
    """Other hfrnn training processes running now (they share the cores with a timed run)."""
    p = subprocess.run(["pgrep", "-f", "hfrnn.*train"], capture_output=True, text=True)
    pids = {int(x) for x in p.stdout.split()} - {os.getpid()}
    return len(pids)


def run_one(src: Path, out: Path, overrides: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    load, others = os.getloadavg()[0], neighbours()
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "hfrnn.cli", "train", *overrides, f"hydra.run.dir={out}"], cwd=src,
                       env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{out}: hfrnn train failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    r = json.loads((out / "result.json").read_text())
    return {"status": r["status"], "minibatches": float(r["minibatches"]), "wall_s": float(r["wall_s"]),
            "elapsed_s": time.time() - t0, "load": load, "neighbours": others,
            "cpus": ",".join(map(str, sorted(os.sched_getaffinity(0)))), "dir": str(out)}


def run_name(label: str, commit: str, task: str, T: int, procs: int, seed: int) -> str:
    """A run directory's name, ``<label>-<commit>_<task>_T<T>_p<procs>_s<seed>_<HHMMSS>`` (read back by :func:`adopt`)."""
    return f"{label}-{commit}_{task}_T{T}_p{procs}_s{seed}_{time.strftime('%H%M%S')}"


def adopt(run_dir: Path) -> dict:
    """The row of a finished run directory named by :func:`run_name`."""
    try:
        head, rest = run_dir.name.split("_", 1)
        label, commit = head.split("-", 1)
        task, t, procs, seed, _ = rest.rsplit("_", 4)  # the task may contain underscores
        T, procs, seed = int(t.removeprefix("T")), int(procs.removeprefix("p")), int(seed.removeprefix("s"))
    except ValueError:
        raise SystemExit(f"--adopt {run_dir}: not a run directory of this script "
                         "(<label>-<commit>_<task>_T<T>_p<procs>_s<seed>_<HHMMSS>)") from None
    if not (run_dir / "result.json").exists():
        raise SystemExit(f"--adopt {run_dir}: no result.json (has the run finished?)")
    r = json.loads((run_dir / "result.json").read_text())
    return {"label": label, "commit": commit, "procs": procs, "seed": seed, "task": task,
            "T": T, "extra": "", "status": r["status"], "minibatches": float(r["minibatches"]),
            "wall_s": float(r["wall_s"]), "elapsed_s": None, "load": None, "neighbours": None, "cpus": None,
            "dir": str(run_dir)}


def _cell(x, fmt: str = "{}") -> str:
    return "" if x is None else fmt.format(x)


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def s_per_1000(r: dict) -> float:
    return 1000 * r["wall_s"] / max(r["minibatches"], 1)


def table(rows: list[dict], title: str) -> str:
    """Markdown: one line per run, then the median per (revision, processes) and the after/before ratio."""
    lines = [title, "",
             "| code | processes | seed | status | minibatches | wall (s) | s / 1000 mb | load before | other runs | CPUs |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    order = {"before": 0, "after": 1}
    rows = sorted(rows, key=lambda r: (order.get(r["label"], 2), r["procs"], r["seed"]))
    for r in rows:
        lines.append(f"| {r['label']} ({r['commit']}) | {r['procs']} | {r['seed']} | {r['status']} | "
                     f"{r['minibatches']:,.0f} | {r['wall_s']:.0f} | {s_per_1000(r):.0f} | {_cell(r['load'], '{:.2f}')} | "
                     f"{_cell(r.get('neighbours'))} | {_cell(r.get('cpus'))} |")
    med: dict[tuple[str, int], tuple[float, float]] = {}
    for label in ("before", "after"):
        for procs in sorted({r["procs"] for r in rows}):
            mine = [r for r in rows if r["label"] == label and r["procs"] == procs]
            if mine:
                med[label, procs] = (statistics.median(r["wall_s"] for r in mine),
                                     statistics.median(s_per_1000(r) for r in mine))
                lines.append(f"| **{label}, median of {len(mine)}** | {procs} | | | | {med[label, procs][0]:.0f} | "
                             f"{med[label, procs][1]:.0f} | | | |")
    for procs in sorted({p for _, p in med}):
        if ("before", procs) in med and ("after", procs) in med:
            b, a = med["before", procs], med["after", procs]
            lines.append(f"| **before / after** | {procs} | | | | {b[0] / a[0]:.2f}x | {b[1] / a[1]:.2f}x | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", default="HEAD")
    ap.add_argument("--labels", nargs="+", choices=["before", "after"], default=["before", "after"],
                    help="which revisions to run now (the table shows every row in --rows)")
    ap.add_argument("--task", default="addition")
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--work", type=Path, default=Path("/tmp/hfrnn-time-to-solve"))
    ap.add_argument("--rows", type=Path, help="JSON lines, one per finished run (default <work>/rows.jsonl)")
    ap.add_argument("--table-only", action="store_true", help="run nothing; tabulate --rows")
    ap.add_argument("--adopt", type=Path, nargs="+", default=[], metavar="RUN_DIR",
                    help="add finished run directories (of a stopped driver) to --rows, then tabulate")
    ap.add_argument("--out", type=Path)
    ap.add_argument("extra", nargs="*", help="more overrides, after --")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    rows_path = a.rows or a.work / "rows.jsonl"
    revs = {"before": a.before, "after": a.after}
    for run_dir in a.adopt:
        with rows_path.open("a") as f:
            f.write(json.dumps(adopt(run_dir)) + "\n")
    if not a.table_only and not a.adopt:
        for label in a.labels:
            src, commit = worktree(revs[label], a.work)
            for procs in a.procs:
                for seed in a.seeds:
                    key = (label, commit, procs, seed, a.task, a.T, " ".join(a.extra))
                    done = {(r["label"], r["commit"], r["procs"], r["seed"], r["task"], r["T"], r["extra"])
                            for r in read_rows(rows_path)}
                    if key in done:
                        print(f"{label} {commit} procs={procs} seed={seed}: already in {rows_path}", flush=True)
                        continue
                    out = a.work / "runs" / run_name(label, commit, a.task, a.T, procs, seed)
                    r = run_one(src, out, [f"task={a.task}", f"T={a.T}", f"seed={seed}", f"dist.procs={procs}",
                                           *a.extra])
                    row = {"label": label, "commit": commit, "procs": procs, "seed": seed, "task": a.task, "T": a.T,
                           "extra": " ".join(a.extra), **r}
                    with rows_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"{label} {commit} procs={procs} seed={seed}: {r['status']} {r['minibatches']:,.0f} mb "
                          f"{r['wall_s']:.0f} s ({s_per_1000(r):.0f} s / 1000 mb; load before {r['load']:.2f}, "
                          f"{r['neighbours']} other runs, CPUs {r['cpus']})", flush=True)
    rows = [r for r in read_rows(rows_path) if r["task"] == a.task and r["T"] == a.T
            and r["commit"] in {commit_of(revs["before"]), commit_of(revs["after"])}]
    text = table(rows, f"Time to solve {a.task} at T = {a.T} ({os.cpu_count()} cores, one thread per process; "
                       f"extra overrides: {' '.join(a.extra) or 'none'})")
    if a.out:
        a.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
