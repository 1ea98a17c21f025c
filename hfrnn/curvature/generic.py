"""Generic curvature products through ``torch.func``, for any model emitting ``(s, t)`` or ``s``.

The model's forward maps inputs ``[T, B, n]`` to output pre-activations ``s`` ``[T, B, K]`` and
hidden pre-activations ``t`` ``[T, B, H]``, whose units' nonlinearity (``tanh``, ``logistic`` or
``linear``: :data:`~hfrnn.curvature.protocol.HIDDEN_NONLINEARITIES`) fixes the structural term; a
model that returns ``s`` alone serves without structural damping. Then::

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
from .protocol import sequence_count, structural_hessian_of


def _outputs(out: Tensor | tuple) -> tuple:
    """A forward's result as a tuple: ``(s, t)``, or ``(s,)`` for a model that returns ``s`` alone."""
    if isinstance(out, Tensor):
        return (out,)
    if isinstance(out, (tuple, list)) and len(out) in (1, 2) and all(isinstance(o, Tensor) for o in out):
        return tuple(out)
    raise TypeError("the model's forward must return the output pre-activations s [T, B, K], or "
                    f"(s, t) with the hidden pre-activations t [T, B, H]; got {type(out).__name__}")


class GenericCurvature:
    """:class:`~hfrnn.curvature.protocol.CurvatureBackend` for any ``nn.Module`` returning ``(s, t)`` or ``s``.

    Args:
        model: the module (its own parameter values are ignored; ``theta`` is used instead).
        loss_kind: ``squared`` | ``logistic`` | ``softmax``.
        structural_scale: factor on ``(D o e)''`` (see ``structural_hessian``).
        hidden_nonlinearity: the units behind ``t`` (``tanh``, ``logistic``, ``linear``).
    """

    def __init__(self, model: nn.Module, loss_kind: str, structural_scale: float = 1.0,
                 hidden_nonlinearity: str = "tanh") -> None:
        self.model = model
        self.layout = ParamLayout.of(dict(model.named_parameters()))
        self.loss_kind = loss_kind
        self.structural_scale = structural_scale
        self.hidden_nonlinearity = hidden_nonlinearity
        self._cache: tuple | None = None

    def _f(self, x: Tensor):
        return lambda params: _outputs(functional_call(self.model, params, (x,)))

    def outputs(self, theta: Tensor, x: Tensor) -> Tensor:
        """The output pre-activations ``s`` ``[T, B, K]`` at ``theta`` (no graph)."""
        with torch.no_grad():
            return self._f(x)(self.layout.unflatten(theta))[0]

    def loss(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        with torch.no_grad():
            s = self._f(batch.inputs)(self.layout.unflatten(theta))[0]
        return float(losses.loss(self.loss_kind, s, batch.targets, batch.mask,
                                 sequence_count(batch) if norm is None else norm))

    def loss_and_grad(self, theta: Tensor, batch: Batch, norm: float | None = None) -> tuple[float, Tensor]:
        norm = sequence_count(batch) if norm is None else norm
        th = theta.detach().requires_grad_(True)
        s = self._f(batch.inputs)(self.layout.unflatten(th))[0]
        f = losses.loss(self.loss_kind, s, batch.targets, batch.mask, norm)
        (g,) = torch.autograd.grad(f, th)
        return float(f.detach()), g

    def prepare(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        norm = sequence_count(batch) if norm is None else norm
        params = self.layout.unflatten(theta.detach().clone())
        f = self._f(batch.inputs)
        outs, vjp_fn = vjp(f, params)
        s = outs[0].detach()
        s_hess = None if len(outs) == 1 else structural_hessian_of(
            self.hidden_nonlinearity, outs[1].detach(), batch.mask, norm, self.structural_scale)
        self._cache = (params, f, vjp_fn, batch, norm, s, s_hess)
        return float(losses.loss(self.loss_kind, s, batch.targets, batch.mask, norm))

    def product(self, v: Tensor, structural_weight: float) -> Tensor:
        if self._cache is None:
            raise RuntimeError("prepare() must be called before product()")
        params, f, vjp_fn, batch, norm, s, s_hess = self._cache
        if s_hess is None and structural_weight:
            raise ValueError("structural damping needs the hidden pre-activations: the model's forward must "
                             "return (s, t), or turn structural damping off")
        _, R = jvp(f, (params,), (self.layout.unflatten(v),))
        u = (losses.hessian_vp(self.loss_kind, s, R[0], batch.mask, norm),)
        if s_hess is not None:  # a weight of 0 still goes through, as (s, t) models always did
            u += (R[1] * s_hess * structural_weight,)
        (g,) = vjp_fn(u)
        return self.layout.flatten(g).detach()
