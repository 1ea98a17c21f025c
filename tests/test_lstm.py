"""The LSTM: gradient against finite differences, generic curvature against the dense oracle,
shared gates, initialisation, peepholes and parameter counts."""
import pytest
import torch
from torch.func import functional_call

from hfrnn.curvature.generic import GenericCurvature
from hfrnn.curvature.oracle import dense_gauss_newton, dense_gradient
from hfrnn.linalg.params import ParamLayout
from hfrnn.models.lstm import LSTM, count_parameters, lstm_step, unroll
from hfrnn.models.rnn import RNN

from .cases import CASES, make_case

BLOCKS, CELLS = 2, 2


def lstm_case(case, peepholes):
    """The tiny case's batch with a float64 LSTM and dense random parameters."""
    _, _, _, batch = make_case(case)
    g = torch.Generator().manual_seed(1)
    model = LSTM(case.n_in, case.n_out, blocks=BLOCKS, cells_per_block=CELLS, peepholes=peepholes,
                 generator=g).double()
    layout = ParamLayout.of(dict(model.named_parameters()))
    theta = 0.7 * torch.randn(layout.numel, generator=g, dtype=torch.float64)
    return model, layout, theta, batch


def forward_fn(model, layout, x):
    return lambda th: functional_call(model, layout.unflatten(th), (x,))


@pytest.fixture(params=[(c, p) for c in CASES for p in (False, True)],
                ids=[f"{c.name}-{'peep' if p else 'nopeep'}" for c in CASES for p in (False, True)])
def case(request):
    c, peep = request.param
    model, layout, theta, batch = lstm_case(c, peep)
    G, G_S = dense_gauss_newton(forward_fn(model, layout, batch.inputs), theta, batch, c.loss, 1.0)
    return c, model, layout, theta, batch, G, G_S


def test_gradient_matches_finite_differences_and_oracle(case):
    c, model, layout, theta, batch, _, _ = case
    be = GenericCurvature(model, c.loss)
    _, g = be.loss_and_grad(theta, batch)
    assert torch.allclose(g, dense_gradient(forward_fn(model, layout, batch.inputs), theta, batch, c.loss),
                          atol=1e-10)
    gen = torch.Generator().manual_seed(7)
    eps = 1e-6
    for _ in range(3):
        v = torch.randn(layout.numel, generator=gen, dtype=torch.float64)
        fd = (be.loss(theta + eps * v, batch) - be.loss(theta - eps * v, batch)) / (2 * eps)
        assert abs(fd - float(g @ v)) < 1e-7 * max(1.0, abs(fd))
    # and coordinate-wise on a few parameters of every tensor
    for k in range(0, layout.numel, max(1, layout.numel // 15)):
        e = torch.zeros_like(theta)
        e[k] = eps
        fd = (be.loss(theta + e, batch) - be.loss(theta - e, batch)) / (2 * eps)
        assert abs(fd - float(g[k])) < 1e-7 * max(1.0, abs(fd))


@pytest.mark.parametrize("w", [0.0, 0.37])
def test_generic_product_matches_dense_oracle(case, w):
    c, model, layout, theta, batch, G, G_S = case
    be = GenericCurvature(model, c.loss)
    be.prepare(theta, batch)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(layout.numel, generator=gen, dtype=torch.float64)
        assert torch.allclose(be.product(v, w), (G + w * G_S) @ v, atol=1e-10, rtol=1e-10)


def test_generic_product_symmetric_psd(case):
    c, model, layout, theta, batch, G, G_S = case
    be = GenericCurvature(model, c.loss)
    be.prepare(theta, batch)
    gen = torch.Generator().manual_seed(4)
    u, v = (torch.randn(layout.numel, generator=gen, dtype=torch.float64) for _ in range(2))
    for w in (0.0, 0.37):
        assert abs(u @ be.product(v, w) - v @ be.product(u, w)) < 1e-10
        assert v @ be.product(v, w) >= -1e-12
    assert torch.linalg.eigvalsh(G).min() > -1e-10
    assert torch.linalg.eigvalsh(G + 0.5 * G_S).min() > -1e-10


@pytest.mark.parametrize("peepholes", [False, True])
def test_gates_are_shared_within_a_block(peepholes):
    g = torch.Generator().manual_seed(2)
    blocks, cells, n, B = 3, 4, 5, 6
    model = LSTM(n, 2, blocks=blocks, cells_per_block=cells, peepholes=peepholes, init_scale=0.5,
                 generator=g).double()
    p = dict(model.named_parameters())
    M = blocks * cells
    a = torch.randn(B, 3 * blocks + M, generator=g, dtype=torch.float64)
    y_prev = torch.randn(B, M, generator=g, dtype=torch.float64)
    c_prev = torch.randn(B, M, generator=g, dtype=torch.float64)
    W_y_t = torch.cat([p["W_gy"], p["W_cy"]]).t()
    with torch.no_grad():
        c, y, gates = lstm_step(a, y_prev, c_prev, W_y_t, p.get("peep"), blocks)
    assert gates.shape == (B, 3, blocks)
    # Cell by cell: c = f_j c_prev + i_j tanh(z), y = o_j tanh(c) with j = m // cells.
    z = (a + y_prev @ W_y_t).detach()
    i, f, o = gates.unbind(1)
    block_of = torch.arange(M) // cells
    assert torch.allclose(c, f[:, block_of] * c_prev + i[:, block_of] * torch.tanh(z[:, 3 * blocks:]))
    assert torch.allclose(y, o[:, block_of] * torch.tanh(c))
    if not peepholes:
        assert torch.allclose(gates, torch.sigmoid(z[:, :3 * blocks]).view(B, 3, blocks))
    # Moving one block's input-gate bias scales all of that block's first cell states by one
    # common factor and leaves every other block alone.
    x = torch.randn(1, B, n, generator=g, dtype=torch.float64)
    with torch.no_grad():
        _, c0 = model(x)
        model.b_g[1] += 0.8
        _, c1 = model(x)
    ratio = (c1[0] / c0[0]).view(B, blocks, cells)
    assert torch.allclose(ratio[:, 1], ratio[:, 1, :1].expand(B, cells))
    assert not torch.allclose(ratio[:, 1], torch.ones(B, cells, dtype=torch.float64))
    assert torch.equal(ratio[:, [0, 2]], torch.ones(B, 2, cells, dtype=torch.float64))


def test_initialisation():
    model = LSTM(7, 3, blocks=4, cells_per_block=5, forget_bias=2.5, init_scale=0.1,
                 generator=torch.Generator().manual_seed(0))
    b = model.b_g.detach().view(3, 4)
    assert torch.equal(b[1], torch.full((4,), 2.5))  # forget gates
    assert torch.equal(b[0], torch.zeros(4)) and torch.equal(b[2], torch.zeros(4))
    assert torch.equal(model.b_c.detach(), torch.zeros(20)) and torch.equal(model.b_y.detach(), torch.zeros(3))
    for name in ("W_gx", "W_gy", "W_cx", "W_cy", "W_yc"):
        w = getattr(model, name).detach()
        assert w.abs().max() <= 0.1 and w.std() > 0.03, name
    same = LSTM(7, 3, blocks=4, cells_per_block=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same.W_cy, model.W_cy)  # the generator alone decides the weights


def test_peepholes_parameter_count_and_effect():
    for n_in, n_out, blocks, cells in [(2, 1, 1, 1), (5, 3, 2, 4), (225, 225, 30, 10)]:
        for peep in (False, True):
            model = LSTM(n_in, n_out, blocks=blocks, cells_per_block=cells, peepholes=peep)
            numel = sum(q.numel() for q in model.parameters())
            assert numel == count_parameters(n_in, n_out, blocks=blocks, cells_per_block=cells, peepholes=peep)
        assert (count_parameters(n_in, n_out, blocks=blocks, cells_per_block=cells, peepholes=True)
                - count_parameters(n_in, n_out, blocks=blocks, cells_per_block=cells)) == 3 * blocks * cells
    g = torch.Generator().manual_seed(5)
    model = LSTM(3, 2, blocks=2, cells_per_block=3, peepholes=True, init_scale=0.5, generator=g).double()
    x = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    p = dict(model.named_parameters())
    s1, _ = unroll(p, x, 2)
    s0, _ = unroll({k: v for k, v in p.items() if k != "peep"}, x, 2)
    assert not torch.allclose(s0, s1)


def test_documented_parameter_counts():
    """The module docstring's table, against the paper's 300-unit RNN."""
    table = {225: (225_825, 272_865, 273_765), 128: (167_528, 205_838, 206_738), 39: (114_039, 144_339, 145_239)}
    for n, (rnn, lstm, lstm_peep) in table.items():
        assert sum(q.numel() for q in RNN(n, 300, n).parameters()) == rnn
        assert count_parameters(n, n) == lstm and count_parameters(n, n, peepholes=True) == lstm_peep
        assert 1.0 < lstm / rnn < 1.3


def test_forward_shapes_and_dtype():
    model = LSTM(3, 2, blocks=2, cells_per_block=3)
    s, t = model(torch.randn(5, 4, 3))
    assert s.shape == (5, 4, 2) and t.shape == (5, 4, 6) and s.dtype == torch.float32
    s.sum().backward()
    assert all(q.grad is not None for q in model.parameters())
