"""The plain tanh RNN of the paper, section 2, equations 1-4.

    t_i = W_hx x_i + W_hh h_{i-1} + b_h      (1)   (b_h^init replaces W_hh h_0 at i = 1)
    h_i = tanh(t_i)                          (2)
    s_i = W_yh h_i + b_y                     (3)
    yhat_i = g(s_i)                          (4)   (g is applied by the loss, hfrnn.losses)

The forward pass returns the output pre-activations ``s`` ``[T, B, K]`` and the hidden
pre-activations ``t`` ``[T, B, H]``: the Gauss-Newton product needs ``s`` and structural damping
needs ``t`` (section 3.2). :func:`unroll` is the functional form used by the curvature backends;
it also returns ``h = tanh(t)`` so that they can cache it.

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


def unroll(p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Run equations 1-3 over a batch.

    Args:
        p: parameters by name (see :data:`PARAM_NAMES`): W_hx ``[H, n]``, W_hh ``[H, H]``,
            b_h ``[H]``, b_init ``[H]``, W_yh ``[K, H]``, b_y ``[K]``.
        x: inputs ``[T, B, n]``.
    Returns:
        ``(s, t, h)``: ``[T, B, K]``, ``[T, B, H]``, ``[T, B, H]``.
    """
    T, B, _ = x.shape
    H = p["W_hh"].shape[0]
    # The input drive of all steps in one matrix product; the loop keeps only the recurrence.
    a = torch.addmm(p["b_h"], x.reshape(T * B, -1), p["W_hx"].t()).view(T, B, H)
    t = torch.empty_like(a)
    h = torch.empty_like(a)
    W_hh_t = p["W_hh"].t()
    torch.add(a[0], p["b_init"], out=t[0])
    torch.tanh(t[0], out=h[0])
    for i in range(1, T):
        torch.addmm(a[i], h[i - 1], W_hh_t, out=t[i])
        torch.tanh(t[i], out=h[i])
    s = torch.addmm(p["b_y"], h.view(T * B, H), p["W_yh"].t()).view(T, B, -1)
    return s, t, h


def unroll_states(p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`unroll` without the pre-activations: ``(s [T, B, K], h [T, B, H])``.

    Each step's pre-activation is formed in ``h[i]`` and squashed there in place, so the pass
    keeps one ``[T, B, H]`` tensor instead of three (the input drive, ``t`` and ``h``); the
    smaller working set is what keeps a cache-sized block in cache (``hfrnn.curvature.blocking``).
    """
    T, B, _ = x.shape
    H = p["W_hh"].shape[0]
    h = torch.addmm(p["b_h"], x.reshape(T * B, -1), p["W_hx"].t()).view(T, B, H)
    W_hh_t = p["W_hh"].t()
    h[0].add_(p["b_init"]).tanh_()
    for i in range(1, T):
        h[i].addmm_(h[i - 1], W_hh_t).tanh_()
    s = torch.addmm(p["b_y"], h.view(T * B, H), p["W_yh"].t()).view(T, B, -1)
    return s, h


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
