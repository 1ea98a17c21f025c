"""The plain tanh RNN of the paper, section 2, equations 1-4.

    t_i = W_hx x_i + W_hh h_{i-1} + b_h      (1)   (b_h^init replaces W_hh h_0 at i = 1)
    h_i = tanh(t_i)                          (2)
    s_i = W_yh h_i + b_y                     (3)
    yhat_i = g(s_i)                          (4)   (g is applied by the loss, hfrnn.losses)

The forward pass returns the output pre-activations ``s`` ``[T, B, K]`` and the hidden
pre-activations ``t`` ``[T, B, H]``: the Gauss-Newton product needs ``s`` and structural damping
needs ``t`` (section 3.2). :func:`unroll` is the functional form used by the curvature backends;
it also returns ``h = tanh(t)`` so that they can cache it.

The fast loops (:func:`run_states`) evaluate ``tanh`` in its sigmoid form,
``tanh(t) = 2 sigmoid(2 t) - 1`` (:func:`tanh_from_double_`): PyTorch's CPU ``sigmoid`` is
vectorised and about 3x faster than its ``tanh`` (measured: 58 against 196 us on a float32
``[100, 500]`` block, one thread, AVX2), and ``tanh`` was the largest cost of a forward pass after
its matrix product. The price is absolute, not relative, accuracy near 0: the error is at most
1.8e-7 in float32 (``torch.tanh``: 3e-8) and 3.3e-16 in float64, i.e. float rounding of a value
of order 1, which is what the next step's matrix product sees. The autograd form
(:func:`unroll_autograd`, the oracle's) keeps ``torch.tanh``.

Initialisation (``specs/hf-algorithm.md``, the 2011 code): sparse, each hidden unit gets
``n_nonzero`` non-zero incoming recurrent weights drawn from N(0, 1)/sqrt(n_nonzero) (and likewise
for the input and output weights, capped by the fan-in), then the input-to-hidden weights are
scaled by ``input_scale`` (0.25). Biases start at zero.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

PARAM_NAMES = ("W_hx", "W_hh", "b_h", "b_init", "W_yh", "b_y")


def state_buffer(x: Tensor, hidden: int, extra: int = 0, steps: int | None = None,
                 out: Tensor | None = None) -> Tensor:
    """The forward pass's working buffer ``Z`` ``[steps + 1, n + 2 + hidden + extra, B]``.

    Feature-major: ``Z[i]`` is a column per sequence, and holds everything that multiplies a
    weight at step ``i``, stacked::

        Z[i] = [ x_i (n) ; [i == 0] ; 1 ; h_{i-1} (hidden) ; extra ]

    so that one matrix product per step, ``[W_hx | b_init | b_h | W_hh] @ Z[i, :n+2+H]``, forms
    the whole pre-activation ``t_i`` (input term, both biases and the recurrence) and writes
    ``h_i`` straight into ``Z[i + 1]``. The narrow input term then costs ``n`` more columns of a
    product the step runs anyway, instead of a skinny product of its own over all steps; the
    backward pass gets every hidden-side weight gradient from one product per step,
    ``dt_i Z[i]^T``; ``[1 ; h_i]`` (rows ``n + 1`` on) is the output layer's input. Every slice
    a step touches (``h_i``, ``[1 ; h_i]``, ``extra``) is one contiguous ``[rows, B]`` piece, so
    the elementwise work runs on contiguous memory. Row 0's ``h`` and ``extra`` are zero
    (``b_init`` replaces ``W_hh h_0``); later ``extra`` rows are left for the caller (the
    curvature product keeps ``R h`` there). ``steps`` (default ``T``) may stop the pass early.
    ``out``, when it has the right shape, is reused instead of a new allocation.
    """
    T, B, n = x.shape
    steps = T if steps is None else steps
    shape = (steps + 1, n + 2 + hidden + extra, B)
    reuse = out is not None and out.shape == shape and out.dtype == x.dtype and out.device == x.device
    Z = out if reuse else x.new_empty(shape)
    m = min(steps + 1, T)
    Z[:m, :n] = x[:m].transpose(1, 2)
    Z[m:, :n] = 0
    Z[:, n] = 0
    Z[0, n] = 1
    Z[:, n + 1] = 1
    Z[0, n + 2:] = 0
    return Z


def hidden_weights(p: dict[str, Tensor]) -> Tensor:
    """``[W_hx | b_init | b_h | W_hh]`` ``[H, n + 2 + H]``: the weights of a :func:`state_buffer` column."""
    return torch.cat([p["W_hx"], p["b_init"][:, None], p["b_h"][:, None], p["W_hh"]], 1)


def output_weights(p: dict[str, Tensor]) -> Tensor:
    """``[b_y | W_yh]`` ``[K, 1 + H]``: the weights of ``[1 ; h_i]``."""
    return torch.cat([p["b_y"][:, None], p["W_yh"]], 1)


def run_states(Z: Tensor, W: Tensor, steps: int, t: Tensor | None = None,
               W_out: Tensor | None = None, pos: list[int] | None = None, s: Tensor | None = None) -> None:
    """Equations 1-2 in place in a :func:`state_buffer`: ``h_i`` into ``Z[i + 1]`` for ``i < steps``.

    One matrix product and one ``tanh`` per step, both on ``[H, B]`` slices that stay in cache; the
    product is taken with ``2 W`` (exact: a power of two), so that it yields ``2 t_i`` for
    :func:`tanh_from_double_`; ``t`` gets ``0.5 (2 t_i)``, exactly ``t_i``.
    With ``t`` ``[steps, H, B]`` the pre-activations are copied there too (same arithmetic).
    With ``W_out`` (:func:`output_weights`), ``pos`` (per step: its index among the steps wanted,
    or -1) and ``s`` ``[S, K, B]``, equation 3 is run at the wanted steps only, while ``h_i`` is
    still in cache: ``s[pos[i]] = W_out @ [1 ; h_i]``.
    """
    H = W.shape[0]
    a = W.shape[1] - H  # n + 2: the rows before h
    ins = Z[:steps, :a + H].unbind(0)
    hs = Z[1:steps + 1, a:a + H].unbind(0)
    outs = Z[1:steps + 1, a - 1:a + H].unbind(0) if W_out is not None else None
    mm, W2 = torch.mm, W * 2  # 2 t_i for the sigmoid form of tanh (a power of two: exact)
    for i in range(steps):
        h_i = hs[i]
        mm(W2, ins[i], out=h_i)
        if t is not None:
            torch.mul(h_i, 0.5, out=t[i])
        tanh_from_double_(h_i)
        if outs is not None and pos[i] >= 0:
            mm(W_out, outs[i], out=s[pos[i]])


def tanh_from_double_(u: Tensor) -> Tensor:
    """``tanh(u / 2)`` in place, as ``2 sigmoid(u) - 1`` (see the module docstring: about 3x faster
    than ``torch.tanh`` on the CPU, absolute error <= 1.8e-7 in float32). Returns ``u``."""
    # One kernel for the affine part (-1 + 2 sigma, bitwise the same as mul_(2).sub_(1), whose two
    # passes cost about 15% more of the squash); a 0-dim CPU tensor serves any dtype and device.
    return torch.add(_MINUS_ONE, u.sigmoid_(), alpha=2, out=u)


_MINUS_ONE = torch.tensor(-1.0)


def unroll(p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Run equations 1-3 over a batch.

    Args:
        p: parameters by name (see :data:`PARAM_NAMES`): W_hx ``[H, n]``, W_hh ``[H, H]``,
            b_h ``[H]``, b_init ``[H]``, W_yh ``[K, H]``, b_y ``[K]``.
        x: inputs ``[T, B, n]``.
    Returns:
        ``(s, t, h)``: ``[T, B, K]``, ``[T, B, H]``, ``[T, B, H]``.
    """
    T, B, n = x.shape
    H = p["W_hh"].shape[0]
    Z = state_buffer(x, H)
    t = x.new_empty(T, H, B)
    s = x.new_empty(T, p["W_yh"].shape[0], B)
    run_states(Z, hidden_weights(p), T, t, W_out=output_weights(p), pos=list(range(T)), s=s)
    return (s.transpose(1, 2).contiguous(), t.transpose(1, 2).contiguous(),
            Z[1:, n + 2:].transpose(1, 2).contiguous())


def unroll_states(p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`unroll` without the pre-activations: ``(s [T, B, K], h [T, B, H])``.

    Works in one :func:`state_buffer`: each step is one matrix product written straight into the
    next step's column block and squashed there in place (no separate input-drive or
    pre-activation tensors), and the step's output is formed while ``h_i`` is in cache. ``h`` is
    returned as a (non-contiguous) view into that buffer.
    """
    T, B, n = x.shape
    H = p["W_hh"].shape[0]
    Z = state_buffer(x, H)
    s = x.new_empty(T, p["W_yh"].shape[0], B)
    run_states(Z, hidden_weights(p), T, W_out=output_weights(p), pos=list(range(T)), s=s)
    return s.transpose(1, 2).contiguous(), Z[1:, n + 2:].transpose(1, 2)


def unroll_autograd(p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """Equations 1-3 written out-of-place, so autograd and ``torch.func`` can trace them.

    Iterates over ``unbind(0)`` views: indexing a ``[T, B, H]`` tensor inside an autograd loop
    makes the backward pass cost grow like T^2 (``specs/hf-algorithm.md``).
    """
    T, B, _ = x.shape
    a = (x @ p["W_hx"].t() + p["b_h"]).unbind(0)
    W_hh_t = p["W_hh"].t()
    ts, hs = [], []
    h_prev = None
    for i in range(T):
        ti = a[i] + (p["b_init"] if h_prev is None else h_prev @ W_hh_t)
        h_prev = torch.tanh(ti)
        ts.append(ti)
        hs.append(h_prev)
    t = torch.stack(ts)
    s = torch.stack(hs) @ p["W_yh"].t() + p["b_y"]
    return s, t


class RNN(nn.Module):
    """tanh RNN with ``hidden`` units (paper eq. 1-4).

    Args:
        n_in, hidden, n_out: layer widths.
        n_nonzero: incoming non-zero weights per unit in the sparse initialisation (15).
        input_scale: factor on the input-to-hidden weights after initialisation (0.25).
        init_scale: factor on every initial weight (1.0).
        generator: the source of the initial weights (seeded by the caller).
    """

    hidden_nonlinearity = "tanh"

    def __init__(self, n_in: int, hidden: int, n_out: int, *, n_nonzero: int = 15,
                 input_scale: float = 0.25, init_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if min(n_in, hidden, n_out) < 1:
            raise ValueError(f"layer widths must be >= 1, got n_in={n_in} hidden={hidden} n_out={n_out}")
        g = generator
        self.W_hx = nn.Parameter(sparse_init(hidden, n_in, n_nonzero, g) * init_scale * input_scale)
        self.W_hh = nn.Parameter(sparse_init(hidden, hidden, n_nonzero, g) * init_scale)
        self.b_h = nn.Parameter(torch.zeros(hidden))
        self.b_init = nn.Parameter(torch.zeros(hidden))
        self.W_yh = nn.Parameter(sparse_init(n_out, hidden, n_nonzero, g) * init_scale)
        self.b_y = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[T, B, n]`` -> ``(s [T, B, K], t [T, B, H])``."""
        return unroll_autograd(dict(self.named_parameters()), x)


def sparse_init(rows: int, cols: int, n_nonzero: int, generator: torch.Generator | None) -> Tensor:
    """A ``[rows, cols]`` matrix with ``min(n_nonzero, cols)`` N(0, 1/k) entries per row."""
    k = min(n_nonzero, cols)
    w = torch.zeros(rows, cols)
    for r in range(rows):
        idx = torch.randperm(cols, generator=generator)[:k]
        w[r, idx] = torch.randn(k, generator=generator) / math.sqrt(k)
    return w
