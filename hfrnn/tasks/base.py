"""The task protocol: what every problem serves to the optimizers and how it is scored.

A task generates (or reads) batches in time-major layout and decides, per sequence, whether a
prediction is wrong (``specs/tasks.md``). Every tensor is time-major:

* ``inputs``  ``[T, B, n_in]``  (zero after a sequence's end)
* ``targets`` ``[T, B, n_out]`` (real values, bits, or one-hot classes; zero where unscored)
* ``mask``    ``[T, B]``        1 where the target enters the loss
* ``score_mask`` ``[T, B]``     1 where the target decides right or wrong (default: ``mask``);
  only the tasks' scoring reads it, never the optimisers

The objective is the paper's (section 2): each sequence's loss is summed over its scored steps,
and the objective averages over sequences: ``L = sum_{t,b} mask * l(s_tb, y_tb) / B``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class Batch:
    """One batch of sequences, time-major (see the module docstring for shapes).

    ``mask`` defaults to every step scored, ``score_mask`` to ``mask``.
    """

    inputs: Tensor
    targets: Tensor
    mask: Optional[Tensor] = None
    score_mask: Optional[Tensor] = None

    def __post_init__(self) -> None:
        if self.inputs.dim() != 3 or self.targets.dim() != 3 or self.inputs.shape[:2] != self.targets.shape[:2]:
            raise ValueError(f"inputs and targets must be time-major [T, B, n] with the same T and B, got "
                             f"{tuple(self.inputs.shape)} and {tuple(self.targets.shape)}")
        if self.mask is None:
            self.mask = self.inputs.new_ones(self.inputs.shape[:2])
        if self.mask.shape != self.inputs.shape[:2]:
            raise ValueError(f"mask must be [T, B] = {tuple(self.inputs.shape[:2])}, got {tuple(self.mask.shape)}")
        if self.score_mask is None:
            self.score_mask = self.mask

    @property
    def T(self) -> int:
        return self.inputs.shape[0]

    @property
    def size(self) -> int:
        return self.inputs.shape[1]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Batch":
        """Move to a device and cast the floating tensors to ``dtype``."""
        return Batch(*(x.to(device=device, dtype=dtype) for x in
                       (self.inputs, self.targets, self.mask, self.score_mask)))

    def split(self, n: int) -> list["Batch"]:
        """Split along the batch dimension into chunks of at most ``n`` sequences."""
        parts = zip(*(x.split(n, dim=1) for x in (self.inputs, self.targets, self.mask, self.score_mask)))
        return [Batch(*p) for p in parts]


@runtime_checkable
class Task(Protocol):
    """A sequence problem.

    Attributes:
        name: the config name (``addition``, ...).
        n_in, n_out: input and output widths.
        loss: the matched output non-linearity + loss pair: ``squared`` (linear output, halved
            squared error), ``logistic`` (logistic output, binary cross-entropy) or ``softmax``
            (softmax output, categorical cross-entropy); see :mod:`hfrnn.losses`.
        damping_scale_T: True when the released code scales HF's initial damping by T
            (random permutation).
        has_success_rule: True for the pathological problems (the < 1% wrong rule); False for
            the natural problems, which report :meth:`extra_metrics` instead and never "solve".
    """

    name: str
    n_in: int
    n_out: int
    loss: str
    damping_scale_T: bool
    has_success_rule: bool

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A fresh training batch drawn from ``generator`` (float32, CPU)."""
        ...

    def test_set(self) -> Batch:
        """The fixed test set (10,000 sequences for the pathological problems)."""
        ...

    def wrong(self, outputs: Tensor, batch: Batch) -> Tensor:
        """Per-sequence wrongness.

        Args:
            outputs: output pre-activations ``s`` ``[T, B, n_out]``.
            batch: the batch they were computed on.
        Returns:
            ``[B]`` bool, True where the sequence counts as wrong.
        """
        ...

    def extra_metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """Task-specific measures on a batch (e.g. squared error per frame); may be empty."""
        ...


DATA_KEYS = ("dataset", "path", "description", "mode", "T")  # what result.json's ``data`` record holds


def data_description(task: Task) -> dict[str, Any] | None:
    """What a natural task's data is (``DATA_KEYS`` of its ``info``: no counts), or None for the
    generated pathological problems. ``result.json`` records it under ``data``."""
    info = getattr(task, "info", None)
    if not isinstance(info, dict):
        return None
    return {k: info[k] for k in DATA_KEYS if k in info}
