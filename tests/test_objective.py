"""The paper's objective (section 2), computed by hand on tiny batches, and the masks it rests on.

A sequence's loss is the sum of its per-step losses over its scored steps; the objective is the
mean over sequences. Every reference here is written with Python loops over sequences and steps
and scalar maths, sharing nothing with :mod:`hfrnn.losses` or the backends.
"""
import math

import pytest
import torch

from hfrnn.curvature.generic import GenericCurvature
from hfrnn.curvature.protocol import (chunked_loss, chunked_loss_and_grad, sequence_count, steps_per_sequence,
                                      valid_steps)
from hfrnn.curvature.rnn_fast import RNNFastCurvature
from hfrnn.models.rnn import unroll_autograd
from hfrnn.parallel.sharded import ShardedBackend
from hfrnn.tasks.base import Batch

from .cases import CASES, make_case


def _step_loss(kind: str, s: list[float], y: list[float]) -> float:
    """One step's loss from plain floats: halved squared error, binary or categorical cross-entropy."""
    if kind == "squared":
        return sum(0.5 * (a - b) ** 2 for a, b in zip(s, y))
    if kind == "logistic":
        out = 0.0
        for a, b in zip(s, y):
            p = 1.0 / (1.0 + math.exp(-a))
            out -= b * math.log(p) + (1 - b) * math.log(1 - p)
        return out
    z = max(s)
    log_norm = z + math.log(sum(math.exp(a - z) for a in s))
    return -sum(b * (a - log_norm) for a, b in zip(s, y))


def objective_by_hand(kind: str, s, batch: Batch) -> float:
    """``(1/B) sum_b sum_{t scored} l(s[t, b]; y[t, b])`` with loops."""
    T, B = batch.mask.shape
    per_sequence = []
    for b in range(B):
        total = 0.0
        for t in range(T):
            if batch.mask[t, b] > 0:
                total += _step_loss(kind, s[t, b].tolist(), batch.targets[t, b].tolist())
        per_sequence.append(total)
    return sum(per_sequence) / B


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_objective_is_the_mean_over_sequences_of_summed_step_losses(c):
    model, layout, theta, batch = make_case(c)
    s, _ = unroll_autograd(layout.unflatten(theta), batch.inputs)
    ref = objective_by_hand(c.loss, s, batch)
    for be in (RNNFastCurvature(layout, c.loss), GenericCurvature(model, c.loss),
               RNNFastCurvature(layout, c.loss, block=1)):
        assert abs(be.loss(theta, batch) - ref) < 1e-12
        assert abs(be.loss_and_grad(theta, batch)[0] - ref) < 1e-12
        assert abs(be.prepare(theta, batch) - ref) < 1e-12
        # chunks of one sequence each add up to the whole batch's objective, not to a sum of means
        assert abs(chunked_loss(be, theta, batch, 1) - ref) < 1e-12
        assert abs(chunked_loss_and_grad(be, theta, batch, 1)[0] - ref) < 1e-12
        # two shards normalised by the whole batch add up to it (the data-parallel backend)
        shards = [ShardedBackend(be, rank=r, world=2) for r in (0, 1)]
        assert abs(sum(sh.inner.loss(theta, sh.shard(batch), batch.size) for sh in shards) - ref) < 1e-12


def test_objective_weights_sequences_equally_whatever_their_scored_steps():
    """One sequence scored at 3 steps and one at 1: the objective is (l_0 + l_1) / 2, where a
    per-step mean would give (l_0 + l_1) / 4."""
    T, B = 4, 2
    s = torch.zeros(T, B, 1, dtype=torch.float64)
    y = torch.zeros(T, B, 1, dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y[0, 0] = y[1, 0] = y[2, 0] = 1.0  # each scored step of sequence 0 costs 1/2
    y[3, 1] = 2.0                       # sequence 1's one step costs 2
    batch = Batch(torch.zeros(T, B, 1, dtype=torch.float64), y, mask, mask)
    from hfrnn import losses
    assert float(losses.loss("squared", s, y, mask)) == pytest.approx((1.5 + 2.0) / 2, abs=1e-15)
    assert objective_by_hand("squared", s, batch) == pytest.approx(1.75, abs=1e-15)
    assert sequence_count(batch) == 2.0 and steps_per_sequence(batch) == 2.0


def test_gauss_newton_scales_with_the_objective():
    """Doubling every sequence (B -> 2B) leaves f, g and G v unchanged: all are means over sequences.
    Doubling the scored steps of every sequence doubles them: each is a sum over steps."""
    c = CASES[1]  # logistic, every step scored
    model, layout, theta, batch = make_case(c)
    twice = Batch(*(torch.cat([x, x], dim=1) for x in (batch.inputs, batch.targets, batch.mask, batch.score_mask)))
    v = torch.randn(layout.numel, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a, b = RNNFastCurvature(layout, c.loss), RNNFastCurvature(layout, c.loss)
    fa, fb = a.prepare(theta, batch), b.prepare(theta, twice)
    assert fa == pytest.approx(fb, rel=1e-13)
    assert torch.allclose(a.product(v, 0.3), b.product(v, 0.3), rtol=1e-12, atol=1e-13)
    half = Batch(batch.inputs, batch.targets, batch.mask.clone(), batch.score_mask)
    half.mask[: c.T // 2] = 0.0  # fewer scored steps: a smaller per-sequence loss, not the same mean
    assert RNNFastCurvature(layout, c.loss).loss(theta, half) < fa


@pytest.mark.parametrize("mask,expected", [
    # one scored step at the end of each of two sequences of lengths 3 and 2 (T = 4)
    ([[0, 0], [0, 1], [1, 0], [0, 0]], [[1, 1], [1, 1], [1, 0], [0, 0]]),
    # every step scored
    ([[1, 1], [1, 1]], [[1, 1], [1, 1]]),
    # gaps inside a sequence do not end it; nothing scored at all gives no valid step
    ([[1, 0], [0, 0], [1, 0], [0, 0]], [[1, 0], [1, 0], [1, 0], [0, 0]]),
    # recall at the end only (memorization): everything up to it counts
    ([[0], [0], [0], [1]], [[1], [1], [1], [1]]),
])
def test_valid_steps_on_hand_worked_masks(mask, expected):
    got = valid_steps(torch.tensor(mask, dtype=torch.float64))
    assert got.tolist() == [[float(x) for x in row] for row in expected]
