"""What the first-order baselines share: a regularised, clipped minibatch gradient.

    f = L(batch) + wc/2 |theta|^2,   g = dL/dtheta + wc theta,   g <- g * min(1, clip / |g|)

A non-finite loss or gradient is reported (``g is None``) so the caller rejects the step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from ..curvature.protocol import CurvatureBackend
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


def clipped_gradient(theta: Tensor, backend: CurvatureBackend, sample: Callable[[int], Batch], batch_size: int,
                     weight_cost: float, clip: float) -> tuple[float, Tensor | None, float, float]:
    """Draw a batch; return ``(f, clipped g or None if not finite, |g| before clipping, minibatches)``."""
    batch = sample(batch_size)
    f, g = backend.loss_and_grad(theta, batch)
    if weight_cost:
        f += 0.5 * weight_cost * float(theta @ theta)
        g = g + weight_cost * theta
    norm = float(g.norm())
    mb = batch.size / SEQUENCES_PER_MINIBATCH
    if not (math.isfinite(f) and math.isfinite(norm)):
        return f, None, norm, mb
    if clip > 0 and norm > clip:
        g = g * (clip / norm)
    return f, g, norm, mb
