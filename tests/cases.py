"""Tiny float64 cases shared by the exactness tests: (loss kind, masks, variable lengths)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hfrnn.linalg.params import ParamLayout
from hfrnn.models.rnn import RNN
from hfrnn.tasks.base import Batch


@dataclass
class Case:
    name: str
    loss: str
    n_in: int
    hidden: int
    n_out: int
    T: int
    B: int
    mask: str  # "last" (one scored step per sequence, variable lengths), "all", "random"


CASES = [
    Case("squared-last-varlen", "squared", 2, 4, 1, 6, 3, "last"),
    Case("logistic-all", "logistic", 3, 3, 2, 5, 2, "all"),
    Case("softmax-random", "softmax", 4, 5, 3, 5, 3, "random"),
    Case("softmax-last-varlen", "softmax", 3, 4, 4, 7, 2, "last"),
]


def make_case(case: Case, seed: int = 0):
    """Return ``(model, layout, theta, batch)`` in float64 with non-trivial parameters."""
    g = torch.Generator().manual_seed(seed)
    model = RNN(case.n_in, case.hidden, case.n_out, generator=g).double()
    layout = ParamLayout.of(dict(model.named_parameters()))
    # Dense random parameters (biases too) so that no Jacobian block is trivially zero.
    theta = 0.7 * torch.randn(layout.numel, generator=g, dtype=torch.float64)
    T, B = case.T, case.B
    x = torch.randn(T, B, case.n_in, generator=g, dtype=torch.float64)
    if case.mask == "last":
        lengths = torch.tensor([T - (b % 3) for b in range(B)])
        mask = torch.zeros(T, B, dtype=torch.float64)
        mask[lengths - 1, torch.arange(B)] = 1.0
        for b in range(B):
            x[lengths[b]:, b] = 0.0
    elif case.mask == "all":
        mask = torch.ones(T, B, dtype=torch.float64)
    else:
        mask = (torch.rand(T, B, generator=g) < 0.6).double()
        mask[-1] = 1.0
    if case.loss == "squared":
        y = torch.randn(T, B, case.n_out, generator=g, dtype=torch.float64)
    elif case.loss == "logistic":
        y = (torch.rand(T, B, case.n_out, generator=g) < 0.5).double()
    else:
        y = torch.nn.functional.one_hot(torch.randint(case.n_out, (T, B), generator=g), case.n_out).double()
    y = y * mask.unsqueeze(-1)
    return model, layout, theta, Batch(x, y, mask, mask.clone())
