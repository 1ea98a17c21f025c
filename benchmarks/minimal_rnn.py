"""The yardstick: a minimal hand-written gradient and Gauss-Newton product for the tanh RNN.

Written the plain way, for one loss only, the halved squared error at the last step (the addition
problem), averaged over sequences: the input term and the output layer as single products over
all steps, one matrix product per step in each loop (two in the R-forward), every ``[T, B, H]``
quantity stored, the weight gradients as products over all steps at the end. No structural
damping, no masks, no cache blocking. ``benchmarks/bench_products.py`` times hfrnn against it
(and checks that both compute the same numbers).
"""
from __future__ import annotations

import torch
from torch import Tensor


def forward(p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """Hidden states ``h`` ``[T, B, H]`` and the last step's output ``[B, K]``."""
    a = x @ p["W_hx"].T + p["b_h"]
    h = torch.empty_like(a)
    h[0] = torch.tanh(a[0] + p["b_init"])
    for i in range(1, len(a)):
        h[i] = torch.tanh(a[i] + h[i - 1] @ p["W_hh"].T)
    return h, h[-1] @ p["W_yh"].T + p["b_y"]


def backward(p: dict[str, Tensor], x: Tensor, h: Tensor, e: Tensor) -> dict[str, Tensor]:
    """BPTT of an error ``e`` ``[B, K]`` at the last output: the gradient by parameter name."""
    T, B, H = h.shape
    dt = torch.empty_like(h)
    dh = e @ p["W_yh"]
    for i in range(T - 1, -1, -1):
        dt[i] = dh * (1 - h[i] ** 2)
        dh = dt[i] @ p["W_hh"]
    return {"W_hx": dt.reshape(-1, H).T @ x.reshape(T * B, -1),
            "W_hh": dt[1:].reshape(-1, H).T @ h[:-1].reshape(-1, H),
            "b_h": dt.sum((0, 1)), "b_init": dt[0].sum(0),
            "W_yh": e.T @ h[-1], "b_y": e.sum(0)}


def loss_and_grad(p: dict[str, Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean over sequences of ``1/2 |out - y|^2`` at the last step (``y`` ``[B, K]``) and its gradient."""
    h, out = forward(p, x)
    B = x.shape[1]
    return 0.5 * ((out - y) ** 2).sum() / B, backward(p, x, h, (out - y) / B)


def prepare(p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """The cached forward pass of the curvature batch: ``h`` and ``1 - h^2``."""
    h, _ = forward(p, x)
    return h, 1 - h ** 2


def gauss_newton_product(p: dict[str, Tensor], x: Tensor, h: Tensor, d: Tensor,
                         v: dict[str, Tensor]) -> dict[str, Tensor]:
    """``G v``: the R-operator forward pass along ``v``, then BPTT of ``(1/B) R out``."""
    a = x @ v["W_hx"].T + v["b_h"]
    Rh = torch.empty_like(h)
    Rh[0] = d[0] * (a[0] + v["b_init"])
    for i in range(1, len(h)):
        Rh[i] = d[i] * (a[i] + h[i - 1] @ v["W_hh"].T + Rh[i - 1] @ p["W_hh"].T)
    R_out = h[-1] @ v["W_yh"].T + v["b_y"] + Rh[-1] @ p["W_yh"].T
    return backward(p, x, h, R_out / x.shape[1])
