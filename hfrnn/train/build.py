"""Turn a :class:`hfrnn.train.schema.TrainConfig` into the objects a run needs (through :mod:`hfrnn.api`).

Seeds: the training data generator is seeded with ``seed``; the initial weights with
``seed + 2**33`` (disjoint from data seeds in ``[0, 2**32)`` and from the tasks' test seed), so
changing the data stream never changes the initial network and vice versa.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from ..api import ModuleOptimizer, optimizer_for
from ..errors import ConfigError
from ..models.lstm import LSTM
from ..models.rnn import RNN
from ..optim.hessian_free import HFOptions
from ..parallel import dist
from ..tasks.base import Task
from .schema import TrainConfig

log = logging.getLogger(__name__)
INIT_SEED_OFFSET = 2 ** 33
TASK_KEYS = ("variable_length", "shared_length", "addition_target", "sentinel", "loss_every_step",
             "total_length_is_T", "test_size")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available (use device=cpu or device=auto)")
    return torch.device(name)


def make_task(cfg: TrainConfig) -> Task:
    from ..tasks import pathological

    t = cfg.task
    if t.name in pathological.PATHOLOGICAL_TASKS:
        try:
            return pathological.make_task(t.name, cfg.T, **{k: getattr(t, k) for k in TASK_KEYS})
        except ValueError as e:
            raise ConfigError(str(e)) from None
    from ..tasks.natural import make_natural_task

    try:  # data.path defaults to the file `hfrnn data` writes for the task
        return make_natural_task(t.name, cfg.T, cfg.data.path, **dict(t.options))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def make_model(cfg: TrainConfig, task: Task) -> torch.nn.Module:
    m = cfg.model
    g = torch.Generator().manual_seed(cfg.seed + INIT_SEED_OFFSET)
    if m.name == "rnn":
        return RNN(task.n_in, cfg.hidden, task.n_out, n_nonzero=m.n_nonzero, input_scale=m.input_scale,
                   init_scale=m.init_scale, generator=g)
    if m.name == "lstm":
        log.info("model=lstm: %d blocks x %d cells; hidden=%d is ignored (it sizes the RNN only)",
                 m.blocks, m.cells_per_block, cfg.hidden)
        return LSTM(task.n_in, task.n_out, blocks=m.blocks, cells_per_block=m.cells_per_block,
                    forget_bias=m.forget_bias, peepholes=m.peepholes, init_scale=m.init_scale, generator=g)
    raise ConfigError(f"unknown model {m.name!r}; available: rnn, lstm")


def initial_damping(opts: HFOptions, task: Task, T: int) -> float:
    """lambda_0, times T on tasks whose released settings scale it (random permutation)."""
    return opts.damping.initial * (T if opts.damping.scale_by_T and task.damping_scale_T else 1)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module, task: Task) -> ModuleOptimizer:
    """The public optimiser (:mod:`hfrnn.api`) the config names, over ``model``; HF starts from the
    task's lambda_0; inside a process group every rank evaluates its share of each batch."""
    opts = cfg.optimizer
    if isinstance(opts, HFOptions):
        lam = initial_damping(opts, task, cfg.T)
        opts = dataclasses.replace(opts, damping=dataclasses.replace(opts.damping, initial=lam))
    return optimizer_for(model, task.loss, opts, shard=dist.is_distributed())
