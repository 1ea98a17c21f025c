"""Fast curvature products for the tanh RNN: Pearlmutter's R-operator and hand-written BPTT.

One forward pass over the curvature batch caches the hidden states ``h`` and ``d = 1 - h^2``;
every product ``(G + w G_S) v`` then costs one R-forward and one backward pass (section 3.1):

R-forward (the directional derivative of eq. 1-3 along ``v = (V_hx, V_hh, v_bh, v_init, V_yh, v_by)``)::

    R t_i = V_hx x_i + v_bh + V_hh h_{i-1} + W_hh R h_{i-1}    (v_init instead of V_hh h_0)
    R h_i = d_i * R t_i
    R s_i = V_yh h_i + v_by + W_yh R h_i

Backward (BPTT) with output error ``e_s = (L o g)'' R s`` and, for structural damping, the extra
hidden error ``e_t = w (D o e)'' R t = c valid_i R h_i`` (``c = w scale / n``; section 3.2)::

    dt_i = (W_yh^T e_s_i + W_hh^T dt_{i+1}) * d_i + e_t_i

How the work is laid out (the floor is the ``4 T`` products ``[B, H] @ [H, H]`` of a product,
``3 T`` of a gradient; ``benchmarks/bench_products.py`` measures against it):

* Everything happens inside the time loops, on ``[B, H]`` slices that stay in cache; nothing
  streams a whole ``[T, B, H]`` tensor through memory outside them.
* Each step's row of the state buffer (:func:`hfrnn.models.rnn.state_buffer`) holds
  ``[x_i | [i == 0] | 1 | h_{i-1} | R h_{i-1}]``. One product of that row with
  ``[V_hx | v_init | v_bh | V_hh | W_hh]^T`` is the whole ``R t_i``: the narrow input term, both
  biases, ``V_hh h_{i-1}`` and the recurrence, at the cost of a few extra columns.
* Backward, one product ``[dt_{i+1} | e_s_i] @ [W_hh ; W_yh]`` gives the error at ``h_i``, and
  one ``addmm_`` of the same ``[dt_{i+1} | e_s_i]^T`` with the row ``[x_{i+1} | [i+1 == 0] | 1 |
  h_i]`` accumulates every weight gradient of that step (``W_hx, b_init, b_h, W_hh`` from
  ``dt``, and ``b_y, W_yh`` from ``e_s``) into one small ``[H + K, n + 2 + H]`` matrix.
* Output-side work (``s``, ``R s``, the loss Hessian, ``e_s``) runs only at the steps where some
  sequence is scored (read off the mask once per prepared batch), and no step after the last
  scored one is run at all (nothing there reaches the loss; structural damping's weight is zero
  there too, see :func:`~.protocol.valid_steps`).

Every batch is run a block of sequences at a time (:mod:`.blocking`); all blocks accumulate into
the same small gradient matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import losses
from ..linalg.params import ParamLayout
from ..models.rnn import hidden_weights, output_weights, run_states, state_buffer
from ..tasks.base import Batch
from .blocking import auto_block
from .protocol import sequence_count, valid_steps


@dataclass
class ScoredSteps:
    """Where a block's loss lives: ``steps`` (time steps where any sequence is scored, ascending),
    ``pos`` (per step up to the last scored one: its index in ``steps``, or -1), and the mask and
    targets at those steps ``[S, B]``, ``[S, B, K]``."""

    steps: list[int]
    pos: list[int]
    mask: Tensor
    targets: Tensor

    @classmethod
    def of(cls, batch: Batch) -> "ScoredSteps":
        steps = torch.nonzero(batch.mask.ne(0).any(1)).flatten().tolist()
        pos = [-1] * (steps[-1] + 1 if steps else 0)
        for j, i in enumerate(steps):
            pos[i] = j
        idx = torch.tensor(steps, dtype=torch.long, device=batch.mask.device)
        return cls(steps, pos, batch.mask.index_select(0, idx), batch.targets.index_select(0, idx))

    @property
    def n_steps(self) -> int:
        """Steps to run: up to and including the last scored step."""
        return len(self.pos)


def forward_block(p: dict[str, Tensor], x: Tensor, sc: ScoredSteps, extra: int = 0) -> tuple[Tensor, Tensor]:
    """Forward pass up to the last scored step: the state buffer and ``s`` at the scored steps."""
    H = p["W_hh"].shape[0]
    Z = state_buffer(x, H, extra, sc.n_steps)
    s = x.new_empty(len(sc.steps), x.shape[1], p["W_yh"].shape[0])
    run_states(Z, hidden_weights(p), sc.n_steps, W_out=output_weights(p), pos=sc.pos, s=s)
    return Z, s


def r_forward_steps(Z: Tensor, d: Tensor, V: Tensor, V_out: Tensor, pos: list[int], Rs: Tensor,
                    Rt: Tensor | None = None) -> None:
    """The R-forward loop in place: ``R h_i`` into the last ``H`` columns of ``Z[i + 1]``.

    Args:
        Z: state buffer ``[steps + 1, B, n + 2 + 2H]`` holding ``h`` (and zero ``R h`` in row 0).
        d: ``1 - h^2`` ``[steps, B, H]``.
        V: ``[V_hx | v_init | v_bh | V_hh | W_hh]`` ``[H, n + 2 + 2H]``.
        V_out: ``[v_by | V_yh | W_yh]`` ``[K, 1 + 2H]``.
        pos: per step, its row in ``Rs`` ``[S, B, K]`` (or -1: not wanted).
        Rt: optional ``[steps, B, H]`` that receives ``R t``.
    """
    H = d.shape[-1]
    A = Z.shape[-1] - H  # n + 2 + H: the columns before R h
    a = A - H
    V_t, V_out_t = V.t(), V_out.t()
    rt = Z.new_empty(Z.shape[1], H)
    for i in range(len(pos)):
        r = rt if Rt is None else Rt[i]
        torch.mm(Z[i], V_t, out=r)
        torch.mul(r, d[i], out=Z[i + 1, :, A:])
        if pos[i] >= 0:
            torch.mm(Z[i + 1, :, a - 1:], V_out_t, out=Rs[pos[i]])


def bptt_steps(Z: Tensor, ES: Tensor, pos: list[int], W_hh: Tensor, W_back: Tensor, acc: Tensor,
               d: Tensor | None = None, c: float = 0.0, cv: Tensor | None = None,
               full: list[bool] | None = None) -> None:
    """Backpropagation through time, accumulating every weight gradient into ``acc``.

    Args:
        Z: state buffer (rows ``[x_i | [i == 0] | 1 | h_{i-1} | (R h_{i-1})]``).
        ES: ``[S, B, H + K]``; ``ES[j, :, H:]`` holds the output error at the ``j``-th scored step
            and ``ES[S - 1, :, :H]`` must be zero; the loop writes ``dt_{i+1}`` into
            ``ES[pos[i], :, :H]`` so that one product handles both.
        pos: per step up to the last scored one, its index in ``ES`` (or -1).
        W_hh: ``[H, H]``; W_back: ``[W_hh ; W_yh]`` ``[H + K, H]``.
        acc: ``[H + K, n + 2 + H]`` accumulator; receives ``[dt_i | e_s_{i-1}]^T Z[i]`` summed.
        d: ``1 - h^2`` ``[steps, B, H]`` (curvature product), or None to form it from ``h`` in
            ``Z`` (gradient).
        c, cv, full: structural damping (product only): ``e_t_i = c valid_i R h_i``; ``cv``
            ``[steps, B, 1]`` is ``c * valid`` and ``full[i]`` says that step ``i`` is valid for
            every sequence (then ``c`` is used alone).
    """
    H = W_hh.shape[0]
    A = acc.shape[1]
    a = A - H
    B = Z.shape[1]
    dh = Z.new_empty(B, H)
    P = Z.new_empty(B, H)  # dt_{i+1} when step i is not scored
    tmp = Z.new_empty(B, H) if d is None else None
    acc_h = acc[:H]
    for i in range(len(pos) - 1, -1, -1):
        row = Z[i + 1, :, :A]
        j = pos[i]
        if j >= 0:
            cur = ES[j]
            torch.mm(cur, W_back, out=dh)
            acc.addmm_(cur.t(), row)
        else:
            torch.mm(P, W_hh, out=dh)
            acc_h.addmm_(P.t(), row)
        tgt = ES[pos[i - 1], :, :H] if i > 0 and pos[i - 1] >= 0 else P
        if d is None:  # dt_i = dh_i * (1 - h_i^2)
            h_i = Z[i + 1, :, a:A]
            torch.mul(dh, h_i, out=tmp)
            torch.addcmul(dh, tmp, h_i, value=-1, out=tgt)
        elif not c:
            torch.mul(dh, d[i], out=tgt)
        else:
            dh.mul_(d[i])
            Rh_i = Z[i + 1, :, A:]
            if full[i]:
                torch.add(dh, Rh_i, alpha=c, out=tgt)
            else:
                torch.addcmul(dh, Rh_i, cv[i], out=tgt)
    if pos:
        acc_h.addmm_(P.t(), Z[0, :, :A])


def error_buffer(e_s: Tensor, H: int) -> Tensor:
    """``[S, B, H + K]`` with ``e_s`` in the last ``K`` columns and zero ``dt`` at the last scored step."""
    S, B, K = e_s.shape
    ES = e_s.new_empty(S, B, H + K)
    ES[:, :, H:] = e_s
    ES[-1, :, :H] = 0
    return ES


def r_forward(p: dict[str, Tensor], v: dict[str, Tensor], x: Tensor, h: Tensor,
              d: Tensor) -> tuple[Tensor, Tensor]:
    """The R-operator forward pass: ``(R s [T, B, K], R t [T, B, H])`` along direction ``v``, at
    every step (the backend itself runs it at the scored steps only)."""
    T, B, n = x.shape
    H = h.shape[-1]
    Z = state_buffer(x, H, H)
    Z[1:, :, n + 2:n + 2 + H] = h
    Rs = x.new_empty(T, B, p["W_yh"].shape[0])
    Rt = x.new_empty(T, B, H)
    r_forward_steps(Z, d, direction_weights(p, v), direction_output_weights(p, v), list(range(T)), Rs, Rt)
    return Rs, Rt


def direction_weights(p: dict[str, Tensor], v: dict[str, Tensor]) -> Tensor:
    """``[V_hx | v_init | v_bh | V_hh | W_hh]`` ``[H, n + 2 + 2H]``."""
    return torch.cat([hidden_weights(v), p["W_hh"]], 1)


def direction_output_weights(p: dict[str, Tensor], v: dict[str, Tensor]) -> Tensor:
    """``[v_by | V_yh | W_yh]`` ``[K, 1 + 2H]``."""
    return torch.cat([output_weights(v), p["W_yh"]], 1)


def gradient_from(acc: Tensor, layout: ParamLayout, n: int) -> Tensor:
    """The flat gradient ``[N]`` from the accumulator of :func:`bptt_steps`."""
    H = acc.shape[1] - n - 2
    out = torch.empty(layout.numel, dtype=acc.dtype, device=acc.device)
    g = layout.unflatten(out)
    g["W_hx"].copy_(acc[:H, :n])
    g["b_init"].copy_(acc[:H, n])
    g["b_h"].copy_(acc[:H, n + 1])
    g["W_hh"].copy_(acc[:H, n + 2:])
    g["b_y"].copy_(acc[H:, n + 1])
    g["W_yh"].copy_(acc[H:, n + 2:])
    return out


@dataclass
class _Prepared:
    """One block of the curvature batch: its state buffer (room for ``R h``), ``1 - h^2``, ``s``
    at the scored steps, and structural damping's ``valid`` weights."""

    sc: ScoredSteps
    Z: Tensor
    d: Tensor
    s: Tensor
    valid: Tensor  # [steps, B, 1]
    full: list[bool]


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

    def _acc(self, p: dict[str, Tensor], n: int) -> Tensor:
        H, K = self.hidden, p["W_yh"].shape[0]
        return p["W_hh"].new_zeros(H + K, n + 2 + H)

    def loss(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        norm = sequence_count(batch) if norm is None else norm
        p = self.layout.unflatten(theta)
        total = 0.0
        for part in self._blocks(batch):
            sc = ScoredSteps.of(part)
            if sc.steps:
                _, s = forward_block(p, part.inputs, sc)
                total += float(losses.loss(self.loss_kind, s, sc.targets, sc.mask, norm))
        return total

    def loss_and_grad(self, theta: Tensor, batch: Batch, norm: float | None = None) -> tuple[float, Tensor]:
        norm = sequence_count(batch) if norm is None else norm
        p = self.layout.unflatten(theta)
        n = batch.inputs.shape[-1]
        acc = self._acc(p, n)
        W_back = torch.cat([p["W_hh"], p["W_yh"]], 0)
        total = 0.0
        for part in self._blocks(batch):
            sc = ScoredSteps.of(part)
            if not sc.steps:
                continue
            Z, s = forward_block(p, part.inputs, sc)
            total += float(losses.loss(self.loss_kind, s, sc.targets, sc.mask, norm))
            e_s = losses.grad_s(self.loss_kind, s, sc.targets, sc.mask, norm)
            bptt_steps(Z, error_buffer(e_s, self.hidden), sc.pos, p["W_hh"], W_back, acc)
        return total, gradient_from(acc, self.layout, n)

    def prepare(self, theta: Tensor, batch: Batch, norm: float | None = None) -> float:
        norm = sequence_count(batch) if norm is None else norm
        p = self.layout.unflatten(theta.detach().clone())
        H, n = self.hidden, batch.inputs.shape[-1]
        blocks, total = [], 0.0
        for part in self._blocks(batch):
            sc = ScoredSteps.of(part)
            if not sc.steps:
                continue
            Z, s = forward_block(p, part.inputs, sc, extra=H)
            h = Z[1:, :, n + 2:n + 2 + H]
            d = torch.addcmul(torch.ones((), dtype=h.dtype, device=h.device), h, h, value=-1)
            valid = valid_steps(part.mask)[:sc.n_steps]
            full = valid.ne(0).all(1).tolist()
            blocks.append(_Prepared(sc, Z, d, s, valid.unsqueeze(-1), full))
            total += float(losses.loss(self.loss_kind, s, sc.targets, sc.mask, norm))
        self._cache = (p, norm, n, blocks)
        return total

    def product(self, v: Tensor, structural_weight: float) -> Tensor:
        if self._cache is None:
            raise RuntimeError("prepare() must be called before product()")
        p, norm, n, blocks = self._cache
        vp = self.layout.unflatten(v)
        V, V_out = direction_weights(p, vp), direction_output_weights(p, vp)
        W_back = torch.cat([p["W_hh"], p["W_yh"]], 0)
        c = float(structural_weight) * self.structural_scale / norm
        acc = self._acc(p, n)
        for b in blocks:
            Rs = torch.empty_like(b.s)
            r_forward_steps(b.Z, b.d, V, V_out, b.sc.pos, Rs)
            e_s = losses.hessian_vp(self.loss_kind, b.s, Rs, b.sc.mask, norm)
            cv = b.valid * c if c and not all(b.full) else None
            bptt_steps(b.Z, error_buffer(e_s, self.hidden), b.sc.pos, p["W_hh"], W_back, acc,
                       d=b.d, c=c, cv=cv, full=b.full)
        return gradient_from(acc, self.layout, n)
