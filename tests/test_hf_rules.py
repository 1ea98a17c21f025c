"""Every rule of one HF iteration, pinned on a recording fake backend (``hf_fake.py``).

The backend's objective, G and G_S are known, so each test states by hand what HF must have asked
for (the structural weight of every product, the first vectors CG passed, which batch every loss
came from) and what it must report (rho, lambda, the work counters), rather than only checking
that the loss went down. ``docs/mutation.md`` lists which test catches which hand-made mistake.
"""
from __future__ import annotations

import logging
import math

import pytest
import torch

from hfrnn.linalg.cg import cg
from hfrnn.linalg.params import dot64
from hfrnn.optim.damping import DampingOptions
from hfrnn.optim.hessian_free import (BatchOptions, CGOptions, HessianFree, HFOptions, HFStepInfo,
                                      StructuralOptions)
from hfrnn.train.records import _clean, step_record
from hfrnn.optim.search import LineSearchOptions

from .hf_fake import F64, RecordingQuadratic, Sampler, damped_q, isclose, spd

N = 8
G = spd(N, -1.0, 1.0, seed=1)     # eigenvalues 0.1 .. 10
GS = spd(N, -1.0, 0.5, seed=2)    # a different matrix: a wrong weight changes every product
GRAD, CURV = 40, 10               # distinguishable batch sizes (the loss's ``norm`` tells them apart)
LAM, MU, WC = 0.7, 0.3, 0.05
UNIT = 1000.0                     # sequences per minibatch


def vec(seed: int, scale: float = 1.0, n: int = N) -> torch.Tensor:
    return scale * torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)


THETA0 = vec(10, 0.3)


def options(**kw) -> HFOptions:
    kw.setdefault("cg", CGOptions(max_iters=N))  # CG runs exactly N iterations: the exact solution
    kw.setdefault("structural", StructuralOptions(mu=MU))
    kw.setdefault("weight_cost", WC)
    return HFOptions(batch=BatchOptions(gradient=GRAD, curvature=CURV, chunk=1000), **kw)


def make(kappa: float = 0.0, lam: float = LAM, cs=None, theta=None, Gm=G, GSm=GS, **kw):
    theta = (THETA0 if theta is None else theta).clone()
    backend = RecordingQuadratic(Gm, GSm, kappa, anchor=theta.clone())
    sampler = Sampler(cs if cs is not None else [vec(s, n=theta.shape[0]) for s in range(1, 9)])
    hf = HessianFree(theta, backend, options(**kw), lam)
    return hf, backend, sampler


def F(backend: RecordingQuadratic, theta: torch.Tensor, c: torch.Tensor, wc: float = WC) -> float:
    """The objective HF minimises: the batch loss plus the L2 term."""
    t = theta.double()
    return backend.objective(t, c) + 0.5 * wc * float(t @ t)


def grad(backend: RecordingQuadratic, theta: torch.Tensor, c: torch.Tensor, wc: float = WC) -> torch.Tensor:
    return backend.gradient(theta.double(), c) + wc * theta.double()


def damped_matrix(lam: float, mu: float = MU, wc: float = WC, Gm=G, GSm=GS) -> torch.Tensor:
    """``G + lambda mu G_S + (lambda + wc) I``: the matrix of the quadratic CG minimises."""
    return Gm + lam * mu * GSm + (lam + wc) * torch.eye(Gm.shape[0], dtype=F64)


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-12) -> bool:
    """Equal up to the rounding of a batch mean (the backend sums sequences, then divides)."""
    return torch.allclose(a, b, rtol=rtol, atol=1e-14)


def lm(lam: float, rho: float) -> float:
    """The Levenberg-Marquardt rule, by hand."""
    return lam * 1.5 if rho < 0.25 else lam * 2 / 3 if rho > 0.75 else lam


def expected_backtrack(backend, theta, c, kept, wc=WC):
    """Walk back from the last kept iterate while the objective improves: (index, value, evals)."""
    best, f_best, evals = len(kept) - 1, F(backend, theta + kept[-1][1], c, wc), 1
    for j in range(len(kept) - 2, -1, -1):
        f_j = F(backend, theta + kept[j][1], c, wc)
        evals += 1
        if f_j < f_best:
            best, f_best = j, f_j
        else:
            break
    return best, f_best, evals


# -- structural damping and the CG system ----------------------------------------------------------

def test_every_product_gets_structural_weight_lambda_times_mu():
    hf, backend, sampler = make()
    info = hf.step(sampler)
    assert info.accepted and info.damping == LAM
    assert len(backend.products) == info.cg_iters == N
    assert all(w == LAM * MU for _, w in backend.products)
    # The next iteration uses the updated lambda, and the weight moves with it.
    lam2 = hf.damping
    assert lam2 != LAM
    backend.clear()
    hf.step(sampler)
    assert backend.products and all(w == lam2 * MU for _, w in backend.products)


def test_structural_damping_disabled_gives_weight_zero():
    hf, backend, sampler = make(structural=StructuralOptions(enabled=False, mu=MU))
    hf.step(sampler)
    assert backend.products and all(w == 0.0 for _, w in backend.products)


def test_cg_solves_the_damped_system_with_weight_cost():
    """CG's matvec is ``G + lambda mu G_S + (lambda + wc) I``; after N iterations on an N-dim problem
    the solution is exact, so a missing weight cost, a wrong weight or a wrong lambda all show."""
    hf, backend, sampler = make(weight_cost=0.5)
    c_g = sampler.cs[0]
    g = grad(backend, THETA0, c_g, wc=0.5)
    info = hf.step(sampler)
    x = torch.linalg.solve(damped_matrix(LAM, wc=0.5), -g)
    assert info.cg_iters == N and info.cg_stop == "max_iters"
    assert torch.allclose(hf.warm, x, rtol=1e-9, atol=1e-12)
    # Without the weight cost in the matvec, or with weight mu: clearly different solutions.
    assert not torch.allclose(torch.linalg.solve(damped_matrix(LAM, wc=0.0), -g), x, rtol=1e-3)
    assert not torch.allclose(torch.linalg.solve(G + MU * GS + (LAM + 0.5) * torch.eye(N, dtype=F64), -g), x,
                              rtol=1e-3)


def test_gradient_and_loss_include_the_l2_term():
    hf, backend, sampler = make()
    info = hf.step(sampler)
    c_g = sampler.cs[0]
    g = grad(backend, THETA0, c_g)
    # CG from zero: r = -b = g, its first direction p = -r = -g is the first vector it multiplies.
    assert close(backend.products[0][0], -g)
    assert isclose(info.loss_before, F(backend, THETA0, c_g))
    assert isclose(info.grad_norm, float(g.norm()))
    assert [n for n, _ in backend.grads] == [GRAD]
    assert [n for n, _ in backend.prepared] == [CURV]
    assert torch.equal(backend.prepared[0][1], THETA0)


# -- the warm start ---------------------------------------------------------------------------------

def _second_step_with_gradient(hf, backend, sampler, target_g):
    """Make the next gradient batch's c give gradient ``target_g`` at the current theta."""
    theta1 = hf.theta.clone()
    c2 = target_g - grad(backend, theta1, torch.zeros(N, dtype=F64))
    sampler.cs[len(sampler.calls)] = c2
    return theta1, c2


@pytest.mark.parametrize("decay", [0.95, 0.5])
def test_warm_start_is_the_decayed_previous_solution(decay):
    hf, backend, sampler = make(cg=CGOptions(max_iters=N, decay=decay))
    assert hf.warm is None
    info1 = hf.step(sampler)
    assert info1.accepted
    warm = hf.warm.clone()
    lam2 = hf.damping
    g1 = grad(backend, THETA0, sampler.cs[0])
    theta1, c2 = _second_step_with_gradient(hf, backend, sampler, g1)  # same gradient: x0 is downhill
    backend.clear()
    info2 = hf.step(sampler)
    x0 = decay * warm
    # CG's first product is A x0 (its initial residual); the second is along -(A x0 - b).
    assert torch.equal(backend.products[0][0], x0)
    A = damped_matrix(lam2)
    assert damped_q(g1, x0, A) < 0  # the warm start is kept...
    assert torch.allclose(backend.products[1][0], -(A @ x0 + g1), rtol=1e-10, atol=1e-12)  # ...and used
    assert len(backend.products) == info2.cg_iters + 1
    assert torch.allclose(hf.warm, torch.linalg.solve(A, -g1), rtol=1e-8, atol=1e-10)


def test_uphill_warm_start_restarts_cg_from_zero():
    hf, backend, sampler = make()
    hf.step(sampler)
    warm, lam2 = hf.warm.clone(), hf.damping
    g1 = grad(backend, THETA0, sampler.cs[0])
    _second_step_with_gradient(hf, backend, sampler, -g1)  # reversed gradient: 0.95 warm points uphill
    backend.clear()
    info2 = hf.step(sampler)
    assert torch.equal(backend.products[0][0], 0.95 * warm)
    assert damped_q(-g1, 0.95 * warm, damped_matrix(lam2)) > 0
    assert close(backend.products[1][0], g1)  # from zero: p = b = -g2 = g1
    assert torch.allclose(hf.warm, torch.linalg.solve(damped_matrix(lam2), g1), rtol=1e-8, atol=1e-10)
    assert info2.cg_iters == N
    assert info2.cg_warm_start_reset and step_record(info2)["cg_warm_start_reset"] is True


def test_uphill_warm_start_is_kept_when_the_safeguard_is_off():
    """cg.reset_uphill=false: the paper's rule, the decayed warm start is always CG's start."""
    hf, backend, sampler = make(cg=CGOptions(reset_uphill=False))
    hf.step(sampler)
    warm, lam2 = hf.warm.clone(), hf.damping
    g1 = grad(backend, THETA0, sampler.cs[0])
    _second_step_with_gradient(hf, backend, sampler, -g1)
    backend.clear()
    info2 = hf.step(sampler)
    A = damped_matrix(lam2)
    assert damped_q(-g1, 0.95 * warm, A) > 0
    assert torch.allclose(backend.products[1][0], -(A @ (0.95 * warm) - g1), rtol=1e-10, atol=1e-12)
    assert not info2.cg_warm_start_reset


def test_downhill_warm_start_is_not_reported_as_reset():
    hf, backend, sampler = make()
    assert not hf.step(sampler).cg_warm_start_reset  # no warm start at all
    g1 = grad(backend, THETA0, sampler.cs[0])
    _second_step_with_gradient(hf, backend, sampler, g1)
    assert not hf.step(sampler).cg_warm_start_reset


def test_rejected_step_restarts_next_cg_from_zero():
    hf, backend, sampler = make()
    hf.step(sampler)
    assert hf.warm is not None
    lam2 = hf.damping
    theta1 = hf.theta.clone()
    backend.bump = 100.0  # every trial point is worse: the line search fails
    backend.clear()
    info = hf.step(sampler)
    assert not info.accepted and info.reason == "line_search_failed"
    assert torch.equal(hf.theta, theta1) and hf.warm is None
    assert hf.consecutive_rejections == 1
    # rho < 1/4 raised lambda once, not twice (the rejection's boost replaces the LM update).
    assert info.rho < 0.25 and info.damping == lam2 and isclose(info.damping_next, 1.5 * lam2)
    assert isclose(hf.damping, 1.5 * lam2)
    # Backtracking, then 59 more line-search tries (f(1) is known), all on the gradient batch.
    assert {n for n, _, _ in backend.losses} == {GRAD} and len(backend.losses) >= 1 + 59
    assert info.step_size == 0.0 and info.loss_after == info.loss_before
    backend.bump = 0.0
    backend.clear()
    info3 = hf.step(sampler)
    c3 = sampler.cs[len(sampler.calls) - 2]
    g3 = grad(backend, theta1, c3)
    assert close(backend.products[0][0], -g3)  # from zero: no A x0 product first
    assert len(backend.products) == info3.cg_iters
    assert info3.accepted and hf.consecutive_rejections == 0


# -- CG backtracking, rho and the batch they are measured on --------------------------------------

def _reference_cg(g, lam, **kw):
    A = damped_matrix(lam, **kw)
    return A, cg(lambda v: A @ v, -g, max_iters=N)


def test_rho_uses_the_backtracked_iterate():
    hf, backend, sampler = make(kappa=0.3, lam=0.3)
    c_g = sampler.cs[0]
    g = grad(backend, THETA0, c_g)
    info = hf.step(sampler)
    A, ref = _reference_cg(g, 0.3)
    j, f_best, evals = expected_backtrack(backend, THETA0, c_g, ref.kept)
    chosen, d = ref.kept[j]
    assert chosen < ref.iterations  # backtracking walked back: the test can tell the two apart
    assert info.cg_chosen_iter == chosen
    f0 = F(backend, THETA0, c_g)
    rho = (f_best - f0) / damped_q(g, d, A)
    assert isclose(info.rho, rho, 1e-8)
    rho_last = (F(backend, THETA0 + ref.x, c_g) - f0) / damped_q(g, ref.x, A)
    assert not isclose(rho, rho_last, 0.1)
    assert isclose(info.damping_next, lm(0.3, rho))
    # The backtracking evaluations were at theta + x_i for the kept i, from the last one back.
    bt = [t for _, t, _ in backend.losses[:evals]]
    for t, (_, x) in zip(bt, reversed(ref.kept)):
        assert torch.allclose(t, THETA0 + x, rtol=1e-10, atol=1e-12)


def test_rho_on_gradient_batch():
    hf, backend, sampler = make(kappa=1.0, rho_batch="gradient")
    c_g = sampler.cs[0]
    g = grad(backend, THETA0, c_g)
    info = hf.step(sampler)
    A, ref = _reference_cg(g, LAM)
    j, f_best, n_bt = expected_backtrack(backend, THETA0, c_g, ref.kept)
    d = ref.kept[j][1]
    assert isclose(info.rho, (f_best - F(backend, THETA0, c_g)) / damped_q(g, d, A), 1e-8)
    assert all(n == GRAD for n, _, _ in backend.losses)
    # The line search reuses f(1) from backtracking: no second evaluation there when alpha = 1.
    assert info.step_size == 1.0
    assert len(backend.losses) == n_bt
    assert isclose(info.forward_evals, CURV / UNIT + n_bt * GRAD / UNIT)
    assert isclose(info.loss_after, f_best)


def test_rho_on_curvature_batch():
    hf, backend, sampler = make(kappa=1.0, rho_batch="curvature")
    c_g, c_c = sampler.cs[0], sampler.cs[1]
    assert not torch.equal(c_g, c_c)
    g = grad(backend, THETA0, c_g)
    info = hf.step(sampler)
    A, ref = _reference_cg(g, LAM)
    j, f_best, n_bt = expected_backtrack(backend, THETA0, c_c, ref.kept)
    d = ref.kept[j][1]
    assert info.cg_chosen_iter == ref.kept[j][0]
    fc0 = F(backend, THETA0, c_c)  # the prepared loss plus the L2 term
    rho = (f_best - fc0) / damped_q(g, d, A)
    assert isclose(info.rho, rho, 1e-8)
    # The same iterate measured on the gradient batch gives another rho: the test tells them apart.
    rho_g = (F(backend, THETA0 + d, c_g) - F(backend, THETA0, c_g)) / damped_q(g, d, A)
    assert not isclose(rho, rho_g, 1e-3)
    norms = [n for n, _, _ in backend.losses]
    assert norms[:n_bt] == [CURV] * n_bt and set(norms[n_bt:]) == {GRAD}
    n_ls = len(norms) - n_bt
    assert n_ls >= 1  # f(1) on the gradient batch is not known: the line search measures it
    alpha = info.step_size
    assert torch.allclose(backend.losses[n_bt][1], THETA0 + d, rtol=1e-12, atol=1e-14)
    assert isclose(info.forward_evals, CURV / UNIT + n_bt * CURV / UNIT + n_ls * GRAD / UNIT)
    assert isclose(info.loss_after, F(backend, THETA0 + alpha * d, c_g))
    assert torch.allclose(hf.theta, THETA0 + alpha * d, rtol=1e-12, atol=1e-14)


def test_undamped_rho_uses_the_undamped_quadratic():
    hf, backend, sampler = make(kappa=1.0, rho="undamped", weight_cost=0.2)
    c_g = sampler.cs[0]
    g = grad(backend, THETA0, c_g, wc=0.2)
    info = hf.step(sampler)
    A, ref = _reference_cg(g, LAM, wc=0.2)
    best, fb, _ = expected_backtrack(backend, THETA0, c_g, ref.kept, wc=0.2)
    d = ref.kept[best][1]
    terms = {"linear": float(g @ d), "curvature": 0.5 * float(d @ G @ d), "weight_cost": 0.5 * 0.2 * float(d @ d)}
    q_undamped = sum(terms.values())
    df = fb - F(backend, THETA0, c_g, wc=0.2)
    assert isclose(info.rho, df / q_undamped, 1e-8)
    # The test can tell: the damped q, any term dropped or doubled (a lost 0.5) gives another rho.
    assert not isclose(df / q_undamped, df / damped_q(g, d, A), 1e-3)
    for t in terms.values():
        assert not isclose(df / q_undamped, df / (q_undamped - t), 1e-3)
        assert not isclose(df / q_undamped, df / (q_undamped + t), 1e-3)
    # One more product, at the chosen iterate, without the structural term; counted as work.
    assert len(backend.products) == info.cg_iters + 1
    v, w = backend.products[-1]
    assert w == 0.0 and torch.allclose(v, d, rtol=1e-10, atol=1e-12)
    assert isclose(info.minibatches, GRAD / UNIT + (info.cg_iters + 1) * CURV / UNIT)


# -- the line search and the Levenberg-Marquardt update -------------------------------------------

def test_line_search_finds_the_armijo_step():
    """Strong quartic term: the full step fails Armijo; alpha is the first 0.8^n that passes."""
    hf, backend, sampler = make(kappa=10.0)
    c_g = sampler.cs[0]
    g = grad(backend, THETA0, c_g)
    info = hf.step(sampler)
    A, ref = _reference_cg(g, LAM)
    j, f_best, n_bt = expected_backtrack(backend, THETA0, c_g, ref.kept)
    d = ref.kept[j][1]
    f0 = F(backend, THETA0, c_g)
    alpha, n_ls = 1.0, 0
    while True:
        fa = F(backend, THETA0 + alpha * d, c_g)
        if fa < f0 and fa <= f0 + 1e-2 * alpha * float(g @ d):
            break
        alpha *= 0.8
        n_ls += 1
    assert alpha < 1.0 and info.accepted
    assert info.step_size == alpha
    assert isclose(info.loss_after, fa)
    assert torch.allclose(hf.theta, THETA0 + alpha * d, rtol=1e-12, atol=1e-14)
    # forward work: prepare, backtracking, and the line search's tries after the known f(1)
    assert len(backend.losses) == n_bt + n_ls
    assert isclose(info.forward_evals, CURV / UNIT + (n_bt + n_ls) * GRAD / UNIT)
    rho = (f_best - f0) / damped_q(g, d, A)
    assert rho < 0.25 and isclose(info.damping_next, 1.5 * LAM) and isclose(hf.damping, 1.5 * LAM)


def test_line_search_options_are_used():
    hf, backend, sampler = make(kappa=10.0, line_search=LineSearchOptions(shrink=0.5, c=0.3))
    c_g = sampler.cs[0]
    g = grad(backend, THETA0, c_g)
    info = hf.step(sampler)
    _, ref = _reference_cg(g, LAM)
    j, _, _ = expected_backtrack(backend, THETA0, c_g, ref.kept)
    d = ref.kept[j][1]
    f0 = F(backend, THETA0, c_g)
    alpha = 1.0
    while not (F(backend, THETA0 + alpha * d, c_g) <= f0 + 0.3 * alpha * float(g @ d)):
        alpha *= 0.5
    assert info.step_size == alpha and alpha not in (1.0, 0.8, 0.64, 0.512)


def test_damping_drops_when_the_model_is_good():
    hf, backend, sampler = make(kappa=0.0)
    info = hf.step(sampler)
    assert info.accepted is True and info.reason == "ok" and info.step_size == 1.0
    assert info.rho > 0.75 and isclose(info.damping_next, LAM * 2 / 3) and hf.damping == info.damping_next


def test_damping_options_are_used():
    hf, backend, sampler = make(kappa=0.0, damping=DampingOptions(drop=0.5, min=0.5))
    info = hf.step(sampler)
    assert info.rho > 0.75 and info.damping_next == 0.5  # 0.7 * 0.5 = 0.35, clamped at min 0.5


# -- the work counters --------------------------------------------------------------------------------

def test_minibatches_count_gradient_and_products():
    hf, backend, sampler = make()
    info = hf.step(sampler)
    assert isclose(info.minibatches, GRAD / UNIT + len(backend.products) * CURV / UNIT)
    assert isclose(info.forward_evals, CURV / UNIT + len(backend.losses) * GRAD / UNIT)
    assert info.steps_per_sequence == 1.0


def test_steps_per_sequence_reported():
    cs = [vec(s) for s in range(1, 4)]
    hf, backend, _ = make(cs=cs)
    info = hf.step(Sampler(cs, T=3))
    assert info.steps_per_sequence == 3.0


# -- CG options reach CG ------------------------------------------------------------------------------

N2 = 40
G2 = spd(N2, -2.0, 1.0, seed=3)
GS2 = spd(N2, -1.0, 0.0, seed=4)
# Two sets of non-default CG options: in the first CG stops at max_iters, in the second on progress.
# Each option changes the outcome in the set that names it, so an option HF fails to pass is seen.
CG_CASES = [
    (dict(max_iters=13, eps=5e-4, min_gap=10, gap_fraction=0.1, keep_first=3.0, keep_growth=1.5),
     ["max_iters", "keep_first", "keep_growth"]),
    (dict(max_iters=300, eps=2e-3, min_gap=4, gap_fraction=0.3, keep_first=5.0, keep_growth=1.3),
     ["eps", "min_gap", "gap_fraction"]),
]
CG_DEFAULTS = dict(max_iters=300, eps=5e-4, min_gap=10, gap_fraction=0.1, keep_first=5.0, keep_growth=1.3)


def _cg_signature(g, lam, **kw):
    A = damped_matrix(lam, Gm=G2, GSm=GS2)
    res = cg(lambda v: A @ v, -g, **kw)
    return res.iterations, res.stop_reason, [i for i, _ in res.kept]


@pytest.mark.parametrize("case", range(len(CG_CASES)))
def test_cg_options_reach_cg(case):
    opts, sensitive = CG_CASES[case]
    theta = vec(11, 0.1, n=N2)
    cs = [vec(s, n=N2) for s in range(20, 24)]
    hf, backend, sampler = make(kappa=3.0, lam=0.01, cs=cs, theta=theta, Gm=G2, GSm=GS2, cg=CGOptions(**opts))
    g = grad(backend, theta, cs[0])
    info = hf.step(sampler)
    signature = _cg_signature(g, 0.01, **opts)
    for name in sensitive:
        assert _cg_signature(g, 0.01, **{**opts, name: CG_DEFAULTS[name]}) != signature, name
    assert (info.cg_iters, info.cg_stop) == signature[:2]
    # The backtracking evaluations walk the kept iterates from the last one back.
    A = damped_matrix(0.01, Gm=G2, GSm=GS2)
    ref = cg(lambda v: A @ v, -g, **opts)
    j, _, n_bt = expected_backtrack(backend, theta, cs[0], ref.kept)
    assert info.cg_chosen_iter == ref.kept[j][0]
    assert n_bt >= 2
    for (_, t, _), (_, x) in zip(backend.losses[:n_bt], reversed(ref.kept)):
        assert float((t - theta - x).norm()) <= 1e-6 * float(x.norm())  # CG amplifies rounding here


# -- rejections ----------------------------------------------------------------------------------------

def _assert_rejected(info: HFStepInfo, hf, reason, lam=LAM):
    assert info.accepted is False and info.reason == reason
    assert info.damping == lam and isclose(info.damping_next, 1.5 * lam) and isclose(hf.damping, 1.5 * lam)
    assert info.step_size == 0.0 and info.loss_after == info.loss_before or math.isnan(info.loss_before)
    assert hf.warm is None
    assert torch.equal(hf.theta, THETA0)


def test_non_finite_gradient_rejected_before_any_product():
    hf, backend, sampler = make()
    backend.G = G.clone()
    c = sampler.cs[0].clone()
    c[0] = math.nan
    sampler.cs[0] = c
    info = hf.step(sampler)
    _assert_rejected(info, hf, "non_finite_gradient")
    assert backend.products == [] and backend.prepared == [] and backend.losses == []
    assert info.rho is None and info.cg_iters == 0 and info.cg_chosen_iter == 0 and info.cg_stop == ""
    assert isclose(info.minibatches, GRAD / UNIT) and info.forward_evals == 0.0
    assert hf.consecutive_rejections == 1


def test_non_finite_loss_with_finite_gradient_rejected():
    class NaNLoss(RecordingQuadratic):
        def loss_and_grad(self, theta, batch, norm=None):
            f, g = super().loss_and_grad(theta, batch, norm)
            return math.nan, g

    theta = THETA0.clone()
    backend = NaNLoss(G, GS)
    hf = HessianFree(theta, backend, options(), LAM)
    info = hf.step(Sampler([vec(s) for s in range(1, 4)]))
    assert info.reason == "non_finite_gradient" and backend.products == []


def test_non_finite_curvature_rejected():
    hf, backend, sampler = make()
    hf.step(sampler)
    lam = hf.damping
    theta1 = hf.theta.clone()
    backend.product_scale = math.nan
    backend.clear()
    info = hf.step(sampler)
    assert not info.accepted and info.reason == "non_finite_curvature"
    assert info.cg_stop == "non_finite" and info.cg_iters == 0
    assert info.rho is None and hf.warm is None and torch.equal(hf.theta, theta1)
    assert isclose(hf.damping, 1.5 * lam) and info.damping == lam
    assert backend.losses == []  # nothing evaluated after a broken CG
    # the products tried count as work
    assert isclose(info.minibatches, GRAD / UNIT + len(backend.products) * CURV / UNIT)
    assert isclose(info.forward_evals, CURV / UNIT)


def test_non_finite_trial_loss_rejected_as_such():
    hf, backend, sampler = make()
    backend.bump = math.inf
    info = hf.step(sampler)
    _assert_rejected(info, hf, "non_finite_loss")
    assert info.rho == -math.inf
    # backtracking: the last iterate (inf), the one before (inf, not better: stop); the line search
    # knows f(1) from backtracking and tries 59 more step sizes.
    assert len(backend.losses) == 2 + 59


def test_line_search_failure_counts_its_work_and_logs(caplog):
    hf, backend, sampler = make()
    backend.bump = 100.0
    with caplog.at_level(logging.WARNING, logger="hfrnn.optim.hessian_free"):
        info = hf.step(sampler)
    _assert_rejected(info, hf, "line_search_failed")
    messages = [r.getMessage() for r in caplog.records if r.name == "hfrnn.optim.hessian_free"]
    assert messages == ["HF step rejected (line_search_failed); damping 0.7 -> 1.05"]
    n = len(backend.losses)
    assert isclose(info.forward_evals, CURV / UNIT + n * GRAD / UNIT)
    assert isclose(info.minibatches, GRAD / UNIT + len(backend.products) * CURV / UNIT)


def test_rejections_count_up_and_damping_is_capped():
    hf, backend, sampler = make(damping=DampingOptions(max=1.0), cs=[vec(s) for s in range(1, 20)])
    backend.bump = 100.0
    infos = [hf.step(sampler) for _ in range(3)]
    assert [i.damping for i in infos] == [LAM, 1.0, 1.0]
    assert hf.damping == 1.0 and hf.consecutive_rejections == 3


# -- dtype: the model's vectors stay in the model's dtype --------------------------------------------

def test_float32_parameters_get_float32_vectors():
    theta = THETA0.float()
    backend = RecordingQuadratic(G, GS)
    hf = HessianFree(theta, backend, options(), LAM)
    info = hf.step(Sampler([vec(s) for s in range(1, 4)]))
    assert info.accepted and hf.theta is theta and theta.dtype == torch.float32
    assert backend.dtypes == {torch.float32}
    assert hf.warm.dtype == torch.float64
    assert not torch.equal(theta, THETA0.float())


def test_float32_undamped_rho_and_the_step_in_the_model_dtype():
    theta = THETA0.float()
    backend = RecordingQuadratic(G, GS)
    hf = HessianFree(theta, backend, options(rho="undamped"), LAM)
    info = hf.step(Sampler([vec(s) for s in range(1, 4)]))
    assert info.accepted and info.step_size == 1.0
    assert backend.dtypes == {torch.float32}  # the extra undamped product too
    # The step taken is the chosen iterate cast to float32, as evaluated by backtracking.
    chosen = [t for _, t, f in backend.losses if f + 0.5 * WC * dot64(t, t) == info.loss_after]
    assert len(chosen) == 1 and torch.equal(theta, chosen[0])


# -- state and records -------------------------------------------------------------------------------

def test_state_dict_round_trip():
    hf, backend, sampler = make()
    hf.step(sampler)
    hf.consecutive_rejections = 2
    state = hf.state_dict()
    assert state["damping"] == hf.damping and state["consecutive_rejections"] == 2
    assert torch.equal(state["warm"], hf.warm) and state["warm"] is not hf.warm
    hf2 = HessianFree(THETA0.float(), backend, options(), 1.0)
    hf2.load_state_dict(state)
    assert hf2.damping == hf.damping and hf2.consecutive_rejections == 2
    assert hf2.warm.dtype == torch.float64 and torch.equal(hf2.warm, hf.warm)
    hf2.load_state_dict({"damping": 3, "warm": None, "consecutive_rejections": 0})
    assert hf2.warm is None and hf2.damping == 3.0 and isinstance(hf2.damping, float)
    assert hf2.state_dict() == {"damping": 3.0, "warm": None, "consecutive_rejections": 0}
    state["warm"].zero_()
    assert hf.warm.any()  # the state is a copy


def test_load_state_dict_puts_warm_on_the_parameters_device_in_float64():
    hf = HessianFree(torch.zeros(N, device="meta"), RecordingQuadratic(G, GS), options(), 1.0)
    hf.load_state_dict({"damping": 1.0, "warm": torch.ones(N, dtype=torch.float32), "consecutive_rejections": 0})
    assert hf.warm.device.type == "meta" and hf.warm.dtype == torch.float64
    hf = HessianFree(THETA0.clone(), RecordingQuadratic(G, GS), options(), 1.0)
    hf.load_state_dict({"damping": 1.0, "warm": torch.ones(N, dtype=torch.float32), "consecutive_rejections": 0})
    assert hf.warm.dtype == torch.float64 and torch.equal(hf.warm, torch.ones(N, dtype=F64))


def test_load_state_dict_puts_the_way_back_on_the_parameters_device_and_dtype():
    """The undo point of a checkpoint (saved on the CPU) is restored as the parameters are kept:
    copying it into theta must not change theta's device or dtype."""
    state = {"damping": 1.0, "warm": None, "consecutive_rejections": 0, "previous_theta": torch.ones(N, dtype=F64),
             "previous_damping": 0.5, "previous_checksum": 7}
    hf = HessianFree(torch.zeros(N, device="meta", dtype=torch.float32), RecordingQuadratic(G, GS), options(), 1.0)
    hf.load_state_dict(state)
    assert hf.previous[0].device.type == "meta" and hf.previous[0].dtype == torch.float32
    assert hf.previous[1:] == (0.5, 7)


def test_step_on_given_batches_is_step_with_a_sampler():
    """``step(sample)`` draws the gradient batch, then the curvature batch, and runs ``step_on``;
    the public API passes its own batches to ``step_on``: the same iteration, bit for bit."""
    hf, backend, sampler = make(kappa=3.0)
    ref, _, _ = make(kappa=3.0)
    for k in range(4):
        got = hf.step(sampler)
        assert [n for n, _ in sampler.calls[2 * k:]] == [GRAD, CURV]
        want = ref.step_on(*(Sampler([c]).__call__(n) for n, c in sampler.calls[2 * k:]))
        assert got == want
        assert torch.equal(hf.theta, ref.theta) and hf.damping == ref.damping and torch.equal(hf.warm, ref.warm)


def test_initial_state():
    hf, _, _ = make(lam=2)
    assert hf.damping == 2.0 and isinstance(hf.damping, float)
    assert hf.warm is None and hf.consecutive_rejections == 0


def test_defaults_are_the_spec():
    """The defaults of specs/hf-algorithm.md and the 2011 code (class-level: mutmut 3 leaves them alone)."""
    o = HFOptions()
    assert (o.cg.max_iters, o.cg.eps, o.cg.min_gap, o.cg.gap_fraction) == (300, 5e-4, 10, 0.1)
    assert (o.cg.decay, o.cg.keep_first, o.cg.keep_growth) == (0.95, 5.0, 1.3)
    assert (o.structural.enabled, o.structural.mu, o.structural.scale) == (True, 0.03, 0.25)
    assert (o.batch.gradient, o.batch.curvature) == (10000, 1000)
    assert o.weight_cost == 2e-5 and o.rho == "damped"
    assert o.rho_batch == "gradient"  # the spec says curvature; HFOptions' docstring says why not
    assert (o.damping.low, o.damping.high, o.damping.boost, o.damping.drop) == (0.25, 0.75, 1.5, 2 / 3)
    assert (o.line_search.c, o.line_search.shrink, o.line_search.max_tries) == (1e-2, 0.8, 60)


def test_hf_step_record():
    """The metrics line of an HF step (hfrnn.train.records.step_record; non-finite values cleaned once)."""
    info = HFStepInfo(damping=0.5, damping_next=0.75, rho=0.1, cg_iters=3, cg_chosen_iter=2, cg_stop="x",
                      step_size=1.0, loss_before=2.0, loss_after=1.0, accepted=True, reason="ok",
                      minibatches=1.0, forward_evals=2.0, grad_norm=3.0)
    d = step_record(info)
    assert d["lambda"] == 0.5 and d["lambda_next"] == 0.75 and "damping" not in d and "damping_next" not in d
    assert d["rho"] == 0.1 and d["steps_per_sequence"] == 1.0 and d["cg_iters"] == 3 and d["train_loss"] == 1.0
    for rho, out in [(-math.inf, "-inf"), (math.inf, "inf"), (math.nan, "nan"), (None, None), (-2.0, -2.0)]:
        info.rho = rho
        assert _clean(step_record(info))["rho"] == out


class OverflowingBackward(RecordingQuadratic):
    """The loss stays finite while the gradient is NaN at the given ``loss_and_grad`` calls (1-based):
    BPTT overflowing in float32 at long T, where the forward pass saturates and does not."""

    nan_calls: set = set()

    def loss_and_grad(self, theta, batch, norm=None):
        f, g = super().loss_and_grad(theta, batch, norm)
        return (f, g * math.nan) if len(self.grads) in self.nan_calls else (f, g)


def test_non_finite_gradient_after_an_accepted_step_takes_the_step_back():
    """Rejecting without moving would meet the same overflow at every later iteration (a run then
    ends 'diverged' with theta frozen, as 20-bit memorization at T = 200 did): the step that led
    there is undone, bitwise, with lambda raised above the one it was taken with, once."""
    theta = THETA0.clone()
    backend = OverflowingBackward(G, GS, anchor=theta.clone())
    backend.nan_calls = {2, 3}
    hf = HessianFree(theta, backend, options(), LAM)
    sampler = Sampler([vec(s) for s in range(1, 9)])
    assert hf.step(sampler).accepted
    assert not torch.equal(theta, THETA0)
    lam1 = hf.damping
    saved = hf.state_dict()  # a checkpoint here keeps the way back
    assert torch.equal(saved["previous_theta"], THETA0) and saved["previous_damping"] == LAM
    info = hf.step(sampler)
    assert not info.accepted and info.reason == "non_finite_gradient_step_undone"
    assert torch.equal(theta, THETA0)
    assert isclose(hf.damping, 1.5 * max(lam1, LAM)) and hf.warm is None and hf.consecutive_rejections == 1
    assert "previous_theta" not in hf.state_dict()
    info = hf.step(sampler)  # NaN again, at THETA0: nothing left to undo, a plain rejection
    assert info.reason == "non_finite_gradient" and torch.equal(theta, THETA0) and hf.consecutive_rejections == 2
    assert hf.step(sampler).accepted

    other = HessianFree(THETA0.clone(), RecordingQuadratic(G, GS), options(), LAM)
    other.load_state_dict(saved)
    assert torch.equal(other.previous[0], THETA0) and other.previous[1] == LAM
    other.load_state_dict({k: v for k, v in saved.items() if not k.startswith("previous")})  # an 0.4 checkpoint
    assert other.previous is None


def after_one_accepted_step(backend_class, nan_calls):
    """theta, backend (NaN gradients at ``nan_calls``), HF and sampler after one accepted step."""
    theta = THETA0.clone()
    backend = backend_class(G, GS, anchor=theta.clone())
    backend.nan_calls = nan_calls
    hf = HessianFree(theta, backend, options(), LAM)
    sampler = Sampler([vec(s) for s in range(1, 9)])
    assert hf.step(sampler).accepted
    return theta, backend, hf, sampler


def test_a_step_is_not_taken_back_over_parameters_changed_since(caplog):
    """The undo restores theta from before the last accepted step only while theta is still what
    that step left: parameters the caller changed in between (a library user's edit, a loaded
    state) are kept, and the overflow is a plain rejection."""
    theta, backend, hf, sampler = after_one_accepted_step(OverflowingBackward, nan_calls={2})
    theta.add_(1e-3)  # the caller moves the parameters
    edited = theta.clone()
    saved = hf.state_dict()
    with caplog.at_level(logging.WARNING, logger="hfrnn.optim.hessian_free"):
        info = hf.step(sampler)
    assert info.reason == "non_finite_gradient" and torch.equal(theta, edited) and hf.previous is None
    assert "theta changed since the last accepted step: it is not taken back" in caplog.messages
    # a checkpoint carries the check; one from 0.5.0 (no checksum) still undoes as before
    other = HessianFree(edited.clone(), RecordingQuadratic(G, GS), options(), LAM)
    other.load_state_dict(saved)
    assert other.previous[2] == saved["previous_checksum"] is not None
    other.load_state_dict({k: v for k, v in saved.items() if k != "previous_checksum"})
    assert other.previous[2] is None


class SwitchableCurvature(OverflowingBackward):
    """Curvature products turn NaN while ``bad`` is set (CG then rejects the step)."""

    bad = False

    def product(self, v, structural_weight):
        out = super().product(v, structural_weight)
        return out * math.nan if self.bad else out


def test_a_finite_gradient_confirms_the_last_step():
    """Once an iteration has seen a finite gradient, the step before it stands for good: a later
    overflow (after this iteration's own step was rejected) is a plain rejection, not an undo."""
    theta, backend, hf, sampler = after_one_accepted_step(SwitchableCurvature, nan_calls={3})
    backend.bad = True
    info = hf.step(sampler)  # a finite gradient, then NaN products: rejected
    assert info.reason == "non_finite_curvature" and hf.previous is None
    assert "previous_theta" not in hf.state_dict()
    backend.bad = False
    kept = theta.clone()
    info = hf.step(sampler)  # the gradient overflows: nothing to take back
    assert info.reason == "non_finite_gradient" and torch.equal(theta, kept)
