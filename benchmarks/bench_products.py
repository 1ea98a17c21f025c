"""Benchmarks: hfrnn's products and gradients as multiples of the machine's floor.

``make bench`` (the default): for every task (``addition``: only the last step scored;
``memorization``: every step scored), ``T`` and ``hidden``, in one process and interleaved round by
round so that every operation sees the same background load, the median over rounds of each
operation's time divided by its floor measured in the same round:

* the floor: ``k T`` matrix products ``[B, H] @ [H, H]`` (the layer's own shape; ``k`` = 4 for a
  curvature product, 3 for a gradient, 1 for a forward pass), timed as one loop of products;
* hfrnn's fast backend (:mod:`hfrnn.curvature.rnn_fast`, automatic cache blocking): the product
  ``(G + w G_S) v`` with structural damping (``w = 0.003``) and without, the gradient, and the
  plain forward pass ``unroll_states``;
* the yardstick, ``benchmarks/minimal_rnn.py``: a minimal hand-written R-op + BPTT for the
  last-step squared loss (addition only), checked against hfrnn before timing;
* PyPI ``hessianfree`` 0.4.0 (``pip install '.[peers]'``), when installed: ``RNNet.calc_G`` and
  ``calc_grad`` for the same network shape and loss (numpy; its BLAS threads follow
  ``OMP_NUM_THREADS``).

Writes ``--out`` (JSON, default ``benchmarks/results/floor.json``) and the same path with ``.md``,
with the command, date, threads and the load average before and after.

    python benchmarks/bench_products.py [--T 30 100 200] [--hidden 100 300]
        [--tasks addition memorization] [--threads 1] [--rounds 7]

``--suite`` runs the older whole-pipeline suite instead (gradient with autograd, the generic
backend's product, a CG iteration, an HF iteration, and data-parallel timings over ``--procs``
``gloo`` processes), written to ``benchmarks/results/products.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
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


def run_meta(threads: int, load_before: tuple, **extra) -> dict:
    """What every results file records: the command, when, where, threads and the load around it."""
    return {"command": "python " + " ".join(sys.argv), "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "platform": platform.platform(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": threads, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "dtype": "float32",
            **extra, "load_average_before": load_before, "load_average_after": os.getloadavg()}


def write_results(out: str | Path, meta: dict, rows: list[dict], table: str) -> None:
    """``out`` (JSON: meta and rows) and the same path with ``.md`` (the table, meta in a comment)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(f"<!-- {json.dumps(meta)} -->\n" + table)
    print("\n" + table)


def floor_loop(T: int, hidden: int, batch: int):
    """The floor's unit: ``T`` products ``[B, H] @ [H, H]`` in a plain loop, into one output."""
    a, w, c = torch.randn(batch, hidden), torch.randn(hidden, hidden), torch.empty(batch, hidden)

    def floor_1T():
        for _ in range(T):
            torch.mm(a, w, out=c)
    return floor_1T


def interleaved(ops: dict, rounds: int) -> dict:
    """Seconds per call of every op, ``rounds`` times, interleaved round by round after one
    warm-up call each, so that every op sees the same background load."""
    times = {k: [] for k in ops}
    for f in ops.values():
        f()
    for _ in range(rounds):
        for k, f in ops.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return times


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
    """Bytes of the tensors a prepared fast backend keeps (state buffers, R t workspace, outputs)."""
    blocks = backend._cache[-1]
    return sum(t.numel() * t.element_size() for b in blocks for t in (b.Z, b.s, b.Rt) if t is not None)


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


def suite_main(argv: list[str]) -> None:
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
    a = ap.parse_args(argv)
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


# ----------------------------------------------------------------------------------------------
# Multiples of the floor (make bench)

FLOOR_K = {"product": 4, "product_no_damping": 4, "gradient": 3, "forward": 1}


def floor_problem(task_name: str, T: int, hidden: int, batch: int):
    """A batch of ``task_name`` exactly ``T`` steps long, a network, a direction."""
    if task_name == "addition":
        task = make_task("addition", T, variable_length=False, test_size=10)
    else:
        task = make_task(task_name, T, total_length_is_T=True, test_size=10)
    g = torch.Generator().manual_seed(0)
    model = RNN(task.n_in, hidden, task.n_out, generator=g)
    layout = ParamLayout.of(dict(model.named_parameters()))
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()}).clone()
    theta += 0.05 * torch.randn(layout.numel, generator=g)  # dense: no zero-weight shortcuts
    b = task.sample(batch, g)
    assert b.inputs.shape[0] == T
    v = torch.randn(layout.numel, generator=g) * 1e-2
    return task, layout, theta, b, v


def hessianfree_ops(task, hidden: int, layout: ParamLayout, theta, b, seed: int = 0) -> dict | None:
    """``calc_G`` and ``calc_grad`` of PyPI hessianfree's RNNet on the same problem (None if absent)."""
    try:
        import hessianfree as hf
        import numpy as np
    except ImportError:
        return None
    x = b.inputs.transpose(0, 1).numpy().astype(np.float32)  # hessianfree is batch-major
    y = b.targets.transpose(0, 1).numpy().astype(np.float32).copy()
    y[b.mask.t().numpy() == 0] = np.nan  # NaN targets are unscored
    if task.loss == "squared":
        out_layer, loss = hf.nl.Linear(), hf.loss_funcs.SquaredError()
    else:
        out_layer, loss = hf.nl.Softmax(), hf.loss_funcs.CrossEntropy()
    net = hf.RNNet(shape=[task.n_in, hidden, task.n_out], layers=[hf.nl.Linear(), hf.nl.Tanh(), out_layer],
                   loss_type=loss, rng=np.random.RandomState(seed))
    # hfrnn's weights in hessianfree's layout (activations @ W + b per connection), so that both
    # run the same network (with its own initialisation hessianfree overflows at T = 200)
    p = layout.unflatten(theta)
    for conn, (W, bias) in {(0, 1): ("W_hx", "b_h"), (1, 1): ("W_hh", "b_init"), (1, 2): ("W_yh", "b_y")}.items():
        w_view, b_view = net.get_weights(net.W, conn)
        w_view[...] = p[W].T.numpy()
        b_view[...] = p[bias].numpy()
    net.cache_minibatch(x, y)
    v = (np.random.RandomState(seed + 1).randn(net.W.size) * 1e-2).astype(np.float32)
    return {"hessianfree_product": lambda: net.calc_G(v), "hessianfree_gradient": lambda: net.calc_grad()}


def minimal_ops(layout: ParamLayout, theta, b, v, fast: RNNFastCurvature) -> dict:
    """The yardstick's gradient and product, after checking them against hfrnn's."""
    import minimal_rnn as mr
    p, vp = layout.unflatten(theta), layout.unflatten(v)
    x, y = b.inputs, b.targets[-1]
    h, d = mr.prepare(p, x)
    fast.prepare(theta, b)
    got = layout.flatten(mr.gauss_newton_product(p, x, h, d, vp))
    ref = fast.product(v, 0.0)
    assert (got - ref).norm() <= 1e-3 * ref.norm(), "minimal product disagrees with hfrnn"
    got = layout.flatten(mr.loss_and_grad(p, x, y)[1])
    ref = fast.loss_and_grad(theta, b)[1]
    assert (got - ref).norm() <= 1e-3 * ref.norm(), "minimal gradient disagrees with hfrnn"
    return {"minimal_product": lambda: mr.gauss_newton_product(p, x, h, d, vp),
            "minimal_gradient": lambda: mr.loss_and_grad(p, x, y)}


def floor_bench(task_name: str, T: int, hidden: int, batch: int, rounds: int, peers: bool) -> dict:
    from hfrnn.models.rnn import unroll_states
    task, layout, theta, b, v = floor_problem(task_name, T, hidden, batch)
    fast = RNNFastCurvature(layout, task.loss)
    ops = {}
    if task_name == "addition":
        ops.update(minimal_ops(layout, theta, b, v, fast))
    fast.prepare(theta, b)
    p = layout.unflatten(theta)
    ops.update({"product": lambda: fast.product(v, MU_LAMBDA), "product_no_damping": lambda: fast.product(v, 0.0),
                "gradient": lambda: fast.loss_and_grad(theta, b), "forward": lambda: unroll_states(p, b.inputs)})
    hf_ops = hessianfree_ops(task, hidden, layout, theta, b) if peers else None
    if hf_ops:
        ops.update(hf_ops)
    times = interleaved({"floor_1T": floor_loop(T, hidden, batch), **ops}, rounds)
    unit = times["floor_1T"]
    k_of = dict(FLOOR_K, minimal_product=4, minimal_gradient=3, hessianfree_product=4, hessianfree_gradient=3)
    out = {"task": task_name, "T": T, "hidden": hidden, "batch": batch, "threads": torch.get_num_threads(),
           "block": fast.block or auto_block(T, hidden, theta.dtype, "cpu") or batch, "rounds": rounds,
           "floor_1T_ms": 1e3 * statistics.median(unit),
           "floor_gflops": 2 * batch * hidden * hidden * T / statistics.median(unit) / 1e9}
    for k in ops:
        if k == "floor_1T":
            continue
        out[f"{k}_ms"] = 1e3 * statistics.median(times[k])
        out[f"{k}_x_floor"] = statistics.median(t / (k_of[k] * u) for t, u in zip(times[k], unit))

    def ratio(num, den):  # median over rounds of the per-round ratio
        return statistics.median(x / y for x, y in zip(times[num], times[den]))

    for other in ("minimal", "hessianfree"):
        if f"{other}_product" in times:
            out[f"product_over_{other}"] = ratio("product", f"{other}_product")
            out[f"product_no_damping_over_{other}"] = ratio("product_no_damping", f"{other}_product")
            out[f"gradient_over_{other}"] = ratio("gradient", f"{other}_gradient")
    return out


def floor_markdown(rows: list[dict]) -> str:
    head = ("| task | T | H | block | floor 1T (ms) | product (x 4T) | product w=0 (x 4T) | gradient (x 3T) "
            "| forward (x 1T) | minimal product / gradient (x floor) | hfrnn / minimal: product, w=0, gradient "
            "| hessianfree product / gradient (x floor) | hessianfree / hfrnn: product w=0, gradient |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def f(r, k, fmt="{:.2f}"):
        return fmt.format(r[k]) if k in r else "-"

    for r in rows:
        inv = (lambda k: f"{1 / r[k]:.1f}" if k in r else "-")
        lines.append(
            f"| {r['task']} | {r['T']} | {r['hidden']} | {r['block']} | {r['floor_1T_ms']:.1f} "
            f"| {f(r, 'product_x_floor')} | {f(r, 'product_no_damping_x_floor')} | {f(r, 'gradient_x_floor')} "
            f"| {f(r, 'forward_x_floor')} | {f(r, 'minimal_product_x_floor')} / {f(r, 'minimal_gradient_x_floor')} "
            f"| {f(r, 'product_over_minimal')}, {f(r, 'product_no_damping_over_minimal')}, "
            f"{f(r, 'gradient_over_minimal')} "
            f"| {f(r, 'hessianfree_product_x_floor')} / {f(r, 'hessianfree_gradient_x_floor')} "
            f"| {inv('product_no_damping_over_hessianfree')}x, {inv('gradient_over_hessianfree')}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import sys
    if "--suite" in sys.argv[1:]:
        suite_main([x for x in sys.argv[1:] if x != "--suite"])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[30, 100, 200])
    ap.add_argument("--hidden", type=int, nargs="+", default=[100, 300])
    ap.add_argument("--tasks", nargs="+", default=["addition", "memorization"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-peers", action="store_true", help="skip hessianfree even when installed")
    ap.add_argument("--out", default="benchmarks/results/floor.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    rows = []
    for task_name in a.tasks:
        for hidden in a.hidden:
            for T in a.T:
                r = floor_bench(task_name, T, hidden, a.batch, a.rounds, not a.no_peers)
                rows.append(r)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    try:
        import hessianfree
        peer = getattr(hessianfree, "__version__", "installed")
    except ImportError:
        peer = None
    meta = run_meta(a.threads, load_before, hessianfree=peer,
                    note="each ratio: median over rounds of (time / floor time in the same round); "
                         "floor = k T products [B, H] @ [H, H]")
    write_results(a.out, meta, rows, floor_markdown(rows))

if __name__ == "__main__":
    main()
