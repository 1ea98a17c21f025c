"""Fast curvature products for the tanh RNN: Pearlmutter's R-operator and hand-written BPTT.

One forward pass over the curvature batch caches the hidden states ``h`` (``d = 1 - h^2`` is
formed from them where it is used); every product ``(G + w G_S) v`` then costs one R-forward and
one backward pass (section 3.1):

R-forward (the directional derivative of eq. 1-3 along ``v = (V_hx, V_hh, v_bh, v_init, V_yh, v_by)``)::

    R t_i = V_hx x_i + v_bh + V_hh h_{i-1} + W_hh R h_{i-1}    (v_init instead of V_hh h_0)
    R h_i = d_i * R t_i
    R s_i = V_yh h_i + v_by + W_yh R h_i

Backward (BPTT) with output error ``e_s = (L o g)'' R s`` and, for structural damping, the extra
hidden error ``e_t = w (D o e)'' R t = c valid_i R h_i`` (``c = w scale / n``; section 3.2)::

    dt_i = (W_yh^T e_s_i + W_hh^T dt_{i+1}) * d_i + e_t_i = d_i * (c valid_i R t_i + W_yh^T e_s_i + W_hh^T dt_{i+1})

How the work is laid out (the floor is the ``4 T`` products ``[B, H] @ [H, H]`` of a product,
``3 T`` of a gradient; ``benchmarks/bench_products.py`` measures against it, ``docs/performance.md``):

* Everything happens inside the time loops, on ``[H, B]`` slices that stay in cache; nothing
  streams a whole ``[T, B, H]`` tensor through memory outside them.
* The state buffer (:func:`hfrnn.models.rnn.state_buffer`) is feature-major: step ``i``'s block
  ``Z[i]`` holds ``[x_i ; [i == 0] ; 1 ; h_{i-1} ; R h_{i-1}]``, every slice contiguous. One
  product ``[V_hx | v_init | v_bh | V_hh | W_hh] @ Z[i]`` is the whole ``R t_i``: the narrow input
  term, both biases, ``V_hh h_{i-1}`` and the recurrence, at the cost of a few extra columns.
* Backward, one product ``[W_hh ; W_yh]^T @ [dt_{i+1} ; e_s_i]`` gives the error at ``h_i``, and
  one ``addmm_`` of the same ``[dt_{i+1} ; e_s_i]`` with ``Z[i + 1]^T = [x_{i+1} | [i+1 == 0] | 1
  | h_i]`` accumulates every weight gradient of that step (``W_hx, b_init, b_h, W_hh`` from
  ``dt``, and ``b_y, W_yh`` from ``e_s``) into one small ``[H + K, n + 2 + H]`` matrix.
* ``d_i *`` is one fused ``tanh_backward`` kernel on ``h_i``; the structural term rides on the
  backward product as ``R t_i.addmm_(..., beta=c)``.
* Output-side work (``s``, ``R s``, the loss Hessian, ``e_s``) runs only at the steps where some
  sequence is scored (read off the mask once per prepared batch), and no step after the last
  scored one is run at all (nothing there reaches the loss; structural damping's weight is zero
  there too, see :func:`~.protocol.valid_steps`). The loss and its derivatives work in the same
  feature-major layout ``[S, K, B]``; the loss Hessian's factors are computed once per prepared
  batch.

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
    targets at those steps, feature-major like the state buffer: ``[S, 1, B]``, ``[S, K, B]``."""

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
        return cls(steps, pos, batch.mask.index_select(0, idx).unsqueeze(1),
                   batch.targets.index_select(0, idx).transpose(1, 2).contiguous())

    @property
    def n_steps(self) -> int:
        """Steps to run: up to and including the last scored step."""
        return len(self.pos)


# The matched losses of :mod:`hfrnn.losses` at the scored steps, in the feature-major layout
# ``[S, K, B]`` of the loops: the output units on axis 1 (``dim=1``), the batch contiguous.

def output_loss(kind: str, s: Tensor, y: Tensor, m: Tensor) -> Tensor:
    """``sum(m * l(s; y))`` (a 0-dim tensor) for ``s, y`` ``[S, K, B]`` and weights ``m`` ``[S, 1, B]``."""
    return torch.sum(losses.per_step_loss(kind, s, y, dim=1) * m.squeeze(1))


def output_gradient(kind: str, s: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """``dL/ds = (g(s) - y) * w`` ``[S, K, B]`` (``w = mask / norm`` ``[S, 1, B]``)."""
    return (losses.predict(kind, s, dim=1) - y) * w


def forward_block(p: dict[str, Tensor], x: Tensor, sc: ScoredSteps, extra: int = 0,
                  out: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Forward pass up to the last scored step: the state buffer (``out`` reused when it fits)
    and ``s`` ``[S, K, B]`` at the scored steps."""
    H = p["W_hh"].shape[0]
    Z = state_buffer(x, H, extra, sc.n_steps, out)
    s = x.new_empty(len(sc.steps), p["W_yh"].shape[0], x.shape[1])
    run_states(Z, hidden_weights(p), sc.n_steps, W_out=output_weights(p), pos=sc.pos, s=s)
    return Z, s


_tanh_backward = torch.ops.aten.tanh_backward.grad_input  # out = grad * (1 - h^2), one kernel


def r_forward_steps(Z: Tensor, V: Tensor, V_out: Tensor, pos: list[int], Rs: Tensor,
                    Rt: Tensor | None = None, valid: Tensor | None = None,
                    full: list[bool] | None = None) -> None:
    """The R-forward loop in place: ``R h_i`` into the last ``H`` rows of ``Z[i + 1]``.

    Args:
        Z: state buffer ``[steps + 1, n + 2 + 2H, B]`` holding ``h`` (and zero ``R h`` in ``Z[0]``).
        V: ``[V_hx | v_init | v_bh | V_hh | W_hh]`` ``[H, n + 2 + 2H]``.
        V_out: ``[v_by | V_yh | W_yh]`` ``[K, 1 + 2H]``.
        pos: per step, its index in ``Rs`` ``[S, K, B]`` (or -1: not wanted).
        Rt: optional ``[steps, H, B]`` that receives ``R t`` (times ``valid`` ``[steps, 1, B]``
            at the steps where ``full`` is False, when given).
    """
    H = V.shape[0]
    steps = len(pos)
    A = Z.shape[1] - H  # n + 2 + H: the rows before R h
    a = A - H
    ins = Z[:steps].unbind(0)
    hs = Z[1:steps + 1, a:A].unbind(0)
    rhs = Z[1:steps + 1, A:].unbind(0)
    outs = Z[1:steps + 1, a - 1:].unbind(0)  # [1 ; h_i ; R h_i]
    rts = [Z.new_empty(H, Z.shape[2])] * steps if Rt is None else Rt.unbind(0)
    vs = valid.unbind(0) if valid is not None else None
    mm, tanh_bw = torch.mm, _tanh_backward
    for i in range(steps):
        r = rts[i]
        mm(V, ins[i], out=r)
        tanh_bw(r, hs[i], grad_input=rhs[i])
        if pos[i] >= 0:
            mm(V_out, outs[i], out=Rs[pos[i]])
        if vs is not None and not full[i]:
            r.mul_(vs[i])


def bptt_steps(Z: Tensor, e_s: Tensor, pos: list[int], W_hh: Tensor, W_back: Tensor, acc: Tensor,
               c: float = 0.0, Rt: Tensor | None = None) -> None:
    """Backpropagation through time, accumulating every weight gradient into ``acc``.

    One ``[H + K, B]`` buffer ``q`` carries ``[dt_{i+1} ; e_s_i]`` from step to step: at a scored
    step the output error is copied under ``dt_{i+1}`` and one product with ``[W_hh ; W_yh]``
    gives the error at ``h_i``; one ``addmm_`` of ``q`` with ``Z[i + 1]^T`` accumulates every
    weight gradient of the step; ``dt_i`` then overwrites ``dt_{i+1}``, which has been used.

    Args:
        Z: state buffer (``Z[i] = [x_i ; [i == 0] ; 1 ; h_{i-1} ; (R h_{i-1})]``, ``[., B]``).
        e_s: output errors at the scored steps, ``[S, K, B]`` (any strides).
        pos: per step up to the last scored one, its index in ``e_s`` (or -1).
        W_hh: ``[H, H]``; W_back: ``[W_hh ; W_yh]`` ``[H + K, H]``.
        acc: ``[H + K, n + 2 + H]`` accumulator; receives ``[dt_i ; e_s_{i-1}] Z[i]^T`` summed.
        c, Rt: structural damping (product only): ``e_t_i = c valid_i R h_i
            = (1 - h_i^2) * c valid_i R t_i``, so the error at ``t_i`` is
            ``(1 - h_i^2) * (c Rt_i + W_hh^T dt_{i+1} + W_yh^T e_s_i)``, with ``Rt`` ``[steps, H, B]``
            already multiplied by ``valid``; the ``c Rt_i`` term rides on the step's ``addmm_``.
    """
    H = W_hh.shape[0]
    A = acc.shape[1]
    a = A - H
    steps = len(pos)
    if not steps:
        return
    q = Z.new_empty(H + e_s.shape[1], Z.shape[2])
    dt, q_out = q[:H], q[H:]
    dt.zero_()  # nothing comes back from after the last scored step
    dh = Z.new_empty(H, Z.shape[2]) if Rt is None or not c else None
    acc_h = acc[:H]
    W_hh_t, W_back_t = W_hh.t(), W_back.t()
    rows = [r.t() for r in Z[1:steps + 1, :A].unbind(0)]  # row i: Z[i + 1]^T
    hs = Z[1:steps + 1, a:A].unbind(0)
    rts = Rt.unbind(0) if c else None
    es = e_s.unbind(0)
    mm, tanh_bw = torch.mm, _tanh_backward
    for i in range(steps - 1, -1, -1):
        j = pos[i]
        if j >= 0:
            q_out.copy_(es[j])
            cur, W, acc_i = q, W_back_t, acc
        else:
            cur, W, acc_i = dt, W_hh_t, acc_h
        if rts is None:
            e = mm(W, cur, out=dh)
        else:  # in place: R t_i is not needed after this step
            e = rts[i].addmm_(W, cur, beta=c)
        acc_i.addmm_(cur, rows[i])
        tanh_bw(e, hs[i], grad_input=dt)
    acc_h.addmm_(dt, Z[0, :A].t())


def r_forward(p: dict[str, Tensor], v: dict[str, Tensor], x: Tensor, h: Tensor,
              d: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The R-operator forward pass: ``(R s [T, B, K], R t [T, B, H])`` along direction ``v``, at
    every step (the backend itself runs it at the scored steps only). ``d = 1 - h^2`` is formed
    from ``h`` inside the loop; the argument is accepted for compatibility and not used."""
    T, B, n = x.shape
    H = h.shape[-1]
    Z = state_buffer(x, H, H)
    Z[1:, n + 2:n + 2 + H] = h.transpose(1, 2)
    Rs = x.new_empty(T, p["W_yh"].shape[0], B)
    Rt = x.new_empty(T, H, B)
    r_forward_steps(Z, direction_weights(p, v), direction_output_weights(p, v), list(range(T)), Rs, Rt)
    return Rs.transpose(1, 2), Rt.transpose(1, 2)


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
    """One block of the curvature batch: its state buffer (with room for ``R h``), the factors of
    the loss Hessian at the scored steps, structural damping's ``valid`` weights, and a workspace
    for ``R t``."""

    sc: ScoredSteps
    Z: Tensor
    f: Tensor  # losses.hessian_factors [S, K, B] (or [S, 1, B])
    p: Tensor | None
    valid: Tensor  # [steps, 1, B]
    full: list[bool]  # per step: valid for every sequence
    Rt: Tensor | None = None  # [steps, H, B], allocated by the first product with structural damping


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
        if loss_kind not in losses.LOSSES:
            raise ValueError(f"unknown loss {loss_kind!r}; expected one of {losses.LOSSES}")
        self.layout = layout
        self.loss_kind = loss_kind
        self.structural_scale = structural_scale
        self.block = block
        self.hidden = dict(zip(layout.names, layout.shapes))["W_hh"][0]
        self._cache: tuple | None = None
        self._work: dict[tuple, Tensor] = {}  # forward buffers of loss / loss_and_grad, by shape

    def _blocks(self, batch: Batch) -> list[Batch]:
        """``batch`` split into the blocks that one pass of the time loop handles (the automatic
        size is evened out over the blocks: 2,000 sequences in blocks of at most 1,024 run as 2 x 1,000)."""
        T, B = batch.mask.shape
        n = self.block
        if not n:
            n = auto_block(T, self.hidden, batch.inputs.dtype, batch.inputs.device)
            if 0 < n < B:
                n = -(-B // -(-B // n))
        return batch.split(n) if 0 < n < B else [batch]

    def _forward(self, p: dict[str, Tensor], part: Batch, sc: ScoredSteps) -> tuple[Tensor, Tensor]:
        """:func:`forward_block` in a buffer kept from call to call (no fresh pages every time)."""
        T, B, n = part.inputs.shape
        key = (sc.n_steps, n, B, part.inputs.dtype, part.inputs.device)
        if key not in self._work and len(self._work) >= 2:
            self._work.clear()
        Z, s = forward_block(p, part.inputs, sc, out=self._work.get(key))
        self._work[key] = Z
        return Z, s

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
                _, s = self._forward(p, part, sc)
                total += float(output_loss(self.loss_kind, s, sc.targets, sc.mask)) / norm
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
            Z, s = self._forward(p, part, sc)
            total += float(output_loss(self.loss_kind, s, sc.targets, sc.mask)) / norm
            e_s = output_gradient(self.loss_kind, s, sc.targets, sc.mask / norm)
            bptt_steps(Z, e_s, sc.pos, p["W_hh"], W_back, acc)
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
            f, pr = losses.hessian_factors(self.loss_kind, s, sc.mask / norm, dim=1)
            valid = valid_steps(part.mask)[:sc.n_steps]
            full = valid.ne(0).all(1).tolist()
            blocks.append(_Prepared(sc, Z, f, pr, valid.unsqueeze(1), full))
            total += float(output_loss(self.loss_kind, s, sc.targets, sc.mask)) / norm
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
        K = p["W_yh"].shape[0]
        for b in blocks:
            Rs = b.Z.new_empty(len(b.sc.steps), K, b.Z.shape[2])
            if c and b.Rt is None:
                b.Rt = b.Z.new_empty(b.sc.n_steps, self.hidden, b.Z.shape[2])
            Rt = b.Rt if c else None
            r_forward_steps(b.Z, V, V_out, b.sc.pos, Rs, Rt, b.valid if c else None, b.full)
            e_s = losses.apply_hessian(b.f, b.p, Rs, dim=1)
            bptt_steps(b.Z, e_s, b.sc.pos, p["W_hh"], W_back, acc, c, Rt)
        return gradient_from(acc, self.layout, n)
