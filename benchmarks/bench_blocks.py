"""Benchmark: the fast backend's cache block (sequences per pass through the time loop).

For each task, ``T`` and ``hidden``, in one process and interleaved round by round (so that every
block size sees the same background load), the median over rounds of the product's time
(structural weight ``w = 0.003``) over its floor of ``4 T`` matrix products ``[B, H] @ [H, H]`` and
the gradient's over ``3 T``, for every block size in ``--blocks`` (``0`` = the automatic block of
:func:`hfrnn.curvature.blocking.auto_block`, whose size is evened out over the passes; an explicit
block is kept as given, the last pass taking the rest; a block >= the batch = the whole batch in one pass).
This is the measurement behind ``STEP_BYTES`` (``docs/performance.md``).

    python benchmarks/bench_blocks.py [--T 100 200] [--hidden 100 300] [--tasks addition]
        [--blocks 128 256 512 1000 0] [--rounds 7] [--out benchmarks/results/blocks.json]

Writes ``--out`` (JSON) and the same path with ``.md``, with the command, date, threads and the
load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_products import (
    MU_LAMBDA,
    floor_loop,
    floor_problem,
    interleaved,
    run_meta,
    write_results,
)

from hfrnn.curvature.rnn_fast import RNNFastCurvature


def block_bench(task_name: str, T: int, hidden: int, batch: int, blocks: list[int], rounds: int) -> list[dict]:
    task, layout, theta, b, v = floor_problem(task_name, T, hidden, batch)
    backends = {n: RNNFastCurvature(layout, task.loss, block=n) for n in blocks}
    ops = {}
    for n, be in backends.items():
        be.prepare(theta, b)
        # bind be now: each lambda keeps its own backend (and its prepared cache)
        ops[("product", n)] = (lambda be=be: be.product(v, MU_LAMBDA))
        ops[("gradient", n)] = (lambda be=be: be.loss_and_grad(theta, b))
    times = interleaved({("floor", 0): floor_loop(T, hidden, batch), **ops}, rounds)
    unit = times[("floor", 0)]
    rows = []
    for n in blocks:
        passes = [part.size for part in backends[n]._blocks(b)]  # the backend's own split
        row = {"task": task_name, "T": T, "hidden": hidden, "batch": batch, "block": n,
               "sequences_per_pass": max(passes), "passes": passes,
               "threads": torch.get_num_threads(), "rounds": rounds,
               "floor_1T_ms": 1e3 * statistics.median(unit)}
        for op, k in (("product", 4), ("gradient", 3)):
            row[f"{op}_ms"] = 1e3 * statistics.median(times[(op, n)])
            row[f"{op}_x_floor"] = statistics.median(t / (k * u) for t, u in zip(times[(op, n)], unit))
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| task | T | H | block (0 = auto) | sequences per pass | product (x 4T) | gradient (x 3T) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['T']} | {r['hidden']} | {r['block']} | {r['sequences_per_pass']} "
                     f"| {r['product_x_floor']:.2f} | {r['gradient_x_floor']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--hidden", type=int, nargs="+", default=[100, 300])
    ap.add_argument("--tasks", nargs="+", default=["addition"])
    ap.add_argument("--blocks", type=int, nargs="+", default=[128, 256, 512, 1000, 0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/blocks.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    rows = [r for task_name in a.tasks for hidden in a.hidden for T in a.T
            for r in block_bench(task_name, T, hidden, a.batch, a.blocks, a.rounds)]
    meta = run_meta(a.threads, load_before,
                    note="each ratio: median over rounds of (time / floor time in the same round)")
    write_results(a.out, meta, rows, markdown(rows))

if __name__ == "__main__":
    main()
