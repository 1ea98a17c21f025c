"""The curvature-product protocol: all that the optimizers know about a model.

HF needs, for a flat parameter vector ``theta`` ``[N]``:

* the objective ``f(theta)`` on a batch (forward only) and its gradient;
* after :meth:`CurvatureBackend.prepare` on a fixed curvature batch, products
  ``(G + w G_S) v`` with the Gauss-Newton matrix (paper eq. 7)

      G   = (1/n) sum_{t,b} J_{s,theta}^T (L o g)'' J_{s,theta}
      G_S = (1/n) sum_{t,b} J_{t,theta}^T (D o e)'' J_{t,theta}

  where ``s`` are output pre-activations, ``t`` hidden pre-activations, ``n`` the number of
  *sequences* in the batch, and ``w = lambda * mu`` the structural-damping weight (section 3.2).

The objective is the paper's (section 2): a sequence's loss is the *sum* of its per-step losses
over the scored steps, and the objective is the *mean over sequences*::

    f(theta) = (1/B) sum_b sum_t mask[t, b] * l(s[t, b]; y[t, b])

G, G_S and the gradient are normalised the same way, so lambda and mu mean what they mean in the
paper and the released code, whatever the number of scored steps per sequence. (Dividing by the
number of scored steps instead, as hfrnn < 0.3 did, turns the paper's (lambda, mu) into
(n lambda, mu / n) with n scored steps per sequence.) Per-step means are a display unit only
(:func:`steps_per_sequence`).

Tikhonov damping ``lambda I`` is not part of the product: CG's matvec adds it.

Losses are normalised by ``norm`` (default: the batch's number of sequences); when a large batch
is processed in chunks, or sharded across processes, the caller passes the whole batch's count so
the parts add up.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ..linalg.params import ParamLayout
from ..tasks.base import Batch


class CurvatureBackend(Protocol):
    """Objective, gradient and Gauss-Newton products for one model and loss."""

    layout: ParamLayout

    def loss(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        """The objective: summed loss over scored steps, divided by the number of sequences (or ``norm``)."""
        ...

    def loss_and_grad(self, theta: Tensor, batch: Batch, norm: float | None = None) -> tuple[float, Tensor]:
        """The loss and its gradient ``[N]``."""
        ...

    def prepare(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        """Fix the curvature batch and point; run and cache its forward pass. Returns its loss.

        ``norm`` (default: the batch's number of sequences) normalises the loss and every later
        product, so that the shards of a batch split across processes add up to the whole.
        """
        ...

    def product(self, v: Tensor, structural_weight: float) -> Tensor:
        """``(G + structural_weight * G_S) v`` ``[N]`` at the prepared point and batch."""
        ...


def valid_steps(mask: Tensor) -> Tensor:
    """``[T, B]`` 1 at every step up to each sequence's last scored step, else 0.

    Structural damping penalises changes of the hidden states that can reach the loss; steps past
    a padded sequence's end cannot, so they are left out.
    """
    return (mask.flip(0).cumsum(0).flip(0) > 0).to(mask.dtype)


def structural_hessian(h: Tensor, mask: Tensor, norm: float | Tensor, scale: float) -> Tensor:
    """Diagonal of ``(D o e)''`` at the hidden pre-activations, ``[T, B, H]``, normalised.

    For tanh units the distance D is the matching loss of tanh read as a rescaled logistic,
    ``h = 2 sigma(2t) - 1``: the cross-entropy between ``sigma(2t)`` and its value at
    ``theta_n``, whose second derivative in ``t`` is ``1 - h^2``. ``scale`` multiplies it
    (0.25 gives the released 2011 code's ``0.25 (1 - h^2)``).
    """
    return (scale / norm) * (1 - h * h) * valid_steps(mask).unsqueeze(-1)


# (D o e)'' per hidden unit as a function of the hidden state ``h = e(t)``, for each supported
# hidden nonlinearity ``e`` and its matching distance ``D`` (section 3.2):
#   tanh      h = tanh(t) = 2 sigma(2t) - 1, D the cross-entropy of sigma(2t):   1 - h^2
#   logistic  h = sigma(t), D the cross-entropy of sigma(t):                      h (1 - h)
#   linear    h = t, D = 1/2 |h - h_n|^2 (penalises the hidden states directly):   1
HIDDEN_NONLINEARITIES = {
    "tanh": (torch.tanh, lambda h: 1 - h * h),
    "logistic": (torch.sigmoid, lambda h: h * (1 - h)),
    "linear": (lambda t: t, lambda h: torch.ones_like(h)),
}


def structural_hessian_of(kind: str, t: Tensor, mask: Tensor, norm: float | Tensor, scale: float) -> Tensor:
    """:func:`structural_hessian` for hidden pre-activations ``t`` ``[T, B, H]`` of ``kind`` units.

    ``tanh`` is exactly :func:`structural_hessian` of ``tanh(t)``; an unknown kind raises.
    """
    if kind == "tanh":
        return structural_hessian(torch.tanh(t), mask, norm, scale)
    if kind not in HIDDEN_NONLINEARITIES:
        raise ValueError(f"unknown hidden nonlinearity {kind!r} for structural damping; supported: "
                         f"{', '.join(HIDDEN_NONLINEARITIES)} (or turn structural damping off)")
    e, curv = HIDDEN_NONLINEARITIES[kind]
    return (scale / norm) * curv(e(t)) * valid_steps(mask).unsqueeze(-1)


def sequence_count(batch: Batch) -> float:
    """The objective's normaliser: the number of sequences ``B`` (at least 1 to avoid 0/0)."""
    return float(max(batch.size, 1))


def steps_per_sequence(batch: Batch) -> float:
    """Mean number of scored steps per sequence: divides a per-sequence loss into a per-step one.

    Display only: ``loss_per_step = loss / steps_per_sequence`` is the mean loss over scored
    steps, the unit comparable across T.
    """
    return max(float(batch.mask.sum()), 1.0) / max(batch.size, 1)


def chunked_loss_and_grad(backend: CurvatureBackend, theta: Tensor, batch: Batch,
                          chunk: int) -> tuple[float, Tensor]:
    """Loss and gradient of a large batch, ``chunk`` sequences at a time (bounded memory)."""
    norm = sequence_count(batch)
    total, grad = 0.0, torch.zeros_like(theta)
    for part in batch.split(chunk):
        f, g = backend.loss_and_grad(theta, part, norm)
        total += f
        grad += g
    return total, grad


def chunked_loss(backend: CurvatureBackend, theta: Tensor, batch: Batch, chunk: int) -> float:
    """Loss of a large batch, ``chunk`` sequences at a time."""
    norm = sequence_count(batch)
    return sum(backend.loss(theta, part, norm) for part in batch.split(chunk))
