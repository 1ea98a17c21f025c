"""Packaging that pyproject.toml cannot say alone: ``configs/`` ships inside the package.

The YAML config groups live at the repository's top level (``configs/``, where a user edits them),
and the wheel maps them into the installed package as ``hfrnn/configs/`` so that ``hfrnn train``
finds them from anywhere (:func:`hfrnn.cli.config_dir` looks there first, then in the checkout).
Everything else is in pyproject.toml.
"""
from setuptools import find_namespace_packages, find_packages, setup

# Each folder of configs/ is a data-only package, so every YAML file is claimed by exactly one.
CONFIG_PACKAGES = ["hfrnn.configs"] + [f"hfrnn.configs.{p}" for p in find_namespace_packages(where="configs")]

setup(
    packages=find_packages(include=["hfrnn", "hfrnn.*"]) + CONFIG_PACKAGES,
    package_dir={"hfrnn.configs": "configs"},
    package_data={p: ["*.yaml"] for p in CONFIG_PACKAGES},
)
