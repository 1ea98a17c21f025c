"""What the first-order baselines share: a regularised, clipped minibatch gradient.

    f = L(batch) + wc/2 |theta|^2,   g = dL/dtheta + wc theta,   g <- g * min(1, clip / |g|)

A non-finite loss or gradient is reported (``g is None``, ``info.accepted`` False) so the caller
rejects the step.
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
