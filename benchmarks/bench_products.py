"""Benchmark suite: gradient, curvature products, a CG iteration and an HF iteration.

Not a test. For every (T, hidden) it measures, in one process and against the same background
load, the median time of

* a gradient (fast backend: hand-written BPTT; and torch.func/autograd, the generic backend),
* a curvature product ``(G + lambda mu G_S) v`` with the fast backend, both cache-blocked (the
  default, :mod:`hfrnn.curvature.blocking`) and over the whole batch in one pass, and with the
  generic backend,
* one CG iteration (the product plus CG's vector work, from a 10-iteration CG run),
* one full HF iteration (gradient on 10x the batch, CG capped at ``--hf-cg-iters``, backtracking,
  line search),

and the rate of the recurrence's own matrix product ``[B, H] @ [H, H]`` measured in the same run,
so each operation's achieved fraction of it can be read off (flop counts: a gradient does three
``B T H^2``-sized products, a curvature product four). It also records the bytes the prepared
curvature batch holds, the process's peak resident memory so far, threads and processes.

With ``--procs 2`` (or more) the gradient and the product are also timed data-parallel: that many
``gloo`` processes (one thread each) each take their shard of the batch and all-reduce, exactly as
``hfrnn train dist.procs=N`` does.

Writes ``--out`` (JSON) and the same path with ``.md`` (a markdown table). Timings on a shared
machine are noisy: compare the ratios, which are measured side by side.

    python benchmarks/bench_products.py [--T 30 100 200] [--hidden 100 300] [--threads 1] [--procs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from hfrnn.curvature.blocking import auto_block
from hfrnn.curvature.generic import GenericCurvature
from hfrnn.curvature.rnn_fast import RNNFastCurvature
from hfrnn.linalg.cg import cg
from hfrnn.linalg.params import ParamLayout
from hfrnn.models.rnn import RNN
from hfrnn.optim.hessian_free import BatchOptions, CGOptions, HessianFree, HFOptions
from hfrnn.tasks.pathological import make_task

MU_LAMBDA = 0.003  # a typical structural weight lambda * mu


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn, repeats: int, device: str = "cpu") -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def matmul_gflops(B: int, H: int, repeats: int, device: str = "cpu") -> float:
    """Rate of the recurrence's own product shape ``[B, H] @ [H, H]``."""
    a, w = torch.randn(B, H, device=device), torch.randn(H, H, device=device)
    n = 50
    t = median_time(lambda: [a @ w for _ in range(n)], repeats, device)
    return 2 * B * H * H * n / t / 1e9


def problem(T: int, hidden: int, batch: int, device: str):
    task = make_task("addition", T, variable_length=False, test_size=10)
    g = torch.Generator().manual_seed(0)
    model = RNN(task.n_in, hidden, task.n_out, generator=g).to(device)
    layout = ParamLayout.of(dict(model.named_parameters()))
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()}).clone()
    b = task.sample(batch, g).to(device)
    v = (torch.randn(layout.numel, generator=g) * 1e-2).to(device)
    return task, model, layout, theta, b, v


def cache_bytes(backend: RNNFastCurvature) -> int:
    """Bytes of the tensors a prepared fast backend keeps (hidden states, 1 - h^2, outputs, ...)."""
    _, _, blocks = backend._cache
    return sum(t.numel() * t.element_size() for blk in blocks for t in blk[1:])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def bench(T: int, hidden: int, batch: int, repeats: int, hf_cg_iters: int, device: str = "cpu") -> dict:
    task, model, layout, theta, b, v = problem(T, hidden, batch, device)
    fast = RNNFastCurvature(layout, task.loss)
    whole = RNNFastCurvature(layout, task.loss, block=batch)  # one pass over the whole batch
    generic = GenericCurvature(model, task.loss)
    out = {"T": T, "hidden": hidden, "batch": batch, "threads": torch.get_num_threads(), "procs": 1,
           "device": device, "block": min(fast.block or auto_block(T, hidden, theta.dtype, device) or batch, batch)}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    out["gradient_s"] = median_time(lambda: fast.loss_and_grad(theta, b), repeats, device)
    out["gradient_autograd_s"] = median_time(lambda: generic.loss_and_grad(theta, b), max(1, repeats // 2), device)
    fast.prepare(theta, b)
    out["cache_mb"] = cache_bytes(fast) / 2**20
    out["product_fast_s"] = median_time(lambda: fast.product(v, MU_LAMBDA), repeats, device)
    whole.prepare(theta, b)
    out["product_fast_whole_batch_s"] = median_time(lambda: whole.product(v, MU_LAMBDA), repeats, device)
    del whole
    generic.prepare(theta, b)
    out["product_generic_s"] = median_time(lambda: generic.product(v, MU_LAMBDA), max(1, repeats // 2), device)
    del generic
    _, grad = fast.loss_and_grad(theta, b)
    k = 10
    out["cg_iteration_s"] = median_time(
        lambda: cg(lambda x: fast.product(x.to(theta.dtype), MU_LAMBDA).double() + 0.1 * x, -grad,
                   max_iters=k, min_iters=k, eps=0.0), max(1, repeats // 2), device) / k
    opts = HFOptions(cg=CGOptions(max_iters=hf_cg_iters, eps=0.0),
                     batch=BatchOptions(gradient=10 * batch, curvature=batch, chunk=2 * batch))
    hf = HessianFree(theta.clone(), fast, opts, 0.1)
    gen = torch.Generator().manual_seed(1)
    out["hf_iteration_s"] = median_time(lambda: hf.step(lambda n: task.sample(n, gen).to(device)),
                                        max(1, repeats // 2), device)
    out["hf_iteration_cg_iters"] = hf_cg_iters
    out["matmul_gflops"] = matmul_gflops(batch, hidden, repeats, device)
    big = 2 * batch * T * hidden * hidden  # flops of one [B,H]x[H,H] product per step, all steps
    out["gradient_fraction_of_matmul_rate"] = 3 * big / out["gradient_s"] / 1e9 / out["matmul_gflops"]
    out["product_fast_fraction_of_matmul_rate"] = 4 * big / out["product_fast_s"] / 1e9 / out["matmul_gflops"]
    out["ratio_fast_over_gradient"] = out["product_fast_s"] / out["gradient_s"]
    out["ratio_generic_over_fast"] = out["product_generic_s"] / out["product_fast_s"]
    out["ratio_whole_batch_over_blocked"] = out["product_fast_whole_batch_s"] / out["product_fast_s"]
    out["peak_rss_mb"] = peak_rss_mb()
    if device.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _dp_worker(rank: int, world: int, store: str, T: int, hidden: int, batch: int, repeats: int,
               result: str) -> None:
    """One rank of the data-parallel timing: its shard of the gradient and of the product."""
    from hfrnn.parallel import dist
    from hfrnn.parallel.sharded import ShardedBackend
    torch.set_num_threads(1)
    with dist.process_group(rank, world, "gloo", 60.0, store):
        task, _, layout, theta, b, v = problem(T, hidden, batch, "cpu")
        sharded = ShardedBackend(RNNFastCurvature(layout, task.loss))
        barrier = torch.distributed.barrier
        barrier()
        grad_s = median_time(lambda: sharded.loss_and_grad(theta, b), repeats)
        sharded.prepare(theta, b)
        barrier()
        prod_s = median_time(lambda: sharded.product(v, MU_LAMBDA), repeats)
        if rank == 0:
            # (no peak memory here: a spawned process inherits its parent's ru_maxrss on Linux)
            Path(result).write_text(json.dumps({"gradient_s": grad_s, "product_fast_s": prod_s}))


def bench_data_parallel(T: int, hidden: int, batch: int, repeats: int, procs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store, result = os.path.join(tmp, "store"), os.path.join(tmp, "result.json")
        mp.start_processes(_dp_worker, args=(procs, store, T, hidden, batch, repeats, result),
                           nprocs=procs, start_method="spawn")
        r = json.loads(Path(result).read_text())
    return {"T": T, "hidden": hidden, "batch": batch, "threads": 1, "procs": procs, "device": "cpu", **r}


def markdown(rows: list[dict]) -> str:
    head = ("| procs x threads | T | hidden | block | gradient (ms) | product fast (ms) | product, whole batch "
            "in one pass (ms) | product generic (ms) | CG iteration (ms) | HF iteration (s, CG iters) "
            "| fast / gradient | generic / fast | matmul GFLOP/s | gradient / product fraction of matmul rate "
            "| curvature cache (MB) | process peak RSS so far (MB) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def ms(r, k):
        return f"{1e3 * r[k]:.0f}" if k in r else ""

    for r in rows:
        if r["procs"] == 1:
            lines.append(
                f"| 1 x {r['threads']} | {r['T']} | {r['hidden']} | {r['block']} | {ms(r, 'gradient_s')} "
                f"| {ms(r, 'product_fast_s')} | {ms(r, 'product_fast_whole_batch_s')} | {ms(r, 'product_generic_s')} "
                f"| {ms(r, 'cg_iteration_s')} | {r['hf_iteration_s']:.1f} ({r['hf_iteration_cg_iters']}) "
                f"| {r['ratio_fast_over_gradient']:.2f} | {r['ratio_generic_over_fast']:.2f} | {r['matmul_gflops']:.0f} "
                f"| {r['gradient_fraction_of_matmul_rate']:.2f} / {r['product_fast_fraction_of_matmul_rate']:.2f} "
                f"| {r['cache_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
        else:
            lines.append(
                f"| {r['procs']} x 1 | {r['T']} | {r['hidden']} | auto | {ms(r, 'gradient_s')} | {ms(r, 'product_fast_s')} "
                f"| | | | | {r['product_fast_s'] / r['gradient_s']:.2f} | | | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[30, 100, 200])
    ap.add_argument("--hidden", type=int, nargs="+", default=[100, 300])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--procs", type=int, nargs="*", default=[2],
                    help="also time the gradient and product data-parallel over this many gloo processes")
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
    if a.device == "cpu":
        for procs in a.procs:
            for hidden in a.hidden:
                for T in a.T:
                    r = bench_data_parallel(T, hidden, a.batch, a.repeats, procs)
                    rows.append(r)
                    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    meta = {"platform": platform.platform(), "processor": platform.processor(), "cores": os.cpu_count(),
            "torch": torch.__version__, "dtype": "float32", "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average_at_end": os.getloadavg(),
            "note": "medians over repeats; ratios measured in the same run"}
    if a.device.startswith("cuda"):
        meta["gpu"] = torch.cuda.get_device_name(0)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    table = markdown(rows)
    out.with_suffix(".md").write_text(f"<!-- {json.dumps(meta)} -->\n" + table)
    print("\n" + table)


if __name__ == "__main__":
    main()
