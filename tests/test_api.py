"""The public API: ``hfrnn.HessianFree`` over any ``nn.Module``, on the user's own batches."""
import copy
import dataclasses
import runpy
from pathlib import Path

import pytest
import torch
from torch import nn

import hfrnn
from hfrnn import Batch, ConfigError, HessianFree, HFOptions, StructuralOptions
from hfrnn.curvature.generic import GenericCurvature
from hfrnn.curvature.protocol import structural_hessian, structural_hessian_of
from hfrnn.optim import hessian_free as core
from hfrnn.optim.hessian_free import BatchOptions, CGOptions
from hfrnn.optim.options import check_hf_options

from .cases import CASES, make_case

F64 = torch.float64
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gru_hf.py"


def test_public_names():
    for name in hfrnn.__all__:
        assert getattr(hfrnn, name) is not None
    assert hfrnn.HessianFree.__module__ == "hfrnn.api"


def _small(**kw):
    return HFOptions(cg=CGOptions(max_iters=15), batch=BatchOptions(gradient=3, curvature=2), **kw)


@pytest.mark.parametrize("curvature", ["fast", "generic"])
def test_step_equals_the_core_step_on_a_flat_vector(curvature):
    """The API is a bridge, not a second optimiser: the same iterations, bit for bit."""
    model, layout, theta, batch = make_case(CASES[2])
    with torch.no_grad():
        for name, view in layout.unflatten(theta).items():
            getattr(model, name).copy_(view)
    opts = _small(curvature=curvature)
    opt = HessianFree(model, CASES[2].loss, opts)
    ref_theta = theta.clone()
    backend = copy.deepcopy(opt.backend)
    ref = core.HessianFree(ref_theta, backend, opts, opts.damping.initial)
    c = Batch(*(x[:, :2] for x in (batch.inputs, batch.targets, batch.mask)))
    for _ in range(3):
        got = opt.step(batch, c)
        it = iter((batch, c))
        want = ref.step(lambda n: next(it))
        assert got == want
        assert torch.equal(layout.flatten(dict(model.named_parameters())).detach(), ref_theta)
    assert opt.state_dict()["damping"] == ref.state_dict()["damping"]


def test_the_module_is_the_source_of_truth():
    model, layout, theta, batch = make_case(CASES[0])
    opt = HessianFree(model, CASES[0].loss, _small())
    opt.step(batch)
    with torch.no_grad():
        model.W_hh.zero_()  # a user's change between steps is what the next step starts from
    assert torch.equal(opt.flat()[layout.unflatten(torch.arange(layout.numel))["W_hh"].reshape(-1)],
                       torch.zeros(model.W_hh.numel(), dtype=F64))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    info = opt.step((batch.inputs, batch.targets, batch.mask))  # a plain tuple is a batch
    if info.accepted:
        assert any(not torch.equal(before[k], v) for k, v in model.named_parameters())


def test_default_curvature_batch_is_the_head_of_the_batch():
    model, _, _, batch = make_case(CASES[1])
    opt = HessianFree(model, CASES[1].loss, _small())
    seen = []
    prepare = opt.backend.prepare
    opt.backend.prepare = lambda theta, b, norm=None: seen.append(b.size) or prepare(theta, b, norm)
    opt.step(batch)
    assert seen == [min(2, batch.size)]


def test_state_dict_round_trip():
    model, _, _, batch = make_case(CASES[0])
    a = HessianFree(model, CASES[0].loss, _small())
    a.step(batch)
    b = HessianFree(copy.deepcopy(model), CASES[0].loss, _small())
    b.load_state_dict(a.state_dict())
    assert b.damping == a.damping and b.consecutive_rejections == a.consecutive_rejections
    assert a.step(batch) == b.step(batch)


@pytest.mark.parametrize("change,word", [
    (dict(rho="undampd"), "rho"), (dict(rho_batch="gradiant"), "rho_batch"), (dict(curvature="fastt"), "curvature"),
    (dict(weight_cost=-1.0), "weight_cost"), (dict(cg=CGOptions(max_iters=0)), "cg.max_iters"),
    (dict(cg=CGOptions(max_iters=3.5)), "cg.max_iters"), (dict(structural=StructuralOptions(mu=float("nan"))), "mu"),
    (dict(structural=StructuralOptions(enabled="yes")), "structural.enabled"), (dict(cg={"max_iters": 3}), "cg"),
    (dict(batch=BatchOptions(curvature=0)), "batch.curvature"),
])
def test_impossible_options_fail_where_they_are_built(change, word):
    opts = HFOptions(**change)
    with pytest.raises(ConfigError, match=word):
        check_hf_options(opts)
    model, *_ = make_case(CASES[0])
    with pytest.raises(ConfigError, match=word):
        HessianFree(model, "squared", opts)


def test_defaults_pass_and_bad_loss_fails():
    check_hf_options(HFOptions())
    model, *_ = make_case(CASES[0])
    with pytest.raises(ConfigError, match="loss"):
        HessianFree(model, "sqaured")


class Outputs(nn.Module):
    """s alone (no hidden pre-activations), and no declared nonlinearity."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return self.lin(torch.tanh(x).cumsum(0))


def test_structural_damping_needs_a_known_hidden_nonlinearity():
    with pytest.raises(ConfigError, match="hidden_nonlinearity"):
        HessianFree(Outputs(), "squared")
    with pytest.raises(ConfigError, match="relu"):
        HessianFree(Outputs(), "squared", hidden_nonlinearity="relu")


def test_structural_damping_off_takes_a_model_returning_outputs_alone():
    torch.manual_seed(0)
    x, y = torch.randn(5, 40, 2), torch.randn(5, 40, 1)
    opt = HessianFree(Outputs(), "squared", HFOptions(structural=StructuralOptions(enabled=False)))
    infos = [opt.step((x, y)) for _ in range(3)]
    assert infos[-1].loss_after < infos[0].loss_before


@pytest.mark.parametrize("kind", ["tanh", "logistic", "linear"])
def test_structural_term_is_the_matching_distance_hessian(kind):
    """w G_S v = (w / n) sum J_t^T diag(scale (D o e)'') J_t v, against explicit Jacobians (float64)."""
    torch.manual_seed(1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 3).double(), nn.Linear(3, 1).double()

        def forward(self, x):
            t = self.a(x).cumsum(0)
            return self.b(torch.tanh(t)), t

    net = Net()
    T, B = 4, 3
    batch = Batch(torch.randn(T, B, 2, dtype=F64), torch.randn(T, B, 1, dtype=F64))
    be = GenericCurvature(net, "squared", 0.25, kind)
    theta = be.layout.flatten(dict(net.named_parameters())).detach().clone()
    be.prepare(theta, batch)
    v = torch.randn_like(theta)
    w = 0.7
    got = be.product(v, w) - be.product(v, 0.0)
    from torch.func import functional_call
    J = torch.autograd.functional.jacobian(
        lambda th: functional_call(net, be.layout.unflatten(th), (batch.inputs,))[1].reshape(-1), theta)
    t = functional_call(net, be.layout.unflatten(theta), (batch.inputs,))[1].detach()
    h = {"tanh": torch.tanh, "logistic": torch.sigmoid, "linear": lambda t: t}[kind](t)
    curv = {"tanh": 1 - h * h, "logistic": h * (1 - h), "linear": torch.ones_like(h)}[kind]
    want = w * J.T @ ((0.25 / B) * curv.reshape(-1) * (J @ v))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if kind == "tanh":  # the generic backend's tanh term is exactly the RNN's
        assert torch.equal(structural_hessian_of("tanh", t, batch.mask, B, 0.25),
                           structural_hessian(torch.tanh(t), batch.mask, B, 0.25))


def test_gru_example_learns():
    example = runpy.run_path(str(EXAMPLE))
    losses = example["main"](verbose=False)
    assert losses[-1] < 0.05 * losses[0]


def test_options_are_not_changed_by_the_optimizer():
    opts = _small()
    before = dataclasses.asdict(opts)
    model, _, _, batch = make_case(CASES[0])
    HessianFree(model, CASES[0].loss, opts).step(batch)
    assert dataclasses.asdict(opts) == before
