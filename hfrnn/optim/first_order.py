"""What the first-order baselines share: a regularised, clipped minibatch gradient.

    f = L(batch) + wc/2 |theta|^2,   g = dL/dtheta + wc theta,   g <- g * min(1, clip / |g|)

A non-finite loss or gradient is reported (``g is None``, ``info.accepted`` False) so the caller
rejects the step; so is an update that would make the parameters non-finite
(:func:`reject_non_finite`): non-finite values never reach ``theta``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from ..curvature.protocol import CurvatureBackend, steps_per_sequence
from ..tasks.base import Batch
from . import SEQUENCES_PER_MINIBATCH


@dataclass
class FirstOrderStepInfo:
    """One step of SGD or Adam (logged to ``metrics.jsonl``)."""

    loss_before: float
    grad_norm: float
    accepted: bool
    reason: str
    minibatches: float
    forward_evals: float = 0.0
    steps_per_sequence: float = 1.0  # mean scored steps per sequence of the batch (display unit)


def clipped_gradient(theta: Tensor, backend: CurvatureBackend, sample: Callable[[int], Batch], batch_size: int,
                     weight_cost: float, clip: float) -> tuple[Tensor | None, FirstOrderStepInfo]:
    """Draw a batch; return ``(clipped g, or None if not finite; the step's record)``.

    The record's ``grad_norm`` is ``|g|`` before clipping; ``accepted`` says whether ``g`` is usable.
    """
    batch = sample(batch_size)
    f, g = backend.loss_and_grad(theta, batch)
    if weight_cost:
        f += 0.5 * weight_cost * float(theta @ theta)
        g = g + weight_cost * theta
    norm = float(g.norm())
    info = FirstOrderStepInfo(f, norm, True, "ok", batch.size / SEQUENCES_PER_MINIBATCH,
                              steps_per_sequence=steps_per_sequence(batch))
    if not (math.isfinite(f) and math.isfinite(norm)):
        info.accepted, info.reason = False, "non_finite_gradient"
        return None, info
    if clip > 0 and norm > clip:
        g = g * (clip / norm)
    return g, info


def reject_non_finite(theta_new: Tensor, info: FirstOrderStepInfo) -> bool:
    """True when the proposed parameters are all finite; else marks ``info`` as a rejected step."""
    if bool(theta_new.isfinite().all()):
        return True
    info.accepted, info.reason = False, "non_finite_update"
    return False


def check_shape(name: str, saved: Tensor, current: Tensor) -> None:
    """A saved optimiser tensor must match exactly (``copy_`` would broadcast a wrong one)."""
    if not isinstance(saved, Tensor) or saved.shape != current.shape:
        shape = tuple(saved.shape) if isinstance(saved, Tensor) else type(saved).__name__
        raise ValueError(f"optimizer state {name} has shape {shape}, expected {tuple(current.shape)}")
