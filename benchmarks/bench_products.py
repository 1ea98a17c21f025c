"""Benchmark: gradient vs curvature product (fast and generic backends) vs one HF iteration.

Not a test. Prints a markdown table and writes ``benchmarks/results/products.json``. Every time is
a median over repeats, measured in the same process, so the ratios (product / gradient) are what
to compare across machines; absolute times on a shared 2-core machine are noisy.

    python benchmarks/bench_products.py [--T 30 100 200] [--hidden 100] [--threads 1 2] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from hfrnn.curvature.generic import GenericCurvature
from hfrnn.curvature.rnn_fast import RNNFastCurvature
from hfrnn.linalg.params import ParamLayout
from hfrnn.models.rnn import RNN
from hfrnn.optim.hessian_free import BatchOptions, CGOptions, HessianFree, HFOptions
from hfrnn.tasks.pathological import make_task


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def matmul_gflops(B: int, H: int, repeats: int, device: str = "cpu") -> float:
    """Rate of the recurrence's own product shape ``[B, H] @ [H, H]``."""
    a, w = torch.randn(B, H, device=device), torch.randn(H, H, device=device)
    n = 50
    t = median_time(lambda: [a @ w for _ in range(n)], repeats)
    return 2 * B * H * H * n / t / 1e9


def bench(T: int, hidden: int, batch: int, repeats: int, hf_cg_iters: int, device: str = "cpu") -> dict:
    task = make_task("addition", T, variable_length=False, test_size=10)
    g = torch.Generator().manual_seed(0)
    model = RNN(task.n_in, hidden, task.n_out, generator=g).to(device)
    layout = ParamLayout.of(dict(model.named_parameters()))
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()}).clone()
    b = task.sample(batch, g).to(device)
    fast, generic = RNNFastCurvature(layout, task.loss), GenericCurvature(model, task.loss)
    v = (torch.randn(layout.numel, generator=g) * 1e-2).to(device)
    out = {"T": T, "hidden": hidden, "batch": batch, "threads": torch.get_num_threads(), "device": device}
    out["gradient_s"] = median_time(lambda: fast.loss_and_grad(theta, b), repeats)
    out["gradient_autograd_s"] = median_time(lambda: generic.loss_and_grad(theta, b), repeats)
    fast.prepare(theta, b)
    out["product_fast_s"] = median_time(lambda: fast.product(v, 0.003), repeats)
    generic.prepare(theta, b)
    out["product_generic_s"] = median_time(lambda: generic.product(v, 0.003), max(1, repeats // 2))
    opts = HFOptions(cg=CGOptions(max_iters=hf_cg_iters, eps=0.0),
                     batch=BatchOptions(gradient=10 * batch, curvature=batch, chunk=2 * batch))
    hf = HessianFree(theta.clone(), fast, opts, 0.1)
    gen = torch.Generator().manual_seed(1)
    out["hf_iteration_s"] = median_time(lambda: hf.step(lambda n: task.sample(n, gen).to(device)),
                                        max(1, repeats // 2))
    out["hf_iteration_cg_iters"] = hf_cg_iters
    out["matmul_gflops"] = matmul_gflops(batch, hidden, repeats, device)
    # One product's [B,H]x[H,H]-sized matrix products: V_hh h and W_hh Rh (R-forward), W_hh dt and
    # the W_hh gradient (backward): 4 x 2 B T H^2 flops (the input/output ones are smaller).
    flops = 8 * batch * T * hidden * hidden
    out["product_fast_fraction_of_matmul_rate"] = flops / out["product_fast_s"] / 1e9 / out["matmul_gflops"]
    out["ratio_fast_over_gradient"] = out["product_fast_s"] / out["gradient_s"]
    out["ratio_generic_over_fast"] = out["product_generic_s"] / out["product_fast_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[30, 100, 200])
    ap.add_argument("--hidden", type=int, nargs="+", default=[100])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hf-cg-iters", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results/products.json")
    a = ap.parse_args()
    rows = []
    for threads in a.threads:
        torch.set_num_threads(threads)
        for hidden in a.hidden:
            for T in a.T:
                r = bench(T, hidden, a.batch, a.repeats, a.hf_cg_iters, a.device)
                rows.append(r)
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    meta = {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
            "dtype": "float32", "note": "medians over repeats; ratios measured in the same run"}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print("\n| threads | T | hidden | gradient (ms) | product fast (ms) | product generic (ms) | fast/gradient "
          "| generic/fast | HF iteration (s, CG iters) | matmul GFLOP/s | product fraction of matmul rate |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['T']} | {r['hidden']} | {1e3 * r['gradient_s']:.0f} | {1e3 * r['product_fast_s']:.0f} "
              f"| {1e3 * r['product_generic_s']:.0f} | {r['ratio_fast_over_gradient']:.2f} "
              f"| {r['ratio_generic_over_fast']:.2f} | {r['hf_iteration_s']:.1f} ({r['hf_iteration_cg_iters']}) "
              f"| {r['matmul_gflops']:.1f} | {r['product_fast_fraction_of_matmul_rate']:.2f} |")


if __name__ == "__main__":
    main()
