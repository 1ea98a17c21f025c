"""The ``hfrnn train`` config as plain dataclasses, and the checks Hydra's types cannot make.

These are the one source of every default: the YAML files in ``configs/`` hold only what differs
from them (``tests/test_defaults.py``). Hydra fills them (registered with its ConfigStore by
:mod:`hfrnn.config`, at the edge); the core takes them as plain dataclasses and never imports
Hydra or OmegaConf. :func:`validate` checks ranges and choices and raises
:class:`~hfrnn.errors.ConfigError` with a one-line message naming the key; the optimisers' options
are checked by :func:`hfrnn.optim.options.check_options`, the same check the Python API makes.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..errors import ConfigError
from . import loggers
from ..optim.options import check_options

MISSING: Any = "???"  # OmegaConf's marker of a value that must be given (omegaconf.MISSING)
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")
DIST_BACKENDS = ("auto", "gloo", "nccl")


@dataclass
class TaskConfig:
    """``task.*``: the problem and its variants (``specs/tasks.md``); ``T`` is top-level."""

    name: str = MISSING
    variable_length: Optional[bool] = None
    shared_length: bool = False
    addition_target: str = "sum"
    sentinel: bool = False
    loss_every_step: bool = True
    total_length_is_T: bool = False
    test_size: int = 10000
    success_threshold: float = 0.01
    options: Dict[str, Any] = field(default_factory=dict)  # natural tasks' own options


@dataclass
class ModelConfig:
    """``model.*``: architecture and initialisation (``hidden`` is top-level, read by the RNN only).

    ``n_nonzero`` and ``input_scale`` apply to ``rnn``; ``blocks``, ``cells_per_block``,
    ``forget_bias`` and ``peepholes`` to ``lstm`` (:class:`hfrnn.models.lstm.LSTM`);
    ``init_scale`` to both (the RNN's factor on its sparse weights, the LSTM's uniform range).
    """

    name: str = "rnn"
    n_nonzero: int = 15
    input_scale: float = 0.25
    init_scale: float = 1.0
    blocks: int = 30
    cells_per_block: int = 10
    forget_bias: float = 1.0
    peepholes: bool = False


@dataclass
class BudgetConfig:
    """``budget.*``: when a run gives up (the paper: 50,000 minibatches)."""

    max_minibatches: float = 50000.0
    max_wall_s: Optional[float] = None  # the run's total wall clock, over all its resumes
    max_iterations: Optional[int] = None
    session_wall_s: Optional[float] = None  # what one invocation may add (a sweep run again adds as much)


@dataclass
class EvalConfig:
    """``eval.*``: test evaluation at least every ``every_minibatches`` of work."""

    every_minibatches: float = 50.0
    chunk: int = 0  # test sequences per forward pass; 0 = cache-sized (hfrnn.curvature.blocking)


@dataclass
class DataConfig:
    """``data.*``: where a natural task's HDF5 file is."""

    path: Optional[str] = None


@dataclass
class DistConfig:
    """``dist.*``: data-parallel HF over ``torch.distributed`` (:mod:`hfrnn.parallel`).

    ``procs`` processes on this machine (1: no process group at all), each with ``threads``
    threads; ``backend`` is ``auto`` (``nccl`` on CUDA, else ``gloo``), ``gloo`` or ``nccl``; a
    collective that waits longer than ``timeout_s`` for a peer raises (the run ends as ``error``).
    Under ``torchrun`` the processes come from its environment and ``procs`` is ignored.
    """

    procs: int = 1
    backend: str = "auto"
    timeout_s: float = 300.0


@dataclass
class TrainConfig:
    """The composed ``hfrnn train`` config."""

    defaults: List[Any] = field(default_factory=lambda: [
        {"task": "addition"}, {"model": "rnn"}, {"optimizer": "hf"}, "_self_"])
    task: TaskConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: Any = MISSING
    T: int = 30
    seed: int = 0
    device: str = "cpu"  # auto picks CUDA when available; cpu by default, as every run so far
    dtype: str = "float32"
    hidden: int = 100
    threads: int = 1
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    checkpoint_every: int = 10
    # Progress line and loggers' record every log_every iterations, and at each test evaluation;
    # None: every HF iteration, every 100th SGD/Adam step; 0: at test evaluations only.
    # metrics.jsonl always has every iteration.
    log_every: Optional[int] = None
    logger: Any = "none"  # none, tensorboard, csv, or a list: [tensorboard,csv] (hfrnn.train.loggers)
    resume: Optional[str] = None


def validate(cfg: TrainConfig) -> None:
    """Check values Hydra's types cannot; raise :class:`ConfigError` naming the key."""
    def numbers(node: Any, prefix: str = ""):  # (key, value) of every float in the config tree
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            for f in dataclasses.fields(node):
                yield from numbers(getattr(node, f.name), f"{prefix}{f.name}.")
        elif isinstance(node, dict):
            for k, v in node.items():
                yield from numbers(v, f"{prefix}{k}.")
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                yield from numbers(v, f"{prefix}{i}.")
        elif isinstance(node, float):
            yield prefix[:-1], node

    # NaN passes every `x <= 0` test below, so non-finite numbers are refused first, wherever they
    # are; +inf only where it means "no limit".
    for key, value in numbers(cfg):
        if math.isnan(value) or (math.isinf(value) and not (value > 0 and key in ("budget.max_minibatches",
                                                                                   "budget.max_wall_s",
                                                                                   "budget.session_wall_s"))):
            raise ConfigError(f"{key} must be a finite number, got {key}={value}")
    if cfg.T < 2:
        raise ConfigError(f"T must be >= 2, got T={cfg.T}")
    if cfg.hidden < 1:
        raise ConfigError(f"hidden must be >= 1, got hidden={cfg.hidden}")
    if cfg.eval.chunk < 0:
        raise ConfigError(f"eval.chunk must be >= 0 (0 = automatic), got eval.chunk={cfg.eval.chunk}")
    if cfg.device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}; got device={cfg.device}")
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}; got dtype={cfg.dtype}")
    if not 0 <= cfg.seed < 2 ** 32:
        raise ConfigError(f"seed must be in [0, 2**32), got seed={cfg.seed}")
    if cfg.threads < 0:
        raise ConfigError(f"threads must be >= 0 (0 = PyTorch's default), got threads={cfg.threads}")
    if cfg.budget.max_minibatches <= 0:
        raise ConfigError(f"budget.max_minibatches must be > 0, got {cfg.budget.max_minibatches}")
    for key in ("max_wall_s", "session_wall_s"):
        value = getattr(cfg.budget, key)
        if value is not None and value <= 0:
            raise ConfigError(f"budget.{key} must be > 0 (or null: no limit), got {value}")
    if cfg.log_every is not None and cfg.log_every < 0:
        raise ConfigError(f"log_every must be >= 0 (0 = at test evaluations only; null = automatic), "
                          f"got log_every={cfg.log_every}")
    loggers.check(cfg.logger)
    if cfg.dist.procs < 1:
        raise ConfigError(f"dist.procs must be >= 1, got dist.procs={cfg.dist.procs}")
    if cfg.dist.backend not in DIST_BACKENDS:
        raise ConfigError(f"dist.backend must be one of {', '.join(DIST_BACKENDS)}; got {cfg.dist.backend}")
    if cfg.dist.timeout_s <= 0:
        raise ConfigError(f"dist.timeout_s must be > 0, got {cfg.dist.timeout_s}")
    m = cfg.model
    if m.name == "lstm" and min(m.blocks, m.cells_per_block) < 1:
        raise ConfigError(f"model.blocks and model.cells_per_block must be >= 1, got {m.blocks}, {m.cells_per_block}")
    if m.init_scale <= 0:
        raise ConfigError(f"model.init_scale must be > 0, got {m.init_scale}")
    check_options(cfg.optimizer, "optimizer.")
