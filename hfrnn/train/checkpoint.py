"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint holds the parameters, the optimiser's state (damping, CG warm start, SGD velocity),
the loop's counters, the last test metrics, every RNG state (the data generator, torch's global
one) and the resolved config. It is saved with ``torch.save`` to a temporary file and renamed, so
a run killed at any moment leaves the previous checkpoint intact; it is read with
``torch.load(weights_only=True)``, which unpickles only tensors and plain containers.

Resuming compares the new config with the saved one: keys that change the optimisation are
refused (naming the key); keys that only change when to stop or how to log may differ.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from .records import save_checkpoint_atomic

CHECKPOINT = "checkpoint.pt"
# Keys a resumed run may change: stopping rules, logging, placement of work.
log = logging.getLogger(__name__)
RESUMABLE_CHANGES = ("budget", "resume", "threads", "log_every", "logger", "checkpoint_every", "eval.chunk",
                     "optimizer.batch.chunk", "optimizer.batch.block", "device", "dist")


def save(run_dir: Path, state: dict) -> None:
    save_checkpoint_atomic(Path(run_dir) / CHECKPOINT, state)


def load(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CHECKPOINT
    if not Path(run_dir).is_dir():
        raise ConfigError(f"resume={run_dir}: not a directory")
    if not path.exists():
        raise ConfigError(f"resume={run_dir}: no {CHECKPOINT} there (is it an hfrnn run directory?)")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # a foreign or damaged file
        raise unreadable(run_dir, e) from None
    problem = _problem(state)
    if problem:
        raise unreadable(run_dir, problem)
    return state


def unreadable(run_dir: str | Path, why: Exception | str) -> ConfigError:
    """The one-line error for a checkpoint that cannot be used."""
    text = f"{type(why).__name__}: {why}" if isinstance(why, Exception) else why
    return ConfigError(f"resume={run_dir}: {CHECKPOINT} is unreadable ({text})")


# What every checkpoint since hfrnn 0.1 holds; newer keys (last_test, last_eval_minibatches) are optional.
REQUIRED = {"theta": torch.Tensor, "optimizer": dict, "counters": dict, "data_rng": torch.Tensor,
            "torch_rng": torch.Tensor, "config": dict}
REQUIRED_COUNTERS = ("iteration", "minibatches", "forward_evals", "wall_s")


def _problem(state: Any) -> str | None:
    """Why ``state`` is not a checkpoint of this program, or None."""
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a checkpoint"
    for key, kind in REQUIRED.items():
        if not isinstance(state.get(key), kind):
            return f"{key} is missing or not a {kind.__name__}"
    if state["theta"].dim() != 1:
        return f"theta has shape {tuple(state['theta'].shape)}, not a flat vector"
    for key in REQUIRED_COUNTERS:
        value = state["counters"].get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"counters.{key} is missing or not a number"
    if not isinstance(state.get("last_test", {}), dict):
        return "last_test is not a dict"
    return None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def check_compatible(saved: dict, new: dict) -> None:
    """Raise :class:`ConfigError` naming the first key whose change would alter the optimisation."""
    a, b = _flatten(saved), _flatten(new)
    for key in sorted(set(a) | set(b)):
        if any(key == r or key.startswith(r + ".") for r in RESUMABLE_CHANGES):
            continue
        if key not in a or key not in b:
            # A key added or removed by another hfrnn version: nothing to compare against.
            log.warning("resume: config key %s exists in only one of the two configs", key)
            continue
        if a[key] != b[key]:
            raise ConfigError(f"cannot resume: config key {key} changed ({a[key]!r} -> {b[key]!r}); "
                              "repeat the original overrides")


class Snapshot:
    """The state at the start of an iteration, so an interrupted iteration can be abandoned cleanly."""

    def __init__(self, theta: torch.Tensor, opt, counters: dict, last_test: dict, data_gen: torch.Generator):
        self.state = {"theta": theta.detach().cpu().clone(), "optimizer": copy.deepcopy(opt.state_dict()),
                      "counters": dict(counters), "last_test": dict(last_test),
                      "data_rng": data_gen.get_state(), "torch_rng": torch.get_rng_state()}
