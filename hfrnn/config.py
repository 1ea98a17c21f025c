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

import difflib
from pathlib import Path
from typing import Any, Iterable

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from .errors import ConfigError
from .optim.adam import AdamOptions
from .optim.hessian_free import HFOptions
from .optim.sgd import SGDOptions
from .train.sweep import extra_name
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
    # A sweep job's directory name: ${hfrnn_overrides:${hydra.overrides.task}} in configs/train.yaml.
    OmegaConf.register_new_resolver("hfrnn_overrides", lambda overrides: extra_name(overrides or []),
                                    replace=True)


def sweep_size(config_dir: str, overrides: list[str], config_name: str = "train") -> int | None:
    """How many jobs ``hfrnn train -m <overrides>`` launches (the product of the sweeps' lengths,
    the command line's over a preset's ``hydra.sweeper.params``); None when it cannot be known
    beforehand (a glob sweep, or a config that does not compose)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parser = OverridesParser.create()
        parsed = parser.parse_overrides(overrides=list(overrides))
        groups = [o.input_line for o in parsed if o.key_or_group in GROUPS and not o.is_sweep_override()]
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            base = compose(config_name=config_name, overrides=groups, return_hydra_config=True)
        preset = OmegaConf.select(base, "hydra.sweeper.params") or {}
        lines = {k: f"{k}={v}" for k, v in preset.items()}
        lines.update({o.key_or_group: o.input_line for o in parsed if not o.key_or_group.startswith("hydra")})
        n = 1
        for o in parser.parse_overrides(overrides=list(lines.values())):
            if o.is_sweep_override():
                if not (o.is_choice_sweep() or o.is_range_sweep()):
                    return None  # a glob over a group's options
                n *= len(list(o.sweep_string_iterator()))
        return n
    except Exception:  # the count is only for progress lines: never a reason to fail
        return None


# --- Overrides checked before Hydra starts: one line for each mistake, with a suggestion ------------

GROUPS = ("task", "model", "optimizer", "arm", "experiment")  # hfrnn's own groups (configs/<group>/)
LAUNCHER_HINT = "the launchers are an extra: pip install 'hfrnn[launchers]'"


def group_choices(config_dir: str, group: str) -> list[str]:
    """The options of a config group: its YAML files (``sub/name`` for those in subfolders)."""
    root = Path(config_dir, group)
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _one_line(e: BaseException) -> str:
    """A Hydra/OmegaConf exception (and its cause) as one line, without the full_key/object_type lines."""
    parts = []
    while e is not None and len(parts) < 3:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
        head = lines[0] if not lines[0].endswith(":") or len(lines) == 1 else f"{lines[0]} {lines[1]}"
        if head not in parts:
            parts.append(head)
        e = e.__cause__
    line = ": ".join(parts)
    if "Could not load 'hydra/launcher/" in line:
        line += f" ({LAUNCHER_HINT})"
    return line


def _values(o: Any) -> list[str] | None:
    """The values an override sets (each of a choice sweep); None for ranges, globs and deletions."""
    if o.is_delete():
        return None
    if o.is_sweep_override():
        return list(o.sweep_string_iterator()) if o.is_choice_sweep() else None
    return [o.get_value_element_as_str()]


def _check_key(cfg: Any, key: str) -> None:
    """Refuse a dotted ``key`` that the schema does not have (an open dict, like ``task.options``,
    takes any key)."""
    from omegaconf import DictConfig, OmegaConf

    node, path = cfg, []
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return  # a list index or a leaf: Hydra's own check says more
        if part not in node.keys():  # (`in node` is False for a key whose value is missing)
            if OmegaConf.get_type(node) in (dict, None) and path:  # an open options dict
                return
            prefix = ".".join(path + [""])
            full = prefix + part
            raise ConfigError(f"unknown key {full!r}" + _suggest(full, [prefix + k for k in node.keys()]))
        node, path = node._get_node(part), path + [part]


def check_overrides(config_dir: str, overrides: list[str], config_name: str = "train") -> None:
    """Check command-line overrides the way Hydra will compose them; raise :class:`ConfigError`
    with one line (and a close match) for a misspelt group option, an unknown key (also one given
    as ``+key``, which Hydra would add beside the schema), a wrong type or a missing launcher.

    A sweep (``-m``) is checked for every option of a choice sweep; other keys with its first value.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register()
    try:
        parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
    except HydraException as e:
        raise ConfigError(_one_line(e)) from None
    group_lines, keys, lines = [], [], []  # lines: every override with one value of each sweep
    for o in parsed:
        name, values = o.key_or_group, _values(o)
        line = _first(o, values[0]) if o.is_sweep_override() and values else o.input_line
        if o.is_sweep_override() and not values:
            line = None  # a range or glob sweep: composed by Hydra itself
        if name in GROUPS:
            valid = group_choices(config_dir, name)
            for v in values or []:
                if v not in valid:
                    shown = [c for c in valid if "/" not in c]
                    raise ConfigError(f"unknown {name} {v!r}" + (_suggest(v, valid) or ";")
                                      + f" choices: {', '.join(shown)}")
            if line:
                group_lines.append(line)
        elif "/" not in name and name != "hydra" and not name.startswith("hydra.") and not o.is_delete():
            keys.append(name)
        if line:
            lines.append(line)
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            base = compose(config_name=config_name, overrides=group_lines)
            for key in keys:
                _check_key(base, key)
            compose(config_name=config_name, overrides=lines)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise ConfigError(_one_line(e)) from None


def _first(o: Any, value: str) -> str:
    """The override ``o`` with one ``value`` in place of its sweep."""
    prefix = {"ADD": "+", "FORCE_ADD": "++"}.get(o.type.name, "")
    package = f"@{o.package}" if o.package is not None else ""
    return f"{prefix}{o.key_or_group}{package}={value}"
