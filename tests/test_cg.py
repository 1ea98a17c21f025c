"""CG against torch.linalg.solve, the stopping rule and the kept iterates."""
import math

import torch

from hfrnn.linalg.cg import cg, keep_schedule, progress_stop


def spd(n, cond=100.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return Q @ torch.diag(torch.logspace(0, math.log10(cond), n, dtype=torch.float64)) @ Q.T


def test_solves_spd_system():
    A = spd(30)
    b = torch.randn(30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    res = cg(lambda v: A @ v, b, max_iters=200, eps=0.0)
    assert torch.allclose(res.x, torch.linalg.solve(A, b), atol=1e-8)


def test_quadratic_values_decrease_and_match_definition():
    A = spd(40, 1e3)
    b = torch.randn(40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    res = cg(lambda v: A @ v, b, max_iters=30, eps=0.0)
    q = res.q_values
    assert all(q[i + 1] <= q[i] + 1e-12 for i in range(len(q) - 1))
    x = res.x
    assert abs(q[-1] - (0.5 * x @ A @ x - b @ x)) < 1e-9


def test_kept_iterates_follow_schedule():
    assert sorted(keep_schedule(60)) == [5, 7, 9, 11, 15, 19, 25, 32, 41, 54]
    A = spd(80, 1e4)
    b = torch.randn(80, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    res = cg(lambda v: A @ v, b, max_iters=22, eps=0.0)
    assert [i for i, _ in res.kept] == [5, 7, 9, 11, 15, 19, 22]
    # A kept iterate equals a fresh run stopped at that iteration.
    again = cg(lambda v: A @ v, b, max_iters=11, eps=0.0)
    assert torch.allclose(dict(res.kept)[11], again.x)


def test_progress_rule_fires_as_specified():
    # q decreasing slowly: relative progress over k steps below k * eps stops it.
    q = [0.0] + [-(1 - 0.9 ** i) for i in range(1, 60)]
    i_stop = next(i for i in range(len(q)) if progress_stop(q, i, 5e-4, 10, 0.1))
    k = max(10, math.ceil(0.1 * i_stop))
    assert (q[i_stop] - q[i_stop - k]) / q[i_stop] < k * 5e-4
    for j in range(11, i_stop):
        kj = max(10, math.ceil(0.1 * j))
        assert not ((q[j] - q[j - kj]) / q[j] < kj * 5e-4)
    assert not progress_stop(q, 10, 5e-4, 10, 0.1)  # never before i > k
    assert not progress_stop([0.0] + [0.1] * 30, 20, 5e-4, 10, 0.1)  # never while q >= 0


def test_stops_on_progress_before_max():
    A = spd(300, 1e2)
    b = torch.randn(300, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    res = cg(lambda v: A @ v, b, max_iters=300)
    assert res.stop_reason == "progress" and res.iterations < 300


def test_negative_curvature_stops():
    A = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    res = cg(lambda v: A @ v, torch.tensor([1.0, 1.0], dtype=torch.float64), max_iters=10)
    assert res.stop_reason == "negative_curvature"


def test_warm_start_used():
    A = spd(20)
    b = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    sol = torch.linalg.solve(A, b)
    res = cg(lambda v: A @ v, b, x0=sol, max_iters=5, eps=0.0)
    assert res.q_values[0] < 0 and torch.allclose(res.x, sol, atol=1e-8)


def test_uphill_warm_start_replaced_by_zero():
    A = spd(20)
    b = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    bad = -10 * torch.linalg.solve(A, b)  # q(bad) > 0
    res = cg(lambda v: A @ v, b, x0=bad, max_iters=3, eps=0.0)
    assert res.q_values[0] == 0.0
    fresh = cg(lambda v: A @ v, b, max_iters=3, eps=0.0)
    assert torch.allclose(res.x, fresh.x)
