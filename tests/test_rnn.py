"""The RNN forward pass against a direct loop over the paper's equations 1-4."""
import torch

from hfrnn.models.rnn import RNN, sparse_init, unroll, unroll_states


def naive(model: RNN, x: torch.Tensor):
    """Equations 1-4 one sequence and one step at a time, b_h^init in place of W_hh h_0."""
    T, B, _ = x.shape
    s_all = torch.zeros(T, B, model.W_yh.shape[0], dtype=x.dtype)
    t_all = torch.zeros(T, B, model.W_hh.shape[0], dtype=x.dtype)
    for b in range(B):
        h = None
        for i in range(T):
            rec = model.b_init if h is None else model.W_hh @ h
            t = model.W_hx @ x[i, b] + rec + model.b_h
            h = torch.tanh(t)
            t_all[i, b], s_all[i, b] = t, model.W_yh @ h + model.b_y
    return s_all, t_all


def test_forward_matches_equations():
    g = torch.Generator().manual_seed(0)
    m = RNN(3, 7, 2, generator=g).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))
        x = torch.randn(6, 4, 3, generator=g, dtype=torch.float64)
        s, t = m(x)
        s_ref, t_ref = naive(m, x)
        s2, t2, h2 = unroll(dict(m.named_parameters()), x)
        s3, h3 = unroll_states(dict(m.named_parameters()), x)
    assert torch.allclose(s, s_ref, atol=1e-12) and torch.allclose(t, t_ref, atol=1e-12)
    assert torch.allclose(s2, s_ref, atol=1e-12) and torch.allclose(h2, torch.tanh(t_ref), atol=1e-12)
    assert torch.allclose(t2, t_ref, atol=1e-12)
    assert torch.equal(s3, s2) and torch.equal(h3, h2)  # the in-place pass does the same arithmetic


def test_autograd_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(1)
    m = RNN(2, 5, 1, generator=g).double()
    x = torch.randn(5, 3, 2, generator=g, dtype=torch.float64)
    params = list(m.parameters())
    loss = lambda: m(x)[0].pow(2).sum()
    grads = torch.autograd.grad(loss(), params)
    for p, gp in zip(params, grads):
        for idx in [(0,) * p.dim(), tuple(s - 1 for s in p.shape)]:
            with torch.no_grad():
                p[idx] += 1e-6
                fp = loss().item()
                p[idx] -= 2e-6
                fm = loss().item()
                p[idx] += 1e-6
            assert abs((fp - fm) / 2e-6 - gp[idx].item()) < 1e-6


def test_sparse_init_and_input_scale():
    g = torch.Generator().manual_seed(2)
    w = sparse_init(100, 100, 15, g)
    assert ((w != 0).sum(1) == 15).all()
    assert 0.7 < w[w != 0].std().item() * 15 ** 0.5 < 1.3
    m = RNN(2, 100, 1, generator=torch.Generator().manual_seed(3))
    assert ((m.W_hx != 0).sum(1) == 2).all()  # fan-in 2 < 15: every input weight non-zero
    assert m.W_hx.abs().max() < 0.25 * 5 and torch.count_nonzero(m.b_init) == 0


def test_state_buffer_forward_for_narrow_and_wide_inputs():
    """The input term rides in the step's product (rows ``[x_i ; [i == 0] ; 1 ; h_{i-1}]`` of the
    state buffer) for any input width; outputs at every step; ``h`` a view into the buffer."""
    for n_in in (1, 2, 12):
        g = torch.Generator().manual_seed(n_in)
        m = RNN(n_in, 5, 3, generator=g).double()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            x = torch.randn(7, 4, n_in, generator=g, dtype=torch.float64)
            s_ref, t_ref = naive(m, x)
            s, h = unroll_states(dict(m.named_parameters()), x)
        assert s.shape == (7, 4, 3) and h.shape == (7, 4, 5)
        assert torch.allclose(s, s_ref, atol=1e-12) and torch.allclose(h, torch.tanh(t_ref), atol=1e-12)


def test_run_states_stops_early_and_scores_chosen_steps():
    from hfrnn.models.rnn import hidden_weights, output_weights, run_states, state_buffer
    g = torch.Generator().manual_seed(5)
    m = RNN(2, 4, 2, generator=g).double()
    x = torch.randn(6, 3, 2, generator=g, dtype=torch.float64)
    p = {k: v.detach() for k, v in m.named_parameters()}
    s_ref, t_ref = naive(m, x)
    Z = state_buffer(x, 4, steps=3)
    s = torch.empty(2, 2, 3, dtype=torch.float64)
    run_states(Z, hidden_weights(p), 3, W_out=output_weights(p), pos=[0, -1, 1], s=s)
    assert Z.shape == (4, 2 + 2 + 4, 3)
    assert torch.allclose(Z[1:, 4:].transpose(1, 2), torch.tanh(t_ref[:3]), atol=1e-12)
    assert torch.allclose(s.transpose(1, 2), s_ref[[0, 2]], atol=1e-12)
    assert state_buffer(x, 4, steps=3, out=Z) is Z  # a buffer of the right shape is reused


def test_sigmoid_form_of_tanh_is_float_rounding_away_from_tanh():
    """The fast loops' ``tanh(t) = 2 sigmoid(2 t) - 1``: absolute error at float rounding of a value
    of order 1 in both precisions, exact at 0 and saturating to +-1 without overflow; and the
    doubled product gives back the pre-activations exactly."""
    from hfrnn.models.rnn import tanh_from_double_
    t = torch.cat([torch.linspace(-30, 30, 600_001, dtype=torch.float64), torch.tensor([0.0, 1e-30, -1e-30])])
    ref = torch.tanh(t)
    for dtype, tol in ((torch.float32, 2.5e-7), (torch.float64, 5e-16)):
        h = tanh_from_double_(2 * t.to(dtype))
        err = (h.double() - ref).abs()
        assert err.max() <= tol, (dtype, err.max())
        assert h.abs().max() <= 1 and h[-3] == 0
    big = tanh_from_double_(torch.tensor([-200.0, 200.0]))
    assert big.tolist() == [-1.0, 1.0]
    g = torch.Generator().manual_seed(7)
    m = RNN(3, 6, 2, generator=g)
    x = torch.randn(5, 4, 3, generator=g)
    with torch.no_grad():
        s, t, h = unroll(dict(m.named_parameters()), x)
        s_ref, t_ref = naive(m.double(), x.double())
    assert torch.allclose(t.double(), t_ref, atol=1e-5)
    assert (h.double() - torch.tanh(t.double())).abs().max() <= 2.5e-7  # float32: h from t, at rounding level
