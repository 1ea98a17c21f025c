"""The damping rule, CG backtracking, the line search, step rejection and a short HF run."""
import math

import torch

from hfrnn.curvature.rnn_fast import RNNFastCurvature
from hfrnn.linalg.params import ParamLayout
from hfrnn.models.rnn import RNN
from hfrnn.optim.damping import DampingOptions, reduction_ratio, update_damping
from hfrnn.optim.hessian_free import BatchOptions, HessianFree, HFOptions, HFStepInfo
from hfrnn.optim.search import LineSearchOptions, backtrack, line_search
from hfrnn.optim.sgd import SGD, SGDOptions
from hfrnn.tasks.pathological import make_task


def test_levenberg_marquardt_rule():
    o = DampingOptions()
    assert update_damping(1.0, 0.1, o) == 1.5
    assert update_damping(1.0, 0.9, o) == 2.0 / 3.0
    assert update_damping(1.0, 0.5, o) == 1.0
    assert update_damping(1.0, 0.25, o) == 1.0 and update_damping(1.0, 0.75, o) == 1.0
    assert update_damping(1.0, -math.inf, o) == 1.5
    assert update_damping(1.0, math.nan, o) == 1.5
    assert update_damping(o.max, 0.0, o) == o.max


def test_reduction_ratio():
    assert reduction_ratio(0.5, 1.0, -1.0) == 0.5
    assert reduction_ratio(math.nan, 1.0, -1.0) == -math.inf
    assert reduction_ratio(0.5, 1.0, 0.0) == -math.inf


def test_backtrack_walks_back_until_worse():
    kept = [(i, torch.tensor([float(i)])) for i in (5, 7, 9, 11)]
    vals = {5: 3.0, 7: 1.0, 9: 2.0, 11: 2.5}
    j, f, n = backtrack(kept, lambda x: vals[int(x)])
    assert (kept[j][0], f, n) == (7, 1.0, 4)
    # correct walk: 11 (2.5) -> 9 (2.0, better) -> 7 (1.0, better) -> 5 (3.0, worse: stop)


def test_backtrack_keeps_last_when_best():
    kept = [(i, torch.tensor([float(i)])) for i in (5, 7, 9)]
    j, f, n = backtrack(kept, lambda x: -float(x))
    assert kept[j][0] == 9 and n == 2


def test_line_search_armijo():
    f = lambda a: (a - 0.3) ** 2  # f(0) = 0.09, slope at 0 along d: -0.6
    alpha, fa, n = line_search(f, 0.09, -0.6, LineSearchOptions())
    assert alpha is not None and fa <= 0.09 + 1e-2 * alpha * -0.6
    assert math.isclose(alpha, 0.8 ** (n - 1))
    assert alpha <= 0.6  # alpha = 1 gives 0.49 > 0.09
    none, _, n2 = line_search(lambda a: 1.0 + a, 0.5, -1.0, LineSearchOptions(max_tries=5))
    assert none is None and n2 == 5
    nan, _, _ = line_search(lambda a: math.nan, 0.5, -1.0, LineSearchOptions(max_tries=3))
    assert nan is None
    # A known f(1) is used, not recomputed.
    calls = []
    a1, fa1, n1 = line_search(lambda a: calls.append(a) or (a - 0.3) ** 2, 0.09, -0.6, LineSearchOptions(),
                              f_at_one=0.49)
    assert 1.0 not in calls and n1 == len(calls) and a1 == alpha and fa1 == fa


def _setup(T=12, seed=0, hidden=20):
    task = make_task("addition", T, test_size=200)
    model = RNN(task.n_in, hidden, task.n_out, generator=torch.Generator().manual_seed(seed))
    layout = ParamLayout.of(dict(model.named_parameters()))
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()}).clone()
    gen = torch.Generator().manual_seed(seed)
    return task, layout, theta, (lambda n: task.sample(n, gen))


def _small_opts(**kw):
    return HFOptions(batch=BatchOptions(gradient=400, curvature=200, chunk=400), **kw)


def test_hf_reduces_loss_on_tiny_addition():
    task, layout, theta, sample = _setup()
    hf = HessianFree(theta, RNNFastCurvature(layout, task.loss), _small_opts(), 0.1)
    infos = [hf.step(sample) for _ in range(6)]
    assert all(math.isfinite(i.loss_before) for i in infos)
    assert infos[-1].loss_after < 0.5 * infos[0].loss_before
    assert sum(i.accepted for i in infos) >= 4
    assert all(i.minibatches >= 0.4 + 0.2 * i.cg_iters - 1e-9 for i in infos)


class NaNBackend(RNNFastCurvature):
    """Returns a NaN loss whenever the parameters moved from where it was prepared."""

    def loss(self, theta, batch, norm=None):
        return math.nan


def test_nan_loss_rejects_step_and_raises_damping():
    task, layout, theta, sample = _setup()
    before = theta.clone()
    hf = HessianFree(theta, NaNBackend(layout, task.loss), _small_opts(), 0.1)
    info = hf.step(sample)
    assert not info.accepted and info.reason in ("non_finite_loss", "line_search_failed")
    assert torch.equal(theta, before)
    assert hf.damping > 0.1 and hf.warm is None


class NaNGradBackend(RNNFastCurvature):
    def loss_and_grad(self, theta, batch, norm=None):
        f, g = super().loss_and_grad(theta, batch, norm)
        return f, g * math.nan


def test_nan_gradient_rejected():
    task, layout, theta, sample = _setup()
    before = theta.clone()
    hf = HessianFree(theta, NaNGradBackend(layout, task.loss), _small_opts(), 0.1)
    info = hf.step(sample)
    assert info.reason == "non_finite_gradient" and not info.accepted
    assert torch.equal(theta, before) and math.isclose(hf.damping, 0.15)


class RecordingRNN(RNNFastCurvature):
    """The real RNN backend, recording every product's vector and every loss's batch (by ``norm``)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.vectors, self.loss_norms = [], []

    def product(self, v, structural_weight):
        self.vectors.append(v.clone())
        return super().product(v, structural_weight)

    def loss(self, theta, batch, norm=None):
        self.loss_norms.append(batch.size if norm is None else norm)
        return super().loss(theta, batch, norm)


def test_warm_start_decay_and_reset():
    task, layout, theta, sample = _setup()
    backend = RecordingRNN(layout, task.loss)
    hf = HessianFree(theta, backend, _small_opts(), 0.1)
    info = hf.step(sample)
    assert hf.warm is not None and hf.warm.dtype == torch.float64
    # The first CG starts from zero: its first product is along -g, not a multiple of a warm start.
    assert info.cg_iters == len(backend.vectors)
    warm = hf.warm.clone()
    backend.vectors.clear()
    info = hf.step(sample)
    # The second starts from 0.95 times the first one's last iterate: CG's first product is A x0.
    assert torch.equal(backend.vectors[0], (0.95 * warm).to(theta.dtype))
    assert len(backend.vectors) == info.cg_iters + 1
    # A rejected step resets the warm start: the next CG starts from zero again. _reject sets every
    # field a rejection decides, whatever the record held.
    lam = hf.damping
    r = hf._reject(HFStepInfo(loss_before=1.0, damping=99.0, damping_next=99.0, rho=None, cg_iters=0,
                              cg_chosen_iter=0, cg_stop="", step_size=0.5, loss_after=5.0, accepted=True,
                              reason="x", minibatches=0.0, forward_evals=0.0, grad_norm=0.0), "test")
    assert hf.warm is None
    assert r.accepted is False and r.reason == "test" and r.step_size == 0.0 and r.loss_after == 1.0
    assert r.damping == lam and r.damping_next == hf.damping == 1.5 * lam
    backend.vectors.clear()
    info = hf.step(sample)
    assert len(backend.vectors) == info.cg_iters


def test_sgd_reduces_loss():
    task, layout, theta, sample = _setup()
    sgd = SGD(theta, RNNFastCurvature(layout, task.loss), SGDOptions(lr=0.05, batch_size=50))
    first = [sgd.step(sample).loss_before for _ in range(5)]
    for _ in range(100):
        info = sgd.step(sample)
    assert info.loss_before < sum(first) / 5
    assert math.isclose(info.minibatches, 0.05)


def test_chunked_extra_metrics_add_up():
    from hfrnn.train.evaluate import combine_chunks
    a = {"sq_err_sum": 10.0, "frames": 4.0, "sequences": 2.0, "sq_err_per_frame": 2.5, "sq_err_per_sequence": 5.0}
    b = {"sq_err_sum": 2.0, "frames": 4.0, "sequences": 1.0, "sq_err_per_frame": 0.5, "sq_err_per_sequence": 2.0}
    c = combine_chunks([a, b])
    assert c["sq_err_sum"] == 12.0 and c["sq_err_per_frame"] == 1.5 and c["sq_err_per_sequence"] == 4.0


def test_rho_on_gradient_batch_option():
    """Backtracking and rho on the gradient batch (400 sequences) or the curvature batch (200)."""
    losses = {}
    for mode in ("gradient", "curvature"):
        task, layout, theta, sample = _setup()
        backend = RecordingRNN(layout, task.loss)
        hf = HessianFree(theta, backend, _small_opts(rho_batch=mode), 0.1)
        infos = []
        for _ in range(4):
            backend.loss_norms.clear()
            infos.append(hf.step(sample))
            norms = backend.loss_norms
            if mode == "gradient":
                # every forward-only evaluation is on the gradient batch; f(1) is not measured twice
                assert set(norms) == {400}
                assert math.isclose(infos[-1].forward_evals, 0.2 + 0.4 * len(norms))
            else:
                # backtracking (first) on the curvature batch, then the line search on the gradient batch
                n_bt = norms.index(400)
                assert n_bt >= 1 and set(norms[:n_bt]) == {200} and set(norms[n_bt:]) == {400}
                assert math.isclose(infos[-1].forward_evals, 0.2 + 0.2 * n_bt + 0.4 * (len(norms) - n_bt))
        assert infos[-1].loss_after < infos[0].loss_before
        losses[mode] = [i.rho for i in infos]
    assert losses["gradient"] != losses["curvature"]
