"""CG's rules pinned one by one: Martens' stopping rule past i = 100 (where k = ceil(0.1 i) > 10),
its boundaries, the warm start and its safeguard, the kept iterates, and the special stops."""
from __future__ import annotations

import math

import pytest
import torch

from hfrnn.linalg.cg import CGResult, cg, keep_schedule, progress_stop

F64 = torch.float64


def first_stop(q: list[float], eps: float, k_of) -> int | None:
    """The first i at which the rule stops, written out: i > k, q_i < 0, (q_i - q_{i-k}) / q_i < k eps."""
    for i in range(1, len(q)):
        k = k_of(i)
        if i > k and q[i] < 0 and (q[i] - q[i - k]) / q[i] < k * eps:
            return i
    return None


def slow_problem():
    """A diagonal SPD matrix (eigenvalues 1 .. 1e5, 300 of them): CG needs > 100 iterations."""
    lam = torch.logspace(0, 5, 300, dtype=F64)
    return (lambda v: lam * v), torch.ones(300, dtype=F64)


def test_stopping_rule_past_100_iterations_uses_k_of_a_tenth_of_i():
    matvec, b = slow_problem()
    full = cg(matvec, b, max_iters=300, eps=0.0)  # eps = 0 never stops: all the q-values
    assert full.stop_reason == "max_iters" and len(full.q_values) == 301
    q = full.q_values
    expected = first_stop(q, 5e-4, lambda i: max(10, math.ceil(0.1 * i)))
    # Over several eps the variants of the rule (k = 10; k = floor(0.1 i)) stop elsewhere at least
    # once, and cg stops where k = max(10, ceil(0.1 i)) says every time. (Where exactly depends on
    # the machine's float rounding: 248 vs 239 at eps 5e-4 on one CPU, 248 vs 238 on another.)
    k10_differs = floor_differs = False
    for eps in (2e-4, 3e-4, 4e-4, 5e-4, 6e-4, 7e-4, 1e-3, 2e-3):
        ceil_stop = first_stop(q, eps, lambda i: max(10, math.ceil(0.1 * i)))
        assert cg(matvec, b, max_iters=300, eps=eps).iterations == ceil_stop
        k10_differs |= first_stop(q, eps, lambda i: 10) != ceil_stop
        floor_differs |= first_stop(q, eps, lambda i: max(10, math.floor(0.1 * i))) != ceil_stop
    assert 100 < expected < 300 and k10_differs and floor_differs
    res = cg(matvec, b, max_iters=300, eps=5e-4)
    assert res.stop_reason == "progress" and res.iterations == expected
    assert res.q_values == q[:expected + 1]
    # The defaults are the spec's (eps 5e-4, k = max(10, ceil(0.1 i)), at most 300).
    dflt = cg(matvec, b)
    assert dflt.iterations == expected and dflt.stop_reason == "progress"


def test_defaults_min_gap_10_and_300_iterations():
    # A problem the rule stops at i = 24 with k = 10 (25 with k = 11).
    lam = torch.logspace(0, 2, 50, dtype=F64)
    b = torch.ones(50, dtype=F64)
    q = cg(lambda v: lam * v, b, max_iters=300, eps=0.0).q_values
    expected = first_stop(q, 5e-4, lambda i: max(10, math.ceil(0.1 * i)))
    assert expected == 24 and first_stop(q, 5e-4, lambda i: max(11, math.ceil(0.1 * i))) == 25
    assert cg(lambda v: lam * v, b).iterations == expected
    # A problem the rule never stops in 300 iterations: the default maximum is 300.
    lam = torch.logspace(0, 6, 1000, dtype=F64)
    res = cg(lambda v: lam * v, torch.ones(1000, dtype=F64))
    assert res.iterations == 300 and res.stop_reason == "max_iters" and res.kept[-1][0] == 300


def test_stopping_rule_options():
    matvec, b = slow_problem()
    q = cg(matvec, b, max_iters=300, eps=0.0).q_values
    for eps, min_gap, frac in [(5e-4, 30, 0.1), (5e-4, 10, 0.2), (1e-3, 10, 0.1)]:
        expected = first_stop(q, eps, lambda i: max(min_gap, math.ceil(frac * i)))
        res = cg(matvec, b, max_iters=300, eps=eps, min_gap=min_gap, gap_fraction=frac)
        assert res.iterations == expected and res.stop_reason == "progress"
        assert expected != 248


def test_progress_stop_boundaries():
    # k = 10 at i = 11; eps = 1/16 makes k eps = 0.625 exact.
    def q_with(qi, q_back, i=11, k=10):
        q = [0.0] * (i + 1)
        q[i], q[i - k] = qi, q_back
        return q

    eps = 1 / 16
    assert progress_stop(q_with(-1.0, -0.5), 11, eps, 10, 0.1)          # 0.5 < 0.625
    assert not progress_stop(q_with(-1.0, -0.375), 11, eps, 10, 0.1)    # 0.625: not below
    assert not progress_stop(q_with(-1.0, -0.25), 11, eps, 10, 0.1)     # 0.75
    q10 = [0.0] * 11
    q10[10], q10[0] = -1.0, -1.0
    assert not progress_stop(q10, 10, eps, 10, 0.1)                      # i = k: never
    assert not progress_stop(q_with(0.0, 0.0), 11, eps, 10, 0.1)        # q = 0: never (no 0/0)
    assert not progress_stop(q_with(1.0, 2.0), 11, eps, 10, 0.1)        # q > 0: never
    # min_gap is the k below i = 10 / gap_fraction.
    q = [0.0] * 12
    q[11], q[11 - 5] = -1.0, -0.8                                        # 0.2 < 5 eps = 0.3125
    assert progress_stop(q, 11, eps, 5, 0.1)
    assert not progress_stop(q, 11, eps, 11, 0.1)                       # k = 11: i = k


def test_progress_stop_k_is_ceil_of_a_tenth_past_100():
    # At i = 101, k = ceil(10.1) = 11: q_90 is compared, not q_91.
    q = [0.0] * 102
    q[101], q[91], q[90] = -1.0, -1.0, -0.3
    eps = 0.05  # thresholds: k = 11 -> 0.55, k = 10 -> 0.5
    assert not progress_stop(q, 101, eps, 10, 0.1)                      # (q101 - q90)/q101 = 0.7
    q[90] = -0.5
    assert progress_stop(q, 101, eps, 10, 0.1)                          # 0.5 < 0.55
    q[91] = -0.4
    q[90] = -1.0
    assert progress_stop(q, 101, eps, 10, 0.1)  # q91 is not looked at (k = 10 would give 0.6 > 0.5)
    # At i = 100, k = 10 exactly (0.1 * 100 rounds to 10.0): q_90 is compared.
    q100 = [0.0] * 101
    q100[100], q100[90], q100[89] = -1.0, -0.3, -1.0
    assert not progress_stop(q100, 100, eps, 10, 0.1)
    q100[90], q100[89] = -1.0, -0.3
    assert progress_stop(q100, 100, eps, 10, 0.1)


def test_keep_schedule_boundaries():
    assert sorted(keep_schedule(300)) == [5, 7, 9, 11, 15, 19, 25, 32, 41, 54, 69, 90, 117, 152, 197, 256]
    assert max(keep_schedule(54)) == 54 and max(keep_schedule(53)) == 41
    assert keep_schedule(4) == set()
    assert sorted(keep_schedule(20, 2.0, 2.0)) == [2, 4, 8, 16]
    assert sorted(keep_schedule(10, 1.0, 3.0)) == [1, 3, 9]


def spd(n, cond, seed):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return Q @ torch.diag(torch.logspace(0, math.log10(cond), n, dtype=F64)) @ Q.T


def counting(A):
    calls = []

    def matvec(v):
        calls.append(v.clone())
        return A @ v
    return matvec, calls


def test_cold_start_multiplies_minus_b_first_and_counts_matvecs():
    A = spd(12, 10.0, 0)
    b = torch.randn(12, dtype=F64, generator=torch.Generator().manual_seed(1))
    for x0 in (None, torch.zeros(12, dtype=F64)):
        matvec, calls = counting(A)
        res = cg(matvec, b, x0, max_iters=7, eps=0.0)
        assert res.iterations == 7 and len(calls) == 7  # no product for the zero start
        assert torch.equal(calls[0], b)                  # p0 = -r0 = b
        assert res.q_values[0] == 0.0
        assert isinstance(res, CGResult)


def test_warm_start_residual_and_first_direction():
    A = spd(12, 10.0, 0)
    b = torch.randn(12, dtype=F64, generator=torch.Generator().manual_seed(1))
    x0 = 0.5 * torch.linalg.solve(A, b)
    keep = x0.clone()
    matvec, calls = counting(A)
    res = cg(matvec, b, x0, max_iters=3, eps=0.0)
    assert torch.equal(x0, keep)                          # the caller's vector is not modified
    assert torch.equal(calls[0], x0) and len(calls) == 4  # A x0, then one product per iteration
    assert torch.allclose(calls[1], b - A @ x0, rtol=1e-12, atol=1e-14)
    q0 = float(0.5 * x0 @ A @ x0 - b @ x0)
    assert q0 < 0 and math.isclose(res.q_values[0], q0, rel_tol=1e-12)
    for i, x in res.kept:
        assert math.isclose(res.q_values[i], float(0.5 * x @ A @ x - b @ x), rel_tol=1e-10)


def test_warm_start_with_q_exactly_zero_is_kept():
    """Only q(x0) > 0 sends CG back to zero; q(x0) = 0 is not uphill."""
    A = torch.eye(3, dtype=F64)
    b = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    x0 = torch.tensor([2.0, 0.0, 0.0], dtype=F64)  # q = 1/2 * 4 - 2 = 0 exactly
    res = cg(lambda v: A @ v, b, x0, max_iters=5, eps=0.0)
    assert res.q_values[0] == 0.0
    assert res.iterations == 1 and res.stop_reason == "converged"  # from x0 one step lands on b
    assert torch.equal(res.x, b)


def test_warm_start_with_q_exactly_zero_is_used():
    A = torch.diag(torch.tensor([1.0, 2.0], dtype=F64))
    b = torch.tensor([1.0, 1.0], dtype=F64)
    x0 = torch.tensor([2.0, 0.0], dtype=F64)  # q = 1/2 * 4 - 2 = 0 exactly
    matvec, calls = counting(A)
    res = cg(matvec, b, x0, max_iters=1, eps=0.0)
    assert res.q_values[0] == 0.0
    assert torch.equal(calls[1], torch.tensor([-1.0, 1.0], dtype=F64))  # p0 = b - A x0, not b


def test_slightly_uphill_warm_start_is_replaced():
    A = torch.eye(2, dtype=F64)
    b = torch.tensor([1.0, 0.0], dtype=F64)
    x0 = torch.tensor([-0.5, 0.0], dtype=F64)  # q = 0.125 + 0.5 = 0.625: above 0, below 1
    matvec, calls = counting(A)
    res = cg(matvec, b, x0, max_iters=1, eps=0.0)
    assert res.q_values[0] == 0.0 and torch.equal(calls[1], b)


def test_uphill_warm_start_starts_from_zero_with_a_fresh_residual():
    A = spd(10, 10.0, 2)
    b = torch.randn(10, dtype=F64, generator=torch.Generator().manual_seed(3))
    bad = -torch.linalg.solve(A, b)  # q(bad) = 3/2 b.A^-1 b > 0
    matvec, calls = counting(A)
    res = cg(matvec, b, bad, max_iters=4, eps=0.0)
    assert res.q_values[0] == 0.0
    assert torch.equal(calls[1], b)  # after A x0, CG restarts from zero: p0 = b
    fresh = cg(lambda v: A @ v, b, max_iters=4, eps=0.0)
    assert torch.allclose(res.x, fresh.x, rtol=1e-12, atol=1e-14)
    assert all(math.isclose(a, c, rel_tol=1e-12) for a, c in zip(res.q_values, fresh.q_values))


def test_kept_iterates_are_copies_and_the_last_is_not_repeated():
    A = spd(30, 1e3, 4)
    b = torch.randn(30, dtype=F64, generator=torch.Generator().manual_seed(5))
    res = cg(lambda v: A @ v, b, max_iters=11, eps=0.0)
    assert [i for i, _ in res.kept] == [5, 7, 9, 11]  # 11 is on the schedule: kept once
    assert torch.equal(res.kept[-1][1], res.x) and res.kept[-1][1] is not res.x
    assert not torch.equal(res.kept[0][1], res.kept[1][1])
    for i, x in res.kept:
        assert torch.allclose(x, cg(lambda v: A @ v, b, max_iters=i, eps=0.0).x, rtol=1e-12, atol=1e-14)
    short = cg(lambda v: A @ v, b, max_iters=3, eps=0.0)
    assert [i for i, _ in short.kept] == [3] and short.iterations == 3
    custom = cg(lambda v: A @ v, b, max_iters=12, eps=0.0, keep_first=2.0, keep_growth=2.0)
    assert [i for i, _ in custom.kept] == [2, 4, 8, 12]


def test_zero_right_hand_side_converges_at_once():
    res = cg(lambda v: 2 * v, torch.zeros(4, dtype=F64), max_iters=10)
    assert res.stop_reason == "converged" and res.iterations == 0
    assert res.q_values == [0.0] and len(res.kept) == 1 and res.kept[0][0] == 0
    assert torch.equal(res.kept[0][1], torch.zeros(4, dtype=F64))


def test_exact_solution_converges():
    b = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    res = cg(lambda v: 4 * v, b, max_iters=10)
    assert res.stop_reason == "converged" and res.iterations == 1
    assert torch.equal(res.x, b / 4)
    assert res.q_values == [0.0, -0.5 * float(b @ b) / 4]
    assert [i for i, _ in res.kept] == [1]


def test_zero_curvature_stops_as_negative():
    res = cg(lambda v: 0 * v, torch.ones(3, dtype=F64), max_iters=10)
    assert res.stop_reason == "negative_curvature" and res.iterations == 0
    assert torch.equal(res.x, torch.zeros(3, dtype=F64))
    assert [i for i, _ in res.kept] == [0]


def test_negative_curvature_after_progress_keeps_the_iterates_so_far():
    A = torch.diag(torch.tensor([1.0, 2.0, -0.5], dtype=F64))
    res = cg(lambda v: A @ v, torch.ones(3, dtype=F64), max_iters=10)
    # p0 = (1, 1, 1) has curvature 2.5 > 0: one step (alpha = 3 / 2.5), then p1 sees p.A p <= 0
    assert res.stop_reason == "negative_curvature" and res.iterations == 1
    assert torch.allclose(res.x, torch.full((3,), 1.2, dtype=F64))
    assert math.isclose(res.q_values[1], -1.8) and [i for i, _ in res.kept] == [1]


def test_non_finite_rhs_and_products():
    res = cg(lambda v: v, torch.tensor([1.0, math.nan], dtype=F64))
    assert res.stop_reason == "non_finite" and res.iterations == 0 and res.kept[0][0] == 0
    assert res.warm_start_reset is False
    assert torch.equal(res.x, torch.zeros(2, dtype=F64))
    assert res.q_values[0] != res.q_values[0] or len(res.q_values) == 1
    res = cg(lambda v: v * math.inf, torch.ones(2, dtype=F64))
    assert res.stop_reason == "non_finite" and res.iterations == 0
    assert torch.equal(res.x, torch.zeros(2, dtype=F64))


def test_min_iters_delays_the_progress_stop():
    matvec, b = slow_problem()
    natural = cg(matvec, b).iterations
    assert cg(matvec, b, min_iters=natural).iterations == natural
    later = cg(matvec, b, min_iters=natural + 7)
    assert later.iterations == natural + 7 and later.stop_reason == "progress"


def test_float32_rhs_runs_in_float64():
    A = spd(8, 10.0, 6)
    b = torch.randn(8, generator=torch.Generator().manual_seed(7))
    seen = []
    res = cg(lambda v: seen.append(v.dtype) or (A @ v.double()).float(), b, max_iters=3, eps=0.0)
    assert res.x.dtype == F64 and set(seen) == {F64}
    assert all(x.dtype == F64 for _, x in res.kept)


@pytest.mark.parametrize("n_iter", [1, 2, 5])
def test_iterates_match_the_textbook_recurrence(n_iter):
    A = spd(6, 50.0, 8)
    b = torch.randn(6, dtype=F64, generator=torch.Generator().manual_seed(9))
    x = torch.zeros(6, dtype=F64)
    r = b.clone()  # textbook residual b - A x
    p = r.clone()
    for _ in range(n_iter):
        a = float(r @ r) / float(p @ A @ p)
        x = x + a * p
        r_new = r - a * (A @ p)
        p = r_new + (float(r_new @ r_new) / float(r @ r)) * p
        r = r_new
    res = cg(lambda v: A @ v, b, max_iters=n_iter, eps=0.0)
    assert torch.allclose(res.x, x, rtol=1e-12, atol=1e-14)
    assert math.isclose(res.q_values[-1], float(0.5 * x @ A @ x - b @ x), rel_tol=1e-12)


def test_reset_uphill_false_keeps_an_uphill_warm_start():
    A = torch.eye(2, dtype=F64)
    b = torch.tensor([1.0, 0.0], dtype=F64)
    x0 = torch.tensor([-0.5, 0.0], dtype=F64)  # q(x0) = 0.625 > 0
    matvec, calls = counting(A)
    res = cg(matvec, b, x0, max_iters=1, eps=0.0, reset_uphill=False)
    assert res.q_values[0] == 0.625 and not res.warm_start_reset
    assert torch.equal(calls[1], torch.tensor([1.5, 0.0], dtype=F64))  # p0 = b - A x0
    on = cg(counting(A)[0], b, x0, max_iters=1, eps=0.0)
    assert on.warm_start_reset and on.q_values[0] == 0.0
    assert not cg(counting(A)[0], b, None, max_iters=1, eps=0.0).warm_start_reset
