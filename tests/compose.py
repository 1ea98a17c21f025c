"""Compose the real ``hfrnn train`` config from overrides and run the loop on it, in-process (no Hydra run)."""
from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hfrnn.cli import CONFIG_DIR
from hfrnn.config import register
from hfrnn.train import loop


def cfg_of(overrides):
    """``(typed TrainConfig, resolved dict)`` of ``configs/train.yaml`` with ``overrides``."""
    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        c = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_object(c), OmegaConf.to_container(c, resolve=True)


def fit_with(overrides, run_dir):
    """Train one run with ``overrides`` into ``run_dir``; returns its result record."""
    cfg, raw = cfg_of(overrides)
    return loop.fit(cfg, run_dir, raw)
