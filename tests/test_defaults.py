"""One source for every default: the dataclasses. The YAML presets hold only what differs."""
import dataclasses
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hfrnn.cli import CONFIG_DIR
from hfrnn.config import register
from hfrnn.optim.adam import AdamOptions
from hfrnn.optim.hessian_free import HFOptions
from hfrnn.optim.sgd import SGDOptions
from hfrnn.train.schema import ModelConfig, TaskConfig, TrainConfig

SCHEMAS = {"hf_schema": HFOptions, "sgd_schema": SGDOptions, "adam_schema": AdamOptions,
           "model_schema": ModelConfig, "task_schema": TaskConfig}
GROUPS = ("optimizer", "model", "task")
OPEN_DICTS = {"options"}  # `options: {}` opens a task's dict to new keys (task.options.loss=...)


def _compose(overrides):
    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="train", overrides=overrides), resolve=True)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k not in OPEN_DICTS:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _preset(group, name):
    """``(schema, the keys the preset and the presets it extends set)``, from the YAML files."""
    data = yaml.safe_load(Path(CONFIG_DIR, group, f"{name}.yaml").read_text()) or {}
    schema, keys = None, {}
    for entry in data.pop("defaults", []):
        if entry in SCHEMAS:
            schema = SCHEMAS[entry]
        elif entry != "_self_":
            schema, keys = _preset(group, entry)
    return schema, {**keys, **_flat(data)}


PRESETS = [(g, p.stem) for g in GROUPS for p in sorted(Path(CONFIG_DIR, g).glob("*.yaml"))]


@pytest.mark.parametrize("group,name", PRESETS, ids=[f"{g}/{n}" for g, n in PRESETS])
def test_presets_hold_only_what_differs_from_the_dataclass(group, name):
    schema, own = _preset(group, name)
    data = yaml.safe_load(Path(CONFIG_DIR, group, f"{name}.yaml").read_text()) or {}
    base = {**_flat(dataclasses.asdict(schema())), **(_preset(group, d)[1] if (d := next(
        (e for e in data.get("defaults", []) if e not in SCHEMAS and e != "_self_"), None)) else {})}
    restated = {k: v for k, v in _flat({k: v for k, v in data.items() if k != "defaults"}).items()
                if k not in OPEN_DICTS and k in base and base[k] == v}
    assert restated == {}, f"configs/{group}/{name}.yaml restates defaults: {restated}"


@pytest.mark.parametrize("group,name", PRESETS, ids=[f"{g}/{n}" for g, n in PRESETS])
def test_composed_config_is_the_dataclass_where_the_yaml_is_silent(group, name):
    schema, own = _preset(group, name)
    composed = _flat(_compose([f"{group}={name}"])[group])
    expected = {**_flat(dataclasses.asdict(schema())), **own}
    assert composed == expected


def test_top_level_defaults_are_the_train_config():
    """train.yaml sets nothing but the defaults list and Hydra's own keys (device: one default, cpu)."""
    data = yaml.safe_load(Path(CONFIG_DIR, "train.yaml").read_text())
    assert set(data) == {"defaults", "hydra"}
    composed = _compose([])
    want = dataclasses.asdict(TrainConfig())
    for key in ("T", "seed", "device", "dtype", "hidden", "threads", "budget", "eval", "data", "dist",
                "checkpoint_every", "log_every", "resume"):
        assert composed[key] == want[key], key
    assert composed["device"] == "cpu"
