"""Flat parameter vectors: HF works on ``theta`` in R^N, models on named tensors.

A :class:`ParamLayout` records the names and shapes of a model's parameters in a fixed order and
converts between a flat vector ``[N]`` and a dict of *views* into it (no copies), so a curvature
product can read ``W_hh`` straight out of a direction vector ``v``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ParamLayout:
    """Names and shapes of a model's parameters, in order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, named: dict[str, Tensor]) -> "ParamLayout":
        return cls(tuple(named), tuple(tuple(t.shape) for t in named.values()))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Views of ``flat`` ``[N]`` shaped like the parameters."""
        if flat.shape != (self.numel,):
            raise ValueError(f"expected a flat vector of {self.numel} entries, got shape {tuple(flat.shape)}")
        return {n: p.view(s) for n, p, s in zip(self.names, flat.split(self.sizes), self.shapes)}

    def flatten(self, named: dict[str, Tensor]) -> Tensor:
        """Concatenate tensors (in layout order) into one ``[N]`` vector."""
        return torch.cat([named[n].reshape(-1) for n in self.names])


def dot64(a: Tensor, b: Tensor) -> float:
    """``a . b`` accumulated in float64 (CG's scalars must not lose digits in float32)."""
    return float(torch.dot(a.double().reshape(-1), b.double().reshape(-1)))
