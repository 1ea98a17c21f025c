"""Stochastic gradient descent through time: the paper's baseline.

    v <- momentum * v - lr * clip(g)
    theta <- theta + v

with ``clip(g) = g * min(1, clip / |g|)`` (gradient-norm clipping; 0 disables it) and the
gradient computed by BPTT on a fresh batch of ``batch_size`` sequences each step.

A step whose loss or gradient is not finite, or that would make ``theta`` not finite (a huge or
NaN learning rate, an overflow), is rejected: ``theta`` and ``v`` stay as they were and the step
counts as a rejection (``reason``: ``non_finite_gradient`` or ``non_finite_update``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..curvature.protocol import CurvatureBackend
from ..tasks.base import Batch
from .first_order import FirstOrderStepInfo, check_shape, clipped_gradient, reject_non_finite

@dataclass
class SGDOptions:
    """``optimizer=sgd``: learning rate, momentum, clipping, batch size, L2 weight cost."""

    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    clip: float = 1.0
    batch_size: int = 100
    weight_cost: float = 0.0
    max_rejections: int = 20


SGDStepInfo = FirstOrderStepInfo


class SGD:
    """Momentum SGD over a flat parameter vector (in place)."""

    def __init__(self, theta: Tensor, backend: CurvatureBackend, opts: SGDOptions) -> None:
        self.theta = theta
        self.backend = backend
        self.opts = opts
        self.velocity = torch.zeros_like(theta)
        self.consecutive_rejections = 0

    def step(self, sample: Callable[[int], Batch]) -> SGDStepInfo:
        o = self.opts
        g, info = clipped_gradient(self.theta, self.backend, sample, o.batch_size, o.weight_cost, o.clip)
        if g is None:
            self.consecutive_rejections += 1
            return info
        # The same kernels as the in-place update, on copies: accepted steps are bit-identical.
        velocity = self.velocity.mul(o.momentum).add_(g, alpha=-o.lr)
        theta = self.theta.add(velocity)
        if not reject_non_finite(theta, info):
            self.consecutive_rejections += 1
            return info
        self.velocity.copy_(velocity)
        self.theta.copy_(theta)
        self.consecutive_rejections = 0
        return info

    def state_dict(self) -> dict:
        return {"velocity": self.velocity.detach().cpu().clone(), "consecutive_rejections": self.consecutive_rejections}

    def load_state_dict(self, state: dict) -> None:
        check_shape("velocity", state["velocity"], self.velocity)
        self.velocity.copy_(state["velocity"])
        self.consecutive_rejections = int(state["consecutive_rejections"])
