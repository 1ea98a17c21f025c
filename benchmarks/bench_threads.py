"""Thread policy: the recurrence's matrix product and a full curvature product at 1 and 2 threads.

    python benchmarks/bench_threads.py [--T 100] [--repeats 15]

Interleaves the thread counts within one process so that both see the same background load, and
prints medians. This is the measurement behind the default ``threads=1``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from hfrnn.curvature.rnn_fast import RNNFastCurvature
from hfrnn.linalg.params import ParamLayout
from hfrnn.models.rnn import RNN
from hfrnn.tasks.pathological import make_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    task = make_task("addition", a.T, variable_length=False, test_size=10)
    g = torch.Generator().manual_seed(0)
    model = RNN(task.n_in, 100, task.n_out, generator=g)
    layout = ParamLayout.of(dict(model.named_parameters()))
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()}).clone()
    backend = RNNFastCurvature(layout, task.loss)
    backend.prepare(theta, task.sample(1000, g))
    v = torch.randn(layout.numel, generator=g) * 1e-2
    x, w = torch.randn(1000, 100), torch.randn(100, 100)
    ops = {"matmul [1000,100]x[100,100] (ms)": lambda: x @ w,
           f"curvature product T={a.T} (ms)": lambda: backend.product(v, 0.003)}
    times = {(k, n): [] for k in ops for n in (1, 2)}
    for _ in range(a.repeats):
        for n in (1, 2):
            torch.set_num_threads(n)
            for k, f in ops.items():
                f()
                t0 = time.perf_counter()
                f()
                times[(k, n)].append(1e3 * (time.perf_counter() - t0))
    out = {f"{k} threads={n}": statistics.median(t) for (k, n), t in times.items()}
    out["load_average_1min"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
