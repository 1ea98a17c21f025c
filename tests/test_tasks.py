"""Tests for the pathological tasks (``hfrnn/tasks/pathological.py``, ``specs/tasks.md`` 1-7)."""
from __future__ import annotations

import pytest
import torch

from hfrnn.tasks.base import Batch, Task
from hfrnn.tasks.pathological import (
    PATHOLOGICAL_TASKS,
    TEST_SEED,
    error_rate,
    make_task,
    success,
)

T = 30
B = 300
MARKED = ("addition", "multiplication", "xor")
TEMPORAL = ("temporal_order", "temporal_order_3bit")
MEMO = ("memorization", "memorization_20bit")
# name -> (n_in, n_out, loss, T_total at T=30 with default options)
EXPECTED = {
    "addition": (2, 1, "squared", 33),
    "multiplication": (2, 1, "squared", 33),
    "xor": (2, 1, "logistic", 33),
    "temporal_order": (6, 4, "softmax", 30),
    "temporal_order_3bit": (6, 8, "softmax", 30),
    "random_permutation": (100, 100, "softmax", 30),
    "memorization": (4, 3, "softmax", 40),
    "memorization_20bit": (7, 6, "softmax", 50),
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def draw(name: str, T_: int = T, n: int = B, seed: int = 0, **opts) -> Batch:
    return make_task(name, T_, **opts).sample(n, gen(seed))


def lengths(batch: Batch) -> torch.Tensor:
    """``T'`` per sequence for a task scored at its last real step: 1 + index of the mask's 1."""
    assert torch.all(batch.mask.sum(0) == 1)
    return batch.mask.argmax(0) + 1


def is_one_hot(x: torch.Tensor) -> torch.Tensor:
    """``[..., K] -> [...]`` bool: exactly one 1 and zeros elsewhere."""
    return ((x == 0) | (x == 1)).all(-1) & (x.sum(-1) == 1)


# ---------------------------------------------------------------------------------------------
# Shapes, protocol, defaults


@pytest.mark.parametrize("name", PATHOLOGICAL_TASKS)
def test_shapes_and_attributes(name):
    task = make_task(name, T)
    n_in, n_out, loss, T_total = EXPECTED[name]
    assert isinstance(task, Task)
    assert (task.name, task.n_in, task.n_out, task.loss) == (name, n_in, n_out, loss)
    assert task.damping_scale_T == (name == "random_permutation")
    assert task.has_success_rule is True
    b = task.sample(7, gen())
    assert b.inputs.shape == (T_total, 7, n_in)
    assert b.targets.shape == (T_total, 7, n_out)
    assert b.mask.shape == b.score_mask.shape == (T_total, 7)
    for x in (b.inputs, b.targets, b.mask, b.score_mask):
        assert x.dtype == torch.float32 and x.device.type == "cpu"
    assert task.extra_metrics(torch.zeros_like(b.targets), b) == {}


def test_variable_length_defaults():
    for name in MARKED:
        assert make_task(name, 100).T_total == 110
        assert make_task(name, 100, variable_length=False).T_total == 100
    for name in TEMPORAL:
        assert make_task(name, 100).T_total == 100
        assert make_task(name, 100, variable_length=True).T_total == 110


# ---------------------------------------------------------------------------------------------
# Addition, multiplication, XOR


@pytest.mark.parametrize("name", MARKED)
@pytest.mark.parametrize("variable", [True, False])
def test_marked_pair_structure(name, variable):
    b = draw(name, variable_length=variable)
    L = lengths(b)
    lo, hi = (T, (11 * T) // 10) if variable else (T, T)
    assert int(L.min()) >= lo and int(L.max()) <= hi
    if variable:
        assert L.unique().numel() > 1
    valid = torch.arange(b.T).unsqueeze(1) < L.unsqueeze(0)
    assert torch.all(b.inputs[~valid] == 0) and torch.all(b.targets[~valid] == 0)
    assert torch.equal(b.score_mask, b.mask)
    u, marker = b.inputs[..., 0], b.inputs[..., 1]
    if name == "xor":
        assert torch.all((u == 0) | (u == 1))
    else:
        assert torch.all((u >= 0) & (u <= 1))
    assert torch.all((marker == 0) | (marker == 1))
    assert torch.all(marker.sum(0) == 2)
    cols = torch.arange(B)
    for k in range(B):
        I, J = marker[:, k].nonzero().flatten().tolist()
        Lk = int(L[k])
        assert 0 <= I <= Lk // 10 - 1 and Lk // 10 <= J <= Lk // 2 - 1
        a, c = u[I, k], u[J, k]
        want = {"addition": a + c, "multiplication": a * c, "xor": (a != c).float()}[name]
        assert b.targets[Lk - 1, k, 0] == want
    assert torch.all(b.targets[..., 0].abs().sum(0) == b.targets[L - 1, cols, 0].abs())


def test_addition_mean_target():
    b = draw("addition", addition_target="mean")
    u, marker = b.inputs[..., 0], b.inputs[..., 1]
    want = (u * marker).sum(0) / 2
    got = (b.targets[..., 0] * b.mask).sum(0)
    torch.testing.assert_close(got, want)


def test_shared_length():
    b = draw("addition", shared_length=True)
    assert lengths(b).unique().numel() == 1


@pytest.mark.parametrize("name", MARKED)
def test_sentinel(name):
    b = draw(name, sentinel=True)
    L = lengths(b)
    marker = b.inputs[..., 1]
    cols = torch.arange(B)
    assert torch.all(marker[0] == -1) and torch.all(marker[L - 4, cols] == -1)
    assert torch.all((marker == -1).sum(0) == 2) and torch.all((marker == 1).sum(0) == 2)
    # without the option there is no -1 anywhere
    assert torch.all(draw(name).inputs[..., 1] >= 0)


# ---------------------------------------------------------------------------------------------
# Temporal order


@pytest.mark.parametrize("name", TEMPORAL)
@pytest.mark.parametrize("variable", [False, True])
def test_temporal_order_structure(name, variable):
    b = draw(name, variable_length=variable)
    L = lengths(b)
    if not variable:
        assert torch.all(L == T)
    valid = torch.arange(b.T).unsqueeze(1) < L.unsqueeze(0)
    assert torch.all(is_one_hot(b.inputs)[valid])
    assert torch.all(b.inputs[~valid] == 0)
    symbols = b.inputs.argmax(-1)
    windows = (1, 3, 6) if name == "temporal_order_3bit" else (1, 5)
    relevant = (symbols <= 1) & valid
    assert torch.all(relevant.sum(0) == len(windows))
    cols = torch.arange(B)
    scored = b.targets[L - 1, cols]
    assert torch.all(is_one_hot(scored))
    assert torch.all(b.targets.sum(-1) == b.mask)
    for k in range(B):
        Lk = int(L[k])
        pos = relevant[:, k].nonzero().flatten().tolist()
        label = 0
        for p, w in zip(pos, windows):
            assert (w * Lk) // 10 <= p <= ((w + 1) * Lk) // 10
            label = 2 * label + int(symbols[p, k])
        assert int(scored[k].argmax()) == label


def test_temporal_order_classes_and_distractors_cover():
    b = draw("temporal_order_3bit", n=2000)
    classes = b.targets.sum(0).argmax(-1)
    assert classes.unique().numel() == 8
    assert b.inputs.argmax(-1).unique().tolist() == [0, 1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------------------------
# Random permutation


def test_random_permutation():
    b = draw("random_permutation")
    assert torch.all(is_one_hot(b.inputs)) and torch.all(is_one_hot(b.targets))
    s = b.inputs.argmax(-1)
    y = b.targets.argmax(-1)
    assert torch.all(s[0] <= 1) and torch.all(s[1:] >= 2)
    assert torch.equal(y[:-1], s[1:]) and torch.equal(y[-1], s[0])
    assert torch.all(b.mask == 1)
    assert torch.all(b.score_mask[:-1] == 0) and torch.all(b.score_mask[-1] == 1)
    b2 = draw("random_permutation", loss_every_step=False)
    assert torch.equal(b2.mask, b2.score_mask)


def test_random_permutation_only_last_step_decides():
    task = make_task("random_permutation", T)
    b = task.sample(50, gen())
    s = 10 * b.targets.clone()
    s[:-1] = -s[:-1]  # every earlier step wrong
    assert not task.wrong(s, b).any()


# ---------------------------------------------------------------------------------------------
# Memorization


@pytest.mark.parametrize("name", MEMO)
@pytest.mark.parametrize("total", [False, True])
def test_memorization_layout(name, total):
    K, m = (10, 5) if name == "memorization_20bit" else (5, 2)
    b = draw(name, total_length_is_T=total)
    T_total = T if total else T + 2 * K
    D = T_total - 2 * K  # the delay; equals T by default
    trigger = D + K - 1  # T + 4 (5-bit) or T + 9 (20-bit) by default
    assert b.T == T_total
    assert torch.all(is_one_hot(b.inputs)) and torch.all(is_one_hot(b.targets))
    x, y = b.inputs.argmax(-1), b.targets.argmax(-1)
    blank, trig = m, m + 1
    assert torch.all(x[:K] < m)
    assert torch.all(x[K:trigger] == blank) and torch.all(x[trigger] == trig)
    assert torch.all(x[trigger + 1:] == blank)
    assert torch.all(y[:trigger + 1] == blank)
    assert torch.equal(y[trigger + 1:], x[:K])
    assert torch.all(b.mask == 1) and torch.all(b.score_mask == 1)
    if not total:
        assert trigger == T + K - 1


def test_memorization_wrong_at_any_step():
    task = make_task("memorization", T)
    b = task.sample(20, gen())
    s = 10 * b.targets.clone()
    assert not task.wrong(s, b).any()
    s[3, 0] = -s[3, 0]  # one wrong blank step in sequence 0
    assert task.wrong(s, b).tolist() == [True] + [False] * 19


# ---------------------------------------------------------------------------------------------
# Determinism and the test set


@pytest.mark.parametrize("name", PATHOLOGICAL_TASKS)
def test_determinism(name):
    a, b, c = draw(name, n=50, seed=3), draw(name, n=50, seed=3), draw(name, n=50, seed=4)
    for x, y in zip((a.inputs, a.targets, a.mask), (b.inputs, b.targets, b.mask)):
        assert torch.equal(x, y)
    assert not torch.equal(a.inputs, c.inputs)


@pytest.mark.parametrize("name", PATHOLOGICAL_TASKS)
def test_test_set_fixed(name):
    task = make_task(name, T, test_size=100)
    t1, t2 = task.test_set(), task.test_set()
    assert t1.size == 100
    assert torch.equal(t1.inputs, t2.inputs)
    other = make_task(name, T, test_size=100).test_set()
    assert torch.equal(t1.inputs, other.inputs) and torch.equal(t1.targets, other.targets)
    train = task.sample(100, gen(0))
    assert not torch.equal(t1.inputs, train.inputs)
    reseeded = make_task(name, T, test_size=100, test_seed=TEST_SEED + 1).test_set()
    assert not torch.equal(t1.inputs, reseeded.inputs)


# ---------------------------------------------------------------------------------------------
# Scoring: a trivial predictor fails, a perfect one passes


def trivial_outputs(task, b: Batch) -> torch.Tensor:
    """Constant mean for real targets, the majority bit / class at scored steps otherwise."""
    scored = b.score_mask > 0
    if task.loss == "squared":
        return torch.full_like(b.targets, b.targets[scored].mean().item())
    if task.loss == "logistic":
        p = b.targets[scored].mean().item()
        return torch.full_like(b.targets, 5.0 if p >= 0.5 else -5.0)
    majority = b.targets[scored].sum(0).argmax()
    s = torch.zeros_like(b.targets)
    s[..., majority] = 5.0
    return s


def perfect_outputs(task, b: Batch) -> torch.Tensor:
    if task.loss == "squared":
        return b.targets.clone()
    if task.loss == "logistic":
        return 10 * (2 * b.targets - 1)
    return 10 * b.targets


@pytest.mark.parametrize("name", PATHOLOGICAL_TASKS)
def test_trivial_fails_perfect_passes(name):
    task = make_task(name, T, test_size=2000)
    b = task.test_set()
    wrong = task.wrong(trivial_outputs(task, b), b)
    assert wrong.shape == (2000,) and wrong.dtype == torch.bool
    assert not success(wrong) and error_rate(wrong) > 0.3
    perfect = task.wrong(perfect_outputs(task, b), b)
    assert success(perfect, 0.001) and error_rate(perfect) == 0.0


def test_real_tolerance():
    task = make_task("addition", T)
    b = task.sample(4, gen())
    s = b.targets.clone()
    s[lengths(b)[0] - 1, 0, 0] += 0.039
    s[lengths(b)[1] - 1, 1, 0] -= 0.041
    s[0, 2, 0] += 5.0  # unscored step: ignored
    assert task.wrong(s, b).tolist() == [False, True, False, False]


def test_success_and_error_rate():
    w = torch.zeros(1000, dtype=torch.bool)
    w[:9] = True
    assert error_rate(w) == pytest.approx(0.009)
    assert success(w) and not success(w, threshold=0.001)
    w[:10] = True
    assert not success(w)


def test_wrong_shape_mismatch():
    task = make_task("xor", T)
    b = task.sample(4, gen())
    with pytest.raises(ValueError):
        task.wrong(torch.zeros(b.T, 4, 2), b)


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("kwargs", [
    {"name": "adition", "T": 30},
    {"name": "addition", "T": 1},
    {"name": "addition", "T": 9},
    {"name": "addition", "T": 15, "sentinel": True},
    {"name": "addition", "T": 30.0},
    {"name": "addition", "T": 30, "bogus": 1},
    {"name": "addition", "T": 30, "addition_target": "product"},
    {"name": "addition", "T": 30, "variable_length": "yes"},
    {"name": "xor", "T": 30, "sentinel": 1},
    {"name": "random_permutation", "T": 30, "loss_every_step": None},
    {"name": "memorization", "T": 30, "test_size": 0},
    {"name": "memorization", "T": 30, "test_seed": -1},
    {"name": "memorization", "T": 10, "total_length_is_T": True},
    {"name": "memorization_20bit", "T": 20, "total_length_is_T": True},
    {"name": "temporal_order_3bit", "T": 5},
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_task(**kwargs)


def test_error_messages_list_valid_choices():
    with pytest.raises(ValueError, match="temporal_order_3bit"):
        make_task("nope", 30)
    with pytest.raises(ValueError, match="loss_every_step"):
        make_task("addition", 30, nope=True)


@pytest.mark.parametrize("name", PATHOLOGICAL_TASKS)
def test_all_options_accepted_everywhere(name):
    task = make_task(name, 40, variable_length=False, addition_target="mean", sentinel=True,
                     loss_every_step=False, total_length_is_T=True, test_size=5, test_seed=1,
                     shared_length=True)
    assert task.sample(3, gen()).size == 3
