"""Both curvature backends against the dense float64 oracle; gradients and J v against finite differences."""
import pytest
import torch

from hfrnn import losses
from hfrnn.curvature.generic import GenericCurvature
from hfrnn.curvature.oracle import dense_gauss_newton, dense_gradient
from hfrnn.curvature.protocol import valid_steps
from hfrnn.curvature.rnn_fast import RNNFastCurvature, r_forward
from hfrnn.models.rnn import unroll, unroll_autograd

from .cases import CASES, make_case

MU_WEIGHTS = [0.0, 0.37]


def backends(model, layout, loss, scale=1.0):
    return {"fast": RNNFastCurvature(layout, loss, scale), "generic": GenericCurvature(model, loss, scale)}


def forward_fn(layout, x):
    return lambda th: unroll_autograd(layout.unflatten(th), x)


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request):
    model, layout, theta, batch = make_case(request.param)
    G, G_S = dense_gauss_newton(forward_fn(layout, batch.inputs), theta, batch, request.param.loss, 1.0)
    return request.param, model, layout, theta, batch, G, G_S


@pytest.mark.parametrize("w", MU_WEIGHTS)
@pytest.mark.parametrize("name", ["fast", "generic"])
def test_product_matches_dense_oracle(case, name, w):
    c, model, layout, theta, batch, G, G_S = case
    be = backends(model, layout, c.loss)[name]
    be.prepare(theta, batch)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(layout.numel, generator=gen, dtype=torch.float64)
        ref = (G + w * G_S) @ v
        got = be.product(v, w)
        assert torch.allclose(got, ref, atol=1e-10, rtol=1e-10), (got - ref).abs().max()


def test_products_symmetric_psd(case):
    c, model, layout, theta, batch, G, G_S = case
    be = RNNFastCurvature(layout, c.loss)
    be.prepare(theta, batch)
    gen = torch.Generator().manual_seed(4)
    u, v = (torch.randn(layout.numel, generator=gen, dtype=torch.float64) for _ in range(2))
    for w in MU_WEIGHTS:
        assert abs(u @ be.product(v, w) - v @ be.product(u, w)) < 1e-10
        assert v @ be.product(v, w) >= -1e-12
    assert torch.linalg.eigvalsh(G + 0.5 * G_S).min() > -1e-10


def test_structural_term_equals_explicit_jacobian_product(case):
    """``G_S v`` equals ``J_t^T diag((1 - h^2) valid / B) J_t v`` from an explicit J_t (B sequences)."""
    c, model, layout, theta, batch, G, G_S = case
    J_t = torch.autograd.functional.jacobian(lambda th: forward_fn(layout, batch.inputs)(th)[1].reshape(-1), theta)
    _, t = forward_fn(layout, batch.inputs)(theta)
    diag = ((1 - torch.tanh(t) ** 2) * valid_steps(batch.mask).unsqueeze(-1)).reshape(-1) / batch.size
    assert torch.allclose(G_S, J_t.T @ (diag[:, None] * J_t), atol=1e-12)
    be = RNNFastCurvature(layout, c.loss)
    be.prepare(theta, batch)
    v = torch.randn(layout.numel, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    got = be.product(v, 1.0) - be.product(v, 0.0)
    assert torch.allclose(got, J_t.T @ (diag * (J_t @ v)), atol=1e-10)


def test_structural_scale_is_linear(case):
    c, model, layout, theta, batch, G, G_S = case
    be = RNNFastCurvature(layout, c.loss, structural_scale=0.25)
    be.prepare(theta, batch)
    v = torch.randn(layout.numel, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert torch.allclose(be.product(v, 2.0), (G + 0.5 * G_S) @ v, atol=1e-10)


@pytest.mark.parametrize("name", ["fast", "generic"])
def test_gradient_matches_oracle_and_finite_differences(case, name):
    c, model, layout, theta, batch, G, G_S = case
    be = backends(model, layout, c.loss)[name]
    f0, g = be.loss_and_grad(theta, batch)
    ref = dense_gradient(forward_fn(layout, batch.inputs), theta, batch, c.loss)
    assert torch.allclose(g, ref, atol=1e-10)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        v = torch.randn(layout.numel, generator=gen, dtype=torch.float64)
        eps = 1e-6
        fd = (be.loss(theta + eps * v, batch) - be.loss(theta - eps * v, batch)) / (2 * eps)
        assert abs(fd - float(g @ v)) < 1e-7 * max(1.0, abs(fd))


def test_jv_matches_finite_differences(case):
    c, model, layout, theta, batch, G, G_S = case
    p = layout.unflatten(theta)
    s, t, h = unroll(p, batch.inputs)
    v = torch.randn(layout.numel, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    Rs, Rt = r_forward(p, layout.unflatten(v), batch.inputs, h, 1 - h * h)
    eps = 1e-6
    sp, tp, _ = unroll(layout.unflatten(theta + eps * v), batch.inputs)
    sm, tm, _ = unroll(layout.unflatten(theta - eps * v), batch.inputs)
    assert torch.allclose(Rs, (sp - sm) / (2 * eps), atol=1e-8)
    assert torch.allclose(Rt, (tp - tm) / (2 * eps), atol=1e-8)


def test_fast_forward_matches_module_forward(case):
    c, model, layout, theta, batch, G, G_S = case
    s1, t1, _ = unroll(layout.unflatten(theta), batch.inputs)
    s2, t2 = unroll_autograd(layout.unflatten(theta), batch.inputs)
    assert torch.allclose(s1, s2, atol=1e-12) and torch.allclose(t1, t2, atol=1e-12)


def test_loss_hessian_closed_forms_match_autograd():
    g = torch.Generator().manual_seed(9)
    T, B, K = 3, 2, 4
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    s = torch.randn(T, B, K, generator=g, dtype=torch.float64)
    for kind in losses.LOSSES:
        y = torch.nn.functional.one_hot(torch.randint(K, (T, B), generator=g), K).double()
        H = torch.autograd.functional.hessian(lambda z: losses.loss(kind, z.view(T, B, K), y, mask, 3.0),
                                              s.reshape(-1))
        u = torch.randn(T, B, K, generator=g, dtype=torch.float64)
        assert torch.allclose(losses.hessian_vp(kind, s, u, mask, 3.0).reshape(-1), H @ u.reshape(-1), atol=1e-12)


@pytest.mark.parametrize("block", [1, 2, 3])
def test_cache_blocked_backend_matches_dense_oracle(case, block):
    """Running the time loops ``block`` sequences at a time (the CPU cache blocking) and summing
    the blocks gives the same loss, gradient and products as the oracle."""
    c, model, layout, theta, batch, G, G_S = case
    be = RNNFastCurvature(layout, c.loss, block=block)
    assert len(be._blocks(batch)) == -(-batch.inputs.shape[1] // block)
    f0 = be.prepare(theta, batch)
    assert abs(f0 - RNNFastCurvature(layout, c.loss).loss(theta, batch)) < 1e-12
    f, g = be.loss_and_grad(theta, batch)
    assert abs(f - f0) < 1e-12 and abs(be.loss(theta, batch) - f0) < 1e-12
    g_ref = dense_gradient(forward_fn(layout, batch.inputs), theta, batch, c.loss)
    assert torch.allclose(g, g_ref, atol=1e-10, rtol=1e-10)
    v = torch.randn(layout.numel, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.allclose(be.product(v, 0.37), (G + 0.37 * G_S) @ v, atol=1e-10, rtol=1e-10)


def test_auto_block_sizes_the_working_set():
    """One step's ``[H, B]`` slice fills STEP_BYTES (the loops never touch the whole history,
    so T does not enter); float64 halves the block; clamped to [32, 1024]; whole batch off the CPU."""
    from hfrnn.curvature.blocking import STEP_BYTES, auto_block
    b = auto_block(30, 1000, torch.float32, "cpu")
    assert b * 1000 * 4 <= STEP_BYTES < (b + 1) * 1000 * 4
    assert auto_block(200, 1000, torch.float32, "cpu") == b   # independent of T
    assert auto_block(30, 1000, torch.float64, "cpu") == b // 2
    # the measured optimum (benchmarks/bench_blocks.py): a batch of 1,000 in one pass up to H = 300
    assert auto_block(100, 100, torch.float32, "cpu") >= 1000 and auto_block(100, 300, torch.float32, "cpu") >= 1000
    assert auto_block(100, 50000, torch.float32, "cpu") == 32  # clamped below
    assert auto_block(2, 3, torch.float32, "cpu") == 1024      # and above
    assert auto_block(100, 100, torch.float32, "meta") == 0   # not a CPU: the whole batch
    with pytest.raises(ValueError):
        RNNFastCurvature(None, "squared", block=-1)


# ------------------------------------------------------------------------------------------------
# The fast backend's own code paths (issue 14): scored-steps-only output terms, no steps after the
# last scored one, the in-loop weight-gradient accumulation, the input term folded into the step's
# product for narrow and wide inputs, the feature-major losses, reused buffers.

def _custom_case(n_in, hidden, n_out, T, B, loss, scored, seed=0, one_hot=False):
    """A float64 case whose mask scores only the (step, sequence) pairs in ``scored``."""
    from hfrnn.linalg.params import ParamLayout
    from hfrnn.models.rnn import RNN
    from hfrnn.tasks.base import Batch
    g = torch.Generator().manual_seed(seed)
    model = RNN(n_in, hidden, n_out, generator=g).double()
    layout = ParamLayout.of(dict(model.named_parameters()))
    theta = 0.7 * torch.randn(layout.numel, generator=g, dtype=torch.float64)
    if one_hot:
        x = torch.nn.functional.one_hot(torch.randint(n_in, (T, B), generator=g), n_in).double()
    else:
        x = torch.randn(T, B, n_in, generator=g, dtype=torch.float64)
    mask = torch.zeros(T, B, dtype=torch.float64)
    for t, b in scored:
        mask[t, b] = 1.0
    if loss == "squared":
        y = torch.randn(T, B, n_out, generator=g, dtype=torch.float64)
    elif loss == "logistic":
        y = (torch.rand(T, B, n_out, generator=g) < 0.5).double()
    else:
        y = torch.nn.functional.one_hot(torch.randint(n_out, (T, B), generator=g), n_out).double()
    return model, layout, theta, Batch(x, y * mask.unsqueeze(-1), mask, mask.clone())


CUSTOM = {
    # steps 1 and 4 scored (not every sequence at 4), steps 5-7 after the last scored step
    "some-steps": dict(n_in=2, hidden=4, n_out=2, T=8, B=3, loss="squared", scored=[(1, 0), (1, 1), (1, 2), (4, 0), (4, 2)]),
    # one sequence scored early only: its later steps are invalid for structural damping
    "ragged-softmax": dict(n_in=3, hidden=3, n_out=3, T=7, B=3, loss="softmax", scored=[(2, 0), (5, 1), (5, 2), (3, 2)]),
    "single-input": dict(n_in=1, hidden=4, n_out=1, T=6, B=2, loss="logistic", scored=[(5, 0), (5, 1), (0, 1)]),
    "wide-one-hot-input": dict(n_in=12, hidden=3, n_out=2, T=5, B=3, loss="softmax", one_hot=True,
                               scored=[(t, b) for t in range(5) for b in range(3)]),
    "wide-input": dict(n_in=11, hidden=3, n_out=1, T=5, B=2, loss="squared", scored=[(4, 0), (2, 1)]),
}


@pytest.fixture(params=list(CUSTOM), scope="module")
def custom(request):
    model, layout, theta, batch = _custom_case(**CUSTOM[request.param])
    loss = CUSTOM[request.param]["loss"]
    G, G_S = dense_gauss_newton(forward_fn(layout, batch.inputs), theta, batch, loss, 1.0)
    g = dense_gradient(forward_fn(layout, batch.inputs), theta, batch, loss)
    return loss, layout, theta, batch, G, G_S, g


@pytest.mark.parametrize("block", [0, 1, 2])
def test_scored_steps_and_input_widths_match_dense_oracle(custom, block):
    """Products, gradient and loss on masks that score only some steps (and leave the last steps
    unscored), for narrow, wide and one-hot inputs, blocked or not, against the dense oracle; every
    parameter block of the gradient (W_hh from the in-loop accumulation, W_hx from the input rows
    of the state buffer, both biases) separately."""
    loss, layout, theta, batch, G, G_S, g_ref = custom
    be = RNNFastCurvature(layout, loss, block=block)
    f0 = be.prepare(theta, batch)
    s, _ = unroll_autograd(layout.unflatten(theta), batch.inputs)
    assert abs(f0 - float(losses.loss(loss, s, batch.targets, batch.mask, batch.size))) < 1e-12
    assert abs(be.loss(theta, batch) - f0) < 1e-12
    f, g = be.loss_and_grad(theta, batch)
    assert abs(f - f0) < 1e-12
    got, ref = layout.unflatten(g), layout.unflatten(g_ref)
    for name in layout.names:
        assert torch.allclose(got[name], ref[name], atol=1e-10, rtol=1e-10), name
    gen = torch.Generator().manual_seed(11)
    for w in MU_WEIGHTS:
        v = torch.randn(layout.numel, generator=gen, dtype=torch.float64)
        got, ref = layout.unflatten(be.product(v, w)), layout.unflatten((G + w * G_S) @ v)
        for name in layout.names:
            assert torch.allclose(got[name], ref[name], atol=1e-10, rtol=1e-10), (name, w)


def test_no_scored_step_gives_zero():
    model, layout, theta, batch = _custom_case(2, 3, 1, 4, 2, "squared", scored=[])
    be = RNNFastCurvature(layout, "squared")
    assert be.prepare(theta, batch) == 0.0 and be.loss(theta, batch) == 0.0
    f, g = be.loss_and_grad(theta, batch)
    assert f == 0.0 and torch.equal(g, torch.zeros_like(g))
    assert torch.equal(be.product(torch.ones_like(theta), 0.5), torch.zeros_like(theta))


def test_scored_steps_bookkeeping():
    from hfrnn.curvature.rnn_fast import ScoredSteps
    *_, batch = _custom_case(**CUSTOM["some-steps"])
    sc = ScoredSteps.of(batch)
    assert sc.steps == [1, 4] and sc.n_steps == 5
    assert sc.pos == [-1, 0, -1, -1, 1]
    assert sc.mask.shape == (2, 1, 3) and sc.targets.shape == (2, 2, 3)
    assert torch.equal(sc.mask[1, 0], torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))


def test_feature_major_losses_match_hfrnn_losses():
    """The backend's loss and gradient and the Hessian factors in its layout ([S, K, B], dim=1)
    against hfrnn.losses in the [T, B, K] layout."""
    from hfrnn.curvature import rnn_fast as rf
    g = torch.Generator().manual_seed(12)
    S, B, K = 4, 5, 3
    mask = (torch.rand(S, B, generator=g) < 0.7).double()
    s = torch.randn(S, B, K, generator=g, dtype=torch.float64)
    u = torch.randn(S, B, K, generator=g, dtype=torch.float64)
    fm = lambda z: z.transpose(1, 2).contiguous()  # noqa: E731
    w = (mask / 7.0).unsqueeze(1)
    for kind in losses.LOSSES:
        y = torch.nn.functional.one_hot(torch.randint(K, (S, B), generator=g), K).double()
        ref = losses.loss(kind, s, y, mask, 7.0)
        assert torch.allclose(rf.output_loss(kind, fm(s), fm(y), mask.unsqueeze(1)) / 7.0, ref, atol=1e-14)
        assert torch.allclose(rf.output_gradient(kind, fm(s), fm(y), w), fm(losses.grad_s(kind, s, y, mask, 7.0)),
                              atol=1e-14)
        f, p = losses.hessian_factors(kind, fm(s), w, dim=1)
        assert torch.allclose(losses.apply_hessian(f, p, fm(u), dim=1), fm(losses.hessian_vp(kind, s, u, mask, 7.0)),
                              atol=1e-14)


def test_repeated_calls_are_bitwise_identical():
    """Reused buffers (the forward workspace, the R t workspace) leave no trace: the same call
    gives the same bits, in the same backend and in a fresh one."""
    c = CASES[2]
    model, layout, theta, batch = make_case(c)
    v = torch.randn(layout.numel, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    results = []
    for be in (RNNFastCurvature(layout, c.loss, block=2), RNNFastCurvature(layout, c.loss, block=2)):
        for _ in range(2):
            f, g = be.loss_and_grad(theta, batch)
            be.prepare(theta, batch)
            results.append((f, g, be.product(v, 0.37), be.product(v, 0.0), be.product(v, 0.37)))
    for r in results[1:]:
        assert r[0] == results[0][0] and all(torch.equal(a, b) for a, b in zip(r[1:], results[0][1:]))
    assert torch.equal(results[0][2], results[0][4])


def test_automatic_blocks_are_even():
    from hfrnn.curvature.blocking import auto_block
    from hfrnn.tasks.base import Batch
    layout = make_case(CASES[0])[1]
    be = RNNFastCurvature(layout, "squared")
    n = auto_block(10, be.hidden, torch.float32, "cpu")
    B = 2 * n - 24
    x = torch.zeros(3, B, 2)
    sizes = [p.size for p in be._blocks(Batch(x, x[..., :1], x[..., 0], x[..., 0]))]
    assert sizes == [n - 12, n - 12]
    assert [p.size for p in RNNFastCurvature(layout, "squared", block=n)._blocks(
        Batch(x, x[..., :1], x[..., 0], x[..., 0]))] == [n, n - 24]  # an explicit block is kept
