"""Adam (Kingma & Ba 2015) with gradient-norm clipping: a modern first-order baseline.

On a fresh batch of ``batch_size`` sequences each step, with ``g`` the BPTT gradient (plus the
L2 term ``weight_cost * theta``) and ``k`` the number of accepted steps so far::

    g     <- g * min(1, clip / |g|)                   (clip = 0 disables clipping)
    m     <- beta1 m + (1 - beta1) g
    v     <- beta2 v + (1 - beta2) g^2
    theta <- theta - lr * m_hat / (sqrt(v_hat) + eps),
             m_hat = m / (1 - beta1^k),  v_hat = v / (1 - beta2^k)

A step whose loss or gradient is not finite, or that would make ``theta`` not finite (a NaN
learning rate, an overflow), is rejected and leaves ``theta``, ``m``, ``v`` and ``k`` untouched
(a NaN would otherwise poison the moment estimates forever); the training loop
ends the run after ``max_rejections`` consecutive rejections. Same interface as
:class:`hfrnn.optim.sgd.SGD`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..curvature.protocol import CurvatureBackend
from ..tasks.base import Batch
from .first_order import FirstOrderStepInfo, check_shape, clipped_gradient, reject_non_finite

AdamStepInfo = FirstOrderStepInfo  # the same record: loss_before, grad_norm, accepted, reason, minibatches


@dataclass
class AdamOptions:
    """``optimizer=adam``: step size, moment decay rates, clipping, batch size, L2 weight cost."""

    name: str = "adam"
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    clip: float = 1.0
    batch_size: int = 100
    weight_cost: float = 0.0
    max_rejections: int = 20


class Adam:
    """Adam over a flat parameter vector ``theta`` ``[N]`` (updated in place).

    Args:
        theta: the parameters ``[N]``.
        backend: supplies ``loss_and_grad`` (any curvature backend).
        opts: the options.
    """

    def __init__(self, theta: Tensor, backend: CurvatureBackend, opts: AdamOptions) -> None:
        self.theta = theta
        self.backend = backend
        self.opts = opts
        self.m = torch.zeros_like(theta)
        self.v = torch.zeros_like(theta)
        self.k = 0  # accepted steps, for the bias corrections
        self.consecutive_rejections = 0

    def step(self, sample: Callable[[int], Batch]) -> AdamStepInfo:
        """Draw a batch, compute the gradient and take one Adam step (unless it is not finite)."""
        o = self.opts
        g, info = clipped_gradient(self.theta, self.backend, sample, o.batch_size, o.weight_cost, o.clip)
        if g is None:
            self.consecutive_rejections += 1
            return info
        k = self.k + 1
        # The same kernels as an in-place update, on copies: accepted steps are bit-identical.
        m = self.m.mul(o.beta1).add_(g, alpha=1 - o.beta1)
        v = self.v.mul(o.beta2).addcmul_(g, g, value=1 - o.beta2)
        m_hat = m / (1 - o.beta1 ** k)
        v_hat = v / (1 - o.beta2 ** k)
        theta = self.theta.addcdiv(m_hat, v_hat.sqrt_().add_(o.eps), value=-o.lr)
        if not reject_non_finite(theta, info):
            self.consecutive_rejections += 1
            return info
        self.k = k
        self.m.copy_(m)
        self.v.copy_(v)
        self.theta.copy_(theta)
        self.consecutive_rejections = 0
        return info

    def state_dict(self) -> dict:
        # On the CPU, so that a checkpoint loads on any device (load_state_dict copies back).
        return {"m": self.m.detach().cpu().clone(), "v": self.v.detach().cpu().clone(), "k": self.k,
                "consecutive_rejections": self.consecutive_rejections}

    def load_state_dict(self, state: dict) -> None:
        check_shape("m", state["m"], self.m)
        check_shape("v", state["v"], self.v)
        self.m.copy_(state["m"])
        self.v.copy_(state["v"])
        self.k = int(state["k"])
        self.consecutive_rejections = int(state["consecutive_rejections"])
