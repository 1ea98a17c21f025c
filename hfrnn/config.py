"""The edge between Hydra and the core: the config schemas registered with Hydra's ConfigStore.

The schemas are plain dataclasses (:mod:`hfrnn.train.schema`, the optimisers' options in
:mod:`hfrnn.optim`); the YAML files in ``configs/`` fill them, and because every node is typed, a
misspelt key or a wrong type fails at start with Hydra's own message, before any work. Values that
Hydra cannot check (ranges, choices) are checked by :func:`validate`. Only this module, the CLI
and the data CLI import Hydra.

The YAML of each optimiser names its schema in its defaults list (``hf_schema``, ``sgd_schema``,
``adam_schema``); the task and model groups name ``task_schema`` and ``model_schema``.
"""
from __future__ import annotations

from hydra.core.config_store import ConfigStore

from .errors import ConfigError
from .optim.adam import AdamOptions
from .optim.hessian_free import HFOptions
from .optim.sgd import SGDOptions
from .train.schema import (DEVICES, DIST_BACKENDS, DTYPES, BudgetConfig, DataConfig, DistConfig, EvalConfig,
                           ModelConfig, TaskConfig, TrainConfig, validate)

__all__ = ["ConfigError", "register", "validate", "TrainConfig", "TaskConfig", "ModelConfig", "BudgetConfig",
           "EvalConfig", "DataConfig", "DistConfig", "DEVICES", "DTYPES", "DIST_BACKENDS"]


def register() -> None:
    """Register the schemas (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="task", name="task_schema", node=TaskConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="optimizer", name="hf_schema", node=HFOptions)
    cs.store(group="optimizer", name="sgd_schema", node=SGDOptions)
    cs.store(group="optimizer", name="adam_schema", node=AdamOptions)
