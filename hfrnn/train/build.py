"""Turn a :class:`hfrnn.config.TrainConfig` into the objects a run needs.

Seeds: the training data generator is seeded with ``seed``; the initial weights with
``seed + 2**33`` (disjoint from data seeds in ``[0, 2**32)`` and from the tasks' test seed), so
changing the data stream never changes the initial network and vice versa.
"""
from __future__ import annotations

import logging

import torch

from ..config import ConfigError, TrainConfig
from ..curvature.generic import GenericCurvature
from ..curvature.rnn_fast import RNNFastCurvature
from ..linalg.params import ParamLayout
from ..models.lstm import LSTM
from ..models.rnn import RNN
from ..optim.adam import Adam, AdamOptions
from ..optim.hessian_free import HessianFree, HFOptions
from ..optim.sgd import SGD, SGDOptions
from ..parallel.sharded import shard_if_distributed
from ..tasks.base import Task

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
    try:
        from ..tasks.natural import make_natural_task
    except ImportError:  # pragma: no cover - natural tasks not installed
        raise ConfigError(f"unknown task {t.name!r}") from None
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


def make_backend(cfg: TrainConfig, model: torch.nn.Module, task: Task):
    opt = cfg.optimizer
    scale = opt.structural.scale if isinstance(opt, HFOptions) else 1.0
    curvature = opt.curvature if isinstance(opt, HFOptions) else "fast"
    if curvature == "fast" and isinstance(model, RNN):
        block = opt.batch.block if isinstance(opt, HFOptions) else 0  # SGD/Adam: automatic
        backend = RNNFastCurvature(ParamLayout.of(dict(model.named_parameters())), task.loss, scale, block)
    else:
        backend = GenericCurvature(model, task.loss, scale)
    return shard_if_distributed(backend)  # each process evaluates its slice of every batch


def initial_damping(opts: HFOptions, task: Task, T: int) -> float:
    """lambda_0, times T on tasks whose released settings scale it (random permutation)."""
    return opts.damping.initial * (T if opts.damping.scale_by_T and task.damping_scale_T else 1)


def make_optimizer(cfg: TrainConfig, theta: torch.Tensor, backend, task: Task):
    opt = cfg.optimizer
    if isinstance(opt, HFOptions):
        return HessianFree(theta, backend, opt, initial_damping(opt, task, cfg.T))
    if isinstance(opt, SGDOptions):
        return SGD(theta, backend, opt)
    if isinstance(opt, AdamOptions):
        return Adam(theta, backend, opt)
    raise ConfigError(f"unknown optimizer config {type(opt).__name__}")
