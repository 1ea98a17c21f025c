"""Dense reference matrices for tiny networks (tests only): explicit Jacobians in float64.

Builds, with nothing shared with the fast paths but the model's forward pass:

* ``J_s`` ``[TBK, N]`` and ``J_t`` ``[TBH, N]`` by ``torch.autograd.functional.jacobian``;
* the loss Hessian w.r.t. ``s`` ``[TBK, TBK]`` by autograd on the loss itself (not on the
  closed forms in :mod:`hfrnn.losses`);
* the structural Hessian w.r.t. ``t`` by autograd on the distance
  ``D(t) = scale * CE(sigma(2 t); sigma(2 t_n))`` summed over valid steps, whose second
  derivative is ``scale * (1 - tanh(t)^2)``;

and returns ``G = J_s^T H_L J_s`` and ``G_S = J_t^T H_D J_t``, both normalised like the paper's
objective: summed over steps, divided by the number of sequences ``B``. The normaliser is read
straight off the batch's shape here, not from :mod:`.protocol`, so that a wrong normaliser in the
fast paths cannot hide behind a shared helper.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.functional import hessian, jacobian

from .. import losses
from ..tasks.base import Batch
from .protocol import valid_steps


def dense_gauss_newton(forward: Callable[[Tensor], tuple[Tensor, Tensor]], theta: Tensor, batch: Batch,
                       loss_kind: str, structural_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Return ``(G, G_S)``, each ``[N, N]``, at ``theta`` on ``batch``.

    Args:
        forward: flat ``theta`` ``[N]`` -> ``(s [T, B, K], t [T, B, H])``.
    """
    norm = batch.mask.shape[1]  # sequences: the mean over sequences of per-sequence sums
    s0, t0 = forward(theta)
    J_s = jacobian(lambda th: forward(th)[0].reshape(-1), theta)
    J_t = jacobian(lambda th: forward(th)[1].reshape(-1), theta)
    H_L = hessian(lambda s: losses.loss(loss_kind, s.view_as(s0), batch.targets, batch.mask, norm),
                  s0.detach().reshape(-1))
    p_n = torch.sigmoid(2 * t0.detach())
    w = valid_steps(batch.mask).unsqueeze(-1) * (structural_scale / norm)

    def distance(t_flat: Tensor) -> Tensor:
        z = 2 * t_flat.view_as(t0)
        return (w * F.binary_cross_entropy_with_logits(z, p_n, reduction="none")).sum()

    H_D = hessian(distance, t0.detach().reshape(-1))
    return J_s.T @ H_L @ J_s, J_t.T @ H_D @ J_t


def dense_gradient(forward: Callable[[Tensor], tuple[Tensor, Tensor]], theta: Tensor, batch: Batch,
                   loss_kind: str) -> Tensor:
    """``J_s^T dL/ds`` from the explicit Jacobian ``[N]``."""
    norm = batch.mask.shape[1]
    s0, _ = forward(theta)
    J_s = jacobian(lambda th: forward(th)[0].reshape(-1), theta)
    s = s0.detach().requires_grad_(True)
    (g_s,) = torch.autograd.grad(losses.loss(loss_kind, s, batch.targets, batch.mask, norm), s)
    return J_s.T @ g_s.reshape(-1)
