"""Adam: the update rule, loss reduction on tiny addition, NaN rejection, state round trip, config, resume."""
import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hfrnn.cli import CONFIG_DIR
from hfrnn.config import ConfigError, register, validate
from hfrnn.curvature.generic import GenericCurvature
from hfrnn.curvature.rnn_fast import RNNFastCurvature
from hfrnn.linalg.params import ParamLayout
from hfrnn.models.lstm import LSTM
from hfrnn.models.rnn import RNN
from hfrnn.optim.adam import Adam, AdamOptions
from hfrnn.tasks.pathological import make_task
from hfrnn.train import loop


def _setup(T=12, seed=0, hidden=20):
    task = make_task("addition", T, test_size=200)
    model = RNN(task.n_in, hidden, task.n_out, generator=torch.Generator().manual_seed(seed))
    layout = ParamLayout.of(dict(model.named_parameters()))
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()}).clone()
    gen = torch.Generator().manual_seed(seed)
    return task, layout, theta, (lambda n: task.sample(n, gen))


def test_first_step_is_lr_times_sign():
    """After one step m_hat = g and v_hat = g^2, so each coordinate moves by lr g / (|g| + eps)."""
    task, layout, theta, sample = _setup()
    be = RNNFastCurvature(layout, task.loss)
    before = theta.clone()
    batch = sample(50)
    _, g = be.loss_and_grad(theta, batch)
    opt = Adam(theta, be, AdamOptions(lr=0.01, clip=0.0, batch_size=50))
    info = opt.step(lambda n: batch)
    assert info.accepted and info.reason == "ok" and math.isclose(info.grad_norm, float(g.norm()), rel_tol=1e-5)
    assert torch.allclose(theta - before, -0.01 * g / (g.abs() + 1e-8), atol=1e-6)
    assert math.isclose(info.minibatches, 0.05)


def test_adam_reduces_loss_on_tiny_addition():
    task, layout, theta, sample = _setup()
    opt = Adam(theta, RNNFastCurvature(layout, task.loss), AdamOptions(lr=0.01, batch_size=50))
    fixed = task.sample(200, torch.Generator().manual_seed(123))
    be = RNNFastCurvature(layout, task.loss)
    start = be.loss(theta, fixed)
    infos = [opt.step(sample) for _ in range(100)]
    assert all(i.accepted for i in infos) and opt.consecutive_rejections == 0
    assert be.loss(theta, fixed) < 0.5 * start


def test_adam_trains_a_tiny_lstm():
    task, _, _, sample = _setup()
    model = LSTM(task.n_in, task.n_out, blocks=2, cells_per_block=3, generator=torch.Generator().manual_seed(0))
    layout = ParamLayout.of(dict(model.named_parameters()))
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()}).clone()
    be = GenericCurvature(model, task.loss)
    fixed = task.sample(200, torch.Generator().manual_seed(123))
    start = be.loss(theta, fixed)
    opt = Adam(theta, be, AdamOptions(lr=0.01, batch_size=50))
    for _ in range(60):
        opt.step(sample)
    assert be.loss(theta, fixed) < 0.7 * start


class NaNGradBackend(RNNFastCurvature):
    def loss_and_grad(self, theta, batch, norm=None):
        f, g = super().loss_and_grad(theta, batch, norm)
        return f, g * math.nan


def test_nan_gradient_rejected_and_state_untouched():
    task, layout, theta, sample = _setup()
    good = Adam(theta, RNNFastCurvature(layout, task.loss), AdamOptions(batch_size=20))
    good.step(sample)
    state = good.state_dict()
    before = theta.clone()
    bad = Adam(theta, NaNGradBackend(layout, task.loss), AdamOptions(batch_size=20))
    bad.load_state_dict(state)
    for k in (1, 2):
        info = bad.step(sample)
        assert not info.accepted and info.reason == "non_finite_gradient" and bad.consecutive_rejections == k
    assert torch.equal(theta, before) and bad.k == 1
    assert torch.equal(bad.m, state["m"]) and torch.equal(bad.v, state["v"])
    bad.backend = RNNFastCurvature(layout, task.loss)
    assert bad.step(sample).accepted and bad.consecutive_rejections == 0


def test_state_dict_round_trip_resumes_exactly():
    task, layout, theta, _ = _setup()
    be = RNNFastCurvature(layout, task.loss)
    batches = [task.sample(20, torch.Generator().manual_seed(i)) for i in range(6)]
    a = Adam(theta.clone(), be, AdamOptions(lr=0.01, batch_size=20, weight_cost=1e-3))
    for b in batches[:3]:
        a.step(lambda n, b=b: b)
    b_opt = Adam(a.theta.clone(), be, AdamOptions(lr=0.01, batch_size=20, weight_cost=1e-3))
    b_opt.load_state_dict(a.state_dict())
    for b in batches[3:]:
        a.step(lambda n, b=b: b)
        b_opt.step(lambda n, b=b: b)
    assert torch.equal(a.theta, b_opt.theta)


def _compose(overrides):
    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="train", overrides=overrides))


def test_config_composes_and_validates():
    cfg = _compose(["optimizer=adam", "model=lstm"])
    validate(cfg)
    assert isinstance(cfg.optimizer, AdamOptions) and cfg.optimizer == AdamOptions()
    assert (cfg.model.blocks, cfg.model.cells_per_block, cfg.model.init_scale) == (30, 10, 0.1)


@pytest.mark.parametrize("bad,word", [("optimizer.beta2=1.0", "beta"), ("optimizer.lr=0", "lr"),
                                      ("optimizer.eps=0", "eps")])
def test_bad_values_fail(bad, word):
    with pytest.raises(ConfigError, match=word):
        validate(_compose(["optimizer=adam", bad]))


def test_bad_lstm_size_fails():
    with pytest.raises(ConfigError, match="blocks"):
        validate(_compose(["model=lstm", "model.blocks=0"]))


def test_resume_reproduces_uninterrupted_lstm_run(tmp_path):
    """An Adam run on a tiny LSTM, stopped half way and resumed, matches the uninterrupted run."""
    base = ["task=addition", "T=12", "model=lstm", "model.blocks=2", "model.cells_per_block=2", "optimizer=adam",
            "optimizer.batch_size=20", "task.test_size=100", "eval.every_minibatches=0.1", "checkpoint_every=1"]

    def fit(extra, run_dir):
        register()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            c = compose(config_name="train", overrides=base + extra)
        return loop.fit(OmegaConf.to_object(c), run_dir, OmegaConf.to_container(c, resolve=True))

    def metrics(run_dir):
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]

    full, half = tmp_path / "full", tmp_path / "half"
    full.mkdir(), half.mkdir()
    fit(["budget.max_iterations=10"], full)
    fit(["budget.max_iterations=5"], half)
    assert fit(["budget.max_iterations=10", f"resume={half}"], tmp_path / "ignored")["iterations"] == 10
    assert metrics(full) == metrics(half)
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(half / "checkpoint.pt", weights_only=True)
    assert torch.equal(a["theta"], b["theta"])
