"""Fast curvature products for the tanh RNN: Pearlmutter's R-operator and hand-written BPTT.

One forward pass over the curvature batch caches ``h`` ``[T, B, H]`` and ``d = 1 - h^2``; every
product ``(G + w G_S) v`` then costs one R-forward and one backward pass (section 3.1):

R-forward (the directional derivative of eq. 1-3 along ``v = (V_hx, V_hh, v_bh, v_init, V_yh, v_by)``)::

    R t_i = V_hx x_i + v_bh + V_hh h_{i-1} + W_hh R h_{i-1}    (v_init instead of V_hh h_0)
    R h_i = d_i * R t_i
    R s_i = V_yh h_i + v_by + W_yh R h_i

Backward (BPTT) with output error ``e_s = (L o g)'' R s`` and, for structural damping, the extra
hidden error ``e_t = w (D o e)'' R t`` added at every step's pre-activations (section 3.2)::

    dt_i = (W_yh^T e_s_i + W_hh^T dt_{i+1}) * d_i + e_t_i

All terms that do not go through the recurrence are batched into single matrix products outside
the time loop, so the loop holds one ``addmm`` and one elementwise product per step. Every batch is
run through these loops a cache-sized block of sequences at a time (:mod:`.blocking`) and the
blocks' sums are added.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import losses
from ..linalg.params import ParamLayout
from ..models.rnn import unroll_states
from ..tasks.base import Batch
from .blocking import auto_block
from .protocol import sequence_count, structural_hessian


def bptt(p: dict[str, Tensor], x: Tensor, h: Tensor, d: Tensor, e_s: Tensor,
         e_t: Tensor | None, layout: ParamLayout) -> Tensor:
    """Backpropagate output errors through time; returns the flat parameter gradient ``[N]``.

    Args:
        p: parameters by name. x: inputs ``[T, B, n]``. h, d: cached ``tanh(t)`` and ``1 - h^2``.
        e_s: error at the output pre-activations ``[T, B, K]``.
        e_t: extra error added at the hidden pre-activations ``[T, B, H]`` (or None).
    """
    T, B, H = h.shape
    K = e_s.shape[-1]
    e_s2 = e_s.reshape(T * B, K)
    dh_out = (e_s2 @ p["W_yh"]).view(T, B, H)  # every step's output error at once
    dt = torch.empty_like(h)
    W_hh = p["W_hh"]
    # dh_out becomes the total error at h_i in place; one fused multiply(-add) per step then
    # gives dt_i (with the structural error e_t_i folded into the same kernel).
    for i in range(T - 1, -1, -1):
        if i < T - 1:
            dh_out[i].addmm_(dt[i + 1], W_hh)
        if e_t is None:
            torch.mul(dh_out[i], d[i], out=dt[i])
        else:
            torch.addcmul(e_t[i], dh_out[i], d[i], out=dt[i])
    out = torch.empty(layout.numel, dtype=h.dtype, device=h.device)
    g = layout.unflatten(out)
    dt2, h2 = dt.view(T * B, H), h.view(T * B, H)
    torch.mm(e_s2.t(), h2, out=g["W_yh"])
    torch.sum(e_s2, 0, out=g["b_y"])
    torch.mm(dt2.t(), x.reshape(T * B, -1), out=g["W_hx"])
    torch.sum(dt2, 0, out=g["b_h"])
    torch.mm(dt[1:].reshape(-1, H).t(), h[:-1].reshape(-1, H), out=g["W_hh"])
    torch.sum(dt[0], 0, out=g["b_init"])
    return out


def r_forward(p: dict[str, Tensor], v: dict[str, Tensor], x: Tensor, h: Tensor,
              d: Tensor) -> tuple[Tensor, Tensor]:
    """The R-operator forward pass: ``(R s [T, B, K], R t [T, B, H])`` along direction ``v``."""
    T, B, H = h.shape
    Rt = torch.addmm(v["b_h"], x.reshape(T * B, -1), v["W_hx"].t()).view(T, B, H)
    if T > 1:
        Rt[1:] += (h[:-1].reshape(-1, H) @ v["W_hh"].t()).view(T - 1, B, H)
    Rt[0] += v["b_init"]
    Rh = torch.empty_like(Rt)
    W_hh_t = p["W_hh"].t()
    torch.mul(Rt[0], d[0], out=Rh[0])
    for i in range(1, T):
        Rt[i].addmm_(Rh[i - 1], W_hh_t)
        torch.mul(Rt[i], d[i], out=Rh[i])
    Rs = torch.addmm(v["b_y"], h.view(T * B, H), v["W_yh"].t())
    Rs.addmm_(Rh.view(T * B, H), p["W_yh"].t())
    return Rs.view(T, B, -1), Rt


class RNNFastCurvature:
    """:class:`~hfrnn.curvature.protocol.CurvatureBackend` for :class:`hfrnn.models.rnn.RNN`.

    Args:
        layout: the RNN's parameter layout.
        loss_kind: ``squared`` | ``logistic`` | ``softmax``.
        structural_scale: factor on ``(D o e)'' = 1 - h^2`` (see ``structural_hessian``).
        block: sequences per pass through the time loop; 0 chooses by
            :func:`~hfrnn.curvature.blocking.auto_block` (cache-sized on a CPU, whole batch on a GPU).
    """

    def __init__(self, layout: ParamLayout, loss_kind: str, structural_scale: float = 1.0,
                 block: int = 0) -> None:
        if block < 0:
            raise ValueError(f"block must be >= 0 (0 = automatic), got {block}")
        self.layout = layout
        self.loss_kind = loss_kind
        self.structural_scale = structural_scale
        self.block = block
        self.hidden = dict(zip(layout.names, layout.shapes))["W_hh"][0]
        self._cache: tuple | None = None

    def _blocks(self, batch: Batch) -> list[Batch]:
        """``batch`` split into the blocks that one pass of the time loop handles."""
        T, B = batch.mask.shape
        n = self.block or auto_block(T, self.hidden, batch.inputs.dtype, batch.inputs.device)
        return batch.split(n) if 0 < n < B else [batch]

    def loss(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        norm = sequence_count(batch) if norm is None else norm
        p = self.layout.unflatten(theta)
        total = 0.0
        for part in self._blocks(batch):
            s, _ = unroll_states(p, part.inputs)
            total += float(losses.loss(self.loss_kind, s, part.targets, part.mask, norm))
        return total

    def loss_and_grad(self, theta: Tensor, batch: Batch, norm: float | None = None) -> tuple[float, Tensor]:
        norm = sequence_count(batch) if norm is None else norm
        p = self.layout.unflatten(theta)
        total, grad = 0.0, None
        for part in self._blocks(batch):
            s, h = unroll_states(p, part.inputs)
            total += float(losses.loss(self.loss_kind, s, part.targets, part.mask, norm))
            e_s = losses.grad_s(self.loss_kind, s, part.targets, part.mask, norm)
            g = bptt(p, part.inputs, h, 1 - h * h, e_s, None, self.layout)
            grad = g if grad is None else grad.add_(g)
        return total, grad

    def prepare(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        norm = sequence_count(batch) if norm is None else norm
        p = self.layout.unflatten(theta.detach().clone())
        blocks, total = [], 0.0
        for part in self._blocks(batch):
            s, h = unroll_states(p, part.inputs)
            s_hess = structural_hessian(h, part.mask, norm, self.structural_scale)
            blocks.append((part, s, h, 1 - h * h, s_hess))
            total += float(losses.loss(self.loss_kind, s, part.targets, part.mask, norm))
        self._cache = (p, norm, blocks)
        return total

    def product(self, v: Tensor, structural_weight: float) -> Tensor:
        if self._cache is None:
            raise RuntimeError("prepare() must be called before product()")
        p, norm, blocks = self._cache
        vp = self.layout.unflatten(v)
        out = None
        for part, s, h, d, s_hess in blocks:
            Rs, Rt = r_forward(p, vp, part.inputs, h, d)
            e_s = losses.hessian_vp(self.loss_kind, s, Rs, part.mask, norm)
            e_t = Rt.mul_(s_hess).mul_(structural_weight) if structural_weight else None
            Gv = bptt(p, part.inputs, h, d, e_s, e_t, self.layout)
            out = Gv if out is None else out.add_(Gv)
        return out
