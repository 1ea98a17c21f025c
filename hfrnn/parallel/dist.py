"""The process group of a data-parallel run, and the collectives the training loop needs.

One process per CPU core (``gloo``) or per GPU (``nccl``). Rendezvous is through a file store
when ``hfrnn train dist.procs=N`` starts the processes on one machine, and through ``env://``
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``) under ``torchrun``.

A peer that dies closes its sockets, which ``gloo`` reports at the next collective (measured:
about a millisecond); a peer that hangs is given up after ``timeout_s``. Either way the
collective raises, so the run ends with ``status: error`` instead of hanging. (With ``nccl`` a
timed-out collective is handled by PyTorch's watchdog, which aborts the process.)

Without a process group (``dist.procs=1``) every function here is a cheap no-op: rank 0 of 1.
"""
from __future__ import annotations

import os
import zlib
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK`` under torchrun, else the rank)."""
    return int(os.environ.get("LOCAL_RANK", rank()))


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:<local rank>`` (modulo the GPUs present) when on CUDA."""
    if device.type != "cuda" or not is_distributed():
        return device
    index = local_rank() % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def comm_device() -> torch.device:
    """Where tensors handed to a collective must live (NCCL reduces only CUDA tensors)."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextmanager
def process_group(rank: int, world: int, backend: str, timeout_s: float,
                  store_path: str | None = None) -> Iterator[None]:
    """Join a process group for the duration of the block, then leave it.

    Args:
        rank, world: this process's rank and the number of processes.
        backend: ``gloo`` or ``nccl``.
        timeout_s: how long a collective (and the rendezvous) waits for a silent peer.
        store_path: a file all ranks can reach (one machine); None for ``env://`` (torchrun).
    """
    timeout = timedelta(seconds=timeout_s)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    if store_path is not None:
        store = dist.FileStore(store_path, world)
        store.set_timeout(timeout)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
    else:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, timeout=timeout)
    try:
        yield
    finally:
        # Closing the connections also wakes peers still waiting in a collective: they raise.
        dist.destroy_process_group()


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over all ranks, in place (on the collective's device); returns it."""
    if not is_distributed():
        return t
    dev = comm_device()
    if t.device == dev:
        dist.all_reduce(t)
        return t
    buf = t.to(dev)
    dist.all_reduce(buf)
    return t.copy_(buf)


def agree(flag: bool, theta: Tensor | None = None) -> bool:
    """Rank 0's ``flag`` on every rank; also checks that every rank holds the same ``theta``.

    The loop's stop decisions that only rank 0 can make (the test-set evaluation, the wall
    clock) go through here. Every rank applies the same all-reduced values in the same order, so
    parameters stay bit-identical; a CRC of ``theta`` proves it each iteration, and a mismatch
    (e.g. ranks on machines whose arithmetic differs) raises instead of drifting silently.
    """
    if not is_distributed():
        return flag
    crc = float(zlib.crc32(theta.detach().cpu().contiguous().numpy().tobytes())) if theta is not None else 0.0
    t = torch.tensor([float(flag) if rank() == 0 else 0.0, crc, -crc], dtype=torch.float64, device=comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if t[1] != -t[2]:
        raise RuntimeError("ranks hold different parameters (their arithmetic differs); "
                           "data-parallel runs need identical hardware and software on every rank")
    return bool(t[0])
