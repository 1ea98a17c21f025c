"""Generic curvature products through ``torch.func``, for any model emitting ``(s, t)``.

The model's forward maps inputs ``[T, B, n]`` to output pre-activations ``s`` ``[T, B, K]`` and
hidden pre-activations ``t`` ``[T, B, H]`` (tanh hidden units for the structural term). Then::

    (R s, R t) = jvp(f, theta; v)                 # J v, forward-mode
    u_s = (L o g)'' R s,   u_t = w (D o e)'' R t  # block-diagonal output-space curvature
    (G + w G_S) v = vjp(f, theta)(u_s, u_t)       # J^T u, the vjp built once per batch

It is slower than the hand-written RNN backend but needs nothing of the model beyond its forward
pass, so it serves new architectures and cross-checks the fast path.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp, vjp

from .. import losses
from ..linalg.params import ParamLayout
from ..tasks.base import Batch
from .protocol import sequence_count, structural_hessian


class GenericCurvature:
    """:class:`~hfrnn.curvature.protocol.CurvatureBackend` for any ``nn.Module`` returning ``(s, t)``.

    Args:
        model: the module (its own parameter values are ignored; ``theta`` is used instead).
        loss_kind: ``squared`` | ``logistic`` | ``softmax``.
        structural_scale: factor on ``(D o e)''`` (see ``structural_hessian``).
    """

    def __init__(self, model: nn.Module, loss_kind: str, structural_scale: float = 1.0) -> None:
        self.model = model
        self.layout = ParamLayout.of(dict(model.named_parameters()))
        self.loss_kind = loss_kind
        self.structural_scale = structural_scale
        self._cache: tuple | None = None

    def _f(self, x: Tensor):
        return lambda params: functional_call(self.model, params, (x,))

    def loss(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        with torch.no_grad():
            s, _ = self._f(batch.inputs)(self.layout.unflatten(theta))
        return float(losses.loss(self.loss_kind, s, batch.targets, batch.mask,
                                 sequence_count(batch) if norm is None else norm))

    def loss_and_grad(self, theta: Tensor, batch: Batch, norm: float | None = None) -> tuple[float, Tensor]:
        norm = sequence_count(batch) if norm is None else norm
        th = theta.detach().requires_grad_(True)
        s, _ = self._f(batch.inputs)(self.layout.unflatten(th))
        f = losses.loss(self.loss_kind, s, batch.targets, batch.mask, norm)
        (g,) = torch.autograd.grad(f, th)
        return float(f.detach()), g

    def prepare(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        norm = sequence_count(batch) if norm is None else norm
        params = self.layout.unflatten(theta.detach().clone())
        f = self._f(batch.inputs)
        (s, t), vjp_fn = vjp(f, params)
        s, t = s.detach(), t.detach()
        s_hess = structural_hessian(torch.tanh(t), batch.mask, norm, self.structural_scale)
        self._cache = (params, f, vjp_fn, batch, norm, s, s_hess)
        return float(losses.loss(self.loss_kind, s, batch.targets, batch.mask, norm))

    def product(self, v: Tensor, structural_weight: float) -> Tensor:
        if self._cache is None:
            raise RuntimeError("prepare() must be called before product()")
        params, f, vjp_fn, batch, norm, s, s_hess = self._cache
        _, (Rs, Rt) = jvp(f, (params,), (self.layout.unflatten(v),))
        u_s = losses.hessian_vp(self.loss_kind, s, Rs, batch.mask, norm)
        u_t = Rt * s_hess * structural_weight
        (g,) = vjp_fn((u_s, u_t))
        return self.layout.flatten(g).detach()
