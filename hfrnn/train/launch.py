"""Starting the processes of one data-parallel run and collecting rank 0's result.

``hfrnn train ... dist.procs=N`` on one machine: the Hydra process becomes rank 0 (it evaluates
the test set, writes the run directory and reports) and spawns ranks 1..N-1 as fresh Python
processes, which meet it through a file store in a temporary directory. When rank 0's run ends,
whatever the outcome, it leaves the process group (any rank still waiting in a collective is
woken with an error and exits), gives the others a few seconds to finish and kills the rest.

Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set) every process is one rank, rendezvous is
``env://`` (``MASTER_ADDR``, ``MASTER_PORT``) and ``dist.procs`` is ignored; give every rank the
same ``hydra.run.dir`` so that rank 0's files are where the others look for ``resume``.

``threads=0`` (PyTorch's default) with several processes on one machine means each process gets
``cores // processes`` threads, so the processes do not fight over the cores.
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..errors import ConfigError
from ..parallel import dist
from .build import resolve_device
from .loop import fit
from .schema import TrainConfig

log = logging.getLogger(__name__)
REAP_GRACE_S = 10.0


def torchrun_world() -> tuple[int, int] | None:
    """``(rank, world)`` from torchrun's environment, or None outside torchrun."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None


def wants_distributed(cfg: TrainConfig) -> bool:
    """True for ``dist.procs > 1`` or a torchrun world of more than one process."""
    world = torchrun_world()
    return world[1] > 1 if world is not None else cfg.dist.procs > 1


def choose_backend(cfg: TrainConfig, local_procs: int) -> str:
    """``dist.backend``, with ``auto`` = ``nccl`` on CUDA, else ``gloo``; checks what NCCL needs."""
    device = resolve_device(cfg.device)
    backend = cfg.dist.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if device.type != "cuda":
            raise ConfigError("dist.backend=nccl needs device=cuda (use dist.backend=gloo on the CPU)")
        if local_procs > torch.cuda.device_count():
            raise ConfigError(f"dist.backend=nccl needs one GPU per process: {local_procs} processes, "
                              f"{torch.cuda.device_count()} GPUs (use fewer, or dist.backend=gloo)")
    return backend


def _per_process_threads(cfg: TrainConfig, local_procs: int) -> TrainConfig:
    if cfg.threads > 0:
        return cfg
    return dataclasses.replace(cfg, threads=max(1, (os.cpu_count() or 1) // local_procs))


def fit_distributed(cfg: TrainConfig, run_dir: Path, resolved_config: dict) -> dict | None:
    """Run :func:`hfrnn.train.loop.fit` on every rank; rank 0's result (None on other torchrun ranks)."""
    world = torchrun_world()
    if world is not None:
        rank, size = world
        local = int(os.environ.get("LOCAL_WORLD_SIZE", size))
        if cfg.dist.procs not in (1, size):
            log.warning("under torchrun the world size is %d; dist.procs=%d is ignored", size, cfg.dist.procs)
        backend, cfg = choose_backend(cfg, local), _per_process_threads(cfg, local)
        if rank > 0:
            logging.getLogger("hfrnn").setLevel(logging.WARNING)  # rank 0 reports progress
        with dist.process_group(rank, size, backend, cfg.dist.timeout_s):
            result = fit(cfg, run_dir, resolved_config)
        return result if rank == 0 else None

    procs = cfg.dist.procs
    backend, cfg = choose_backend(cfg, procs), _per_process_threads(cfg, procs)
    tmp = tempfile.mkdtemp(prefix="hfrnn-dist-")
    store = os.path.join(tmp, "store")
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_worker, name=f"hfrnn-rank{r}", daemon=True,
                           args=(r, procs, backend, store, cfg, run_dir, resolved_config))
               for r in range(1, procs)]
    for w in workers:
        w.start()
    log.info("data-parallel run: %d processes (%s), %d threads each", procs, backend, cfg.threads)
    try:
        with dist.process_group(0, procs, backend, cfg.dist.timeout_s, store):
            return fit(cfg, run_dir, resolved_config)
    finally:
        _reap(workers)
        shutil.rmtree(tmp, ignore_errors=True)


def _worker(rank: int, world: int, backend: str, store: str, cfg: TrainConfig, run_dir: Path,
            resolved_config: dict) -> None:
    """Rank ``rank`` >= 1 of a run started by :func:`fit_distributed` (a spawned process)."""
    logging.basicConfig(level=logging.WARNING, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    try:
        with dist.process_group(rank, world, backend, cfg.dist.timeout_s, store):
            result = fit(cfg, run_dir, resolved_config)
    except ConfigError:
        raise SystemExit(2)  # rank 0 meets the same error and reports it
    raise SystemExit(1 if result["status"] == "error" else 0)


def _reap(workers: list, grace_s: float = REAP_GRACE_S) -> None:
    """Wait up to ``grace_s`` for the workers to end, then stop (and finally kill) the rest."""
    try:
        deadline = time.monotonic() + grace_s
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
    finally:
        for w in workers:
            if w.is_alive():
                log.warning("stopping %s (pid %s), still running after rank 0 ended", w.name, w.pid)
                w.terminate()
        for w in workers:
            w.join(5.0)
            if w.is_alive():
                w.kill()
                w.join()
