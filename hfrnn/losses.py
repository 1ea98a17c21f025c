"""Matched output non-linearity + loss pairs, each owning its output-space curvature.

Paper eq. 4 and section 3.1: the network emits output pre-activations ``s``; the prediction is
``g(s)``; the loss ``L(g(s); y)`` is convex in ``s`` when ``g`` matches ``L`` (Schraudolph 2002),
so the Gauss-Newton matrix ``J^T (L o g)'' J`` is positive semi-definite.

Every function takes ``s`` ``[T, B, K]``, targets ``y`` ``[T, B, K]`` and a ``mask`` ``[T, B]``
(the output units on the last axis; the elementwise pieces take ``dim``, the axis of the output
units, so that the fast RNN backend's feature-major ``[S, K, B]`` layout uses the same definitions),
and normalises by ``norm`` (the number of sequences ``B``, unless given), so the loss is the
paper's objective (section 2; ``specs/tasks.md``): each sequence's loss summed over its scored
steps, averaged over sequences.

=========  ==========  =============================  =====================================
name       g(s)        L per step                     (L o g)'' applied to a vector u
=========  ==========  =============================  =====================================
squared    s           1/2 |s - y|^2                  u
logistic   sigmoid(s)  -sum y log p + (1-y) log(1-p)  p (1 - p) u
softmax    softmax(s)  -sum y log p                   p * u - p (p . u)
=========  ==========  =============================  =====================================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("squared", "logistic", "softmax")


def _check(kind: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")


def per_step_loss(kind: str, s: Tensor, y: Tensor, dim: int = -1) -> Tensor:
    """Unmasked loss at every step: ``s`` summed over the output units on axis ``dim``, ``[T, B]``."""
    _check(kind)
    if kind == "squared":
        return 0.5 * (s - y).square().sum(dim)
    if kind == "logistic":
        return F.binary_cross_entropy_with_logits(s, y, reduction="none").sum(dim)
    return -(y * F.log_softmax(s, dim=dim)).sum(dim)


def loss(kind: str, s: Tensor, y: Tensor, mask: Tensor, norm: float | Tensor | None = None) -> Tensor:
    """The objective ``sum(mask * l) / norm`` (scalar); ``norm`` defaults to the number of sequences."""
    if norm is None:
        norm = max(mask.shape[1], 1)
    return (per_step_loss(kind, s, y) * mask).sum() / norm


def predict(kind: str, s: Tensor, dim: int = -1) -> Tensor:
    """The prediction ``g(s)``, shaped like ``s`` (output units on axis ``dim``)."""
    _check(kind)
    if kind == "squared":
        return s
    if kind == "logistic":
        return torch.sigmoid(s)
    return torch.softmax(s, dim=dim)


def grad_s(kind: str, s: Tensor, y: Tensor, mask: Tensor, norm: float | Tensor) -> Tensor:
    """``dL/ds`` ``[T, B, K]``: for all three matched pairs it is ``(g(s) - y) * mask / norm``."""
    return (predict(kind, s) - y) * (mask / norm).unsqueeze(-1)


def hessian_vp(kind: str, s: Tensor, u: Tensor, mask: Tensor, norm: float | Tensor) -> Tensor:
    """``(L o g)'' u`` at ``s`` for a perturbation ``u`` ``[T, B, K]`` of the pre-activations.

    The Hessian is block-diagonal over (t, b); the mask and normaliser enter linearly.
    """
    f, p = hessian_factors(kind, s, (mask / norm).unsqueeze(-1))
    return apply_hessian(f, p, u)


def hessian_factors(kind: str, s: Tensor, w: Tensor, dim: int = -1) -> tuple[Tensor, Tensor | None]:
    """Factors ``(f, p)`` of ``w (L o g)''`` at ``s``, such that the product with ``u`` is
    ``f * u`` (squared, logistic) or ``f * (u - sum_k p_k u_k)`` (softmax, ``p = softmax(s)``).

    ``w`` (per-step weights such as ``mask / norm``, broadcast against ``s``) is folded into ``f``;
    a curvature backend computes the factors once per prepared batch and reuses them.
    """
    _check(kind)
    if kind == "squared":
        return w, None
    p = predict(kind, s, dim)
    if kind == "logistic":
        return p * (1 - p) * w, None
    return p * w, p


def apply_hessian(f: Tensor, p: Tensor | None, u: Tensor, dim: int = -1) -> Tensor:
    """``w (L o g)'' u`` from the factors of :func:`hessian_factors` (output units on axis ``dim``)."""
    if p is None:
        return u * f
    return (u - (p * u).sum(dim, keepdim=True)) * f
