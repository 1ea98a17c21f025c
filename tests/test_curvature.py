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
    b = auto_block(30, 100, torch.float32, "cpu")
    assert b * 100 * 4 <= STEP_BYTES < (b + 1) * 100 * 4
    assert auto_block(200, 100, torch.float32, "cpu") == b   # independent of T
    assert auto_block(30, 100, torch.float64, "cpu") == b // 2
    assert auto_block(100, 5000, torch.float32, "cpu") == 32  # clamped below
    assert auto_block(2, 3, torch.float32, "cpu") == 1024      # and above
    assert auto_block(100, 100, torch.float32, "meta") == 0   # not a CPU: the whole batch
    with pytest.raises(ValueError):
        RNNFastCurvature(None, "squared", block=-1)
