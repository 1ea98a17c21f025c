"""The string options' choices: one Literal type each, read alike by a type checker, by the run-time
check (``hfrnn.optim.options``) and by the structural term; and the Hydra schema still accepts them."""
import dataclasses
import typing

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from hfrnn import ConfigError, HessianFree, HFOptions, StructuralOptions
from hfrnn.api import hidden_nonlinearity_of
from hfrnn.curvature.generic import GenericCurvature
from hfrnn.curvature.protocol import HIDDEN_NONLINEARITIES
from hfrnn.curvature.rnn_fast import RNNFastCurvature
from hfrnn.models.rnn import RNN
from hfrnn.optim import hessian_free as hf_module
from hfrnn.optim.hessian_free import Curvature, HiddenNonlinearity, Rho, RhoBatch
from hfrnn.optim.options import GROUPS, check_hf_options

CHOICES = {"curvature": Curvature, "rho": Rho, "rho_batch": RhoBatch,
           "structural.hidden_nonlinearity": HiddenNonlinearity}


def _with(key: str, value) -> HFOptions:
    opts = HFOptions()
    group, _, name = key.rpartition(".")
    setattr(getattr(opts, group) if group else opts, name or key, value)
    return opts


def _string_fields() -> dict[str, str]:
    """``key -> annotation`` of every option that is neither a number, a flag nor a group."""
    out = {}
    for prefix, cls in [("", HFOptions), *((f"{n}.", c) for n, c in GROUPS.items())]:
        for f in dataclasses.fields(cls):
            if f.type not in ("bool", "int", "float") and f.name not in GROUPS:
                out[prefix + f.name] = f.type
    return out


def test_every_string_option_but_the_name_has_a_literal_type():
    fields = _string_fields()
    assert fields.pop("name") == "str"
    assert set(fields) == set(CHOICES)


@pytest.mark.parametrize("key", CHOICES)
def test_the_type_checker_and_the_runtime_check_read_the_same_literal(key):
    """A type checker sees ``_Rho = Rho`` (the ``TYPE_CHECKING`` branch); the run-time check reads
    ``get_args(Rho)``; OmegaConf sees ``str``. All three name the one Literal."""
    cls = HFOptions if "." not in key else GROUPS[key.split(".")[0]]
    name = key.rpartition(".")[2]
    checker_ns = {**vars(hf_module), **{f"_{k}": v for k, v in
                                        (("Curvature", Curvature), ("Rho", Rho), ("RhoBatch", RhoBatch),
                                         ("HiddenNonlinearity", HiddenNonlinearity))}}
    as_checked = typing.get_type_hints(cls, globalns=checker_ns)[name]
    allowed = CHOICES[key]
    assert as_checked == allowed or as_checked == typing.Optional[allowed]
    runtime = typing.get_type_hints(cls)[name]
    assert runtime in (str, typing.Optional[str])
    for value in typing.get_args(allowed):
        check_hf_options(_with(key, value))


@pytest.mark.parametrize("key,typo,hint", [("rho", "undampd", "undamped"), ("rho_batch", "gradiant", "gradient"),
                                           ("curvature", "fastt", "fast"),
                                           ("structural.hidden_nonlinearity", "tahn", "tanh")])
def test_a_typo_fails_in_one_line_naming_the_choices_and_the_closest(key, typo, hint):
    with pytest.raises(ConfigError) as e:
        check_hf_options(_with(key, typo))
    msg = str(e.value)
    assert "\n" not in msg and key in msg and f"did you mean {hint!r}?" in msg
    assert all(v in msg for v in typing.get_args(CHOICES[key]))


def test_a_non_string_choice_fails_too():
    with pytest.raises(ConfigError, match="rho must be one of"):
        check_hf_options(_with("rho", 1))


def test_the_structural_term_knows_exactly_the_declared_nonlinearities():
    assert set(typing.get_args(HiddenNonlinearity)) == set(HIDDEN_NONLINEARITIES)


def test_the_hydra_schema_takes_the_options():
    """OmegaConf 2.3 refuses Literal annotations; the fields read ``str`` at run time, so the
    dataclass still is the schema, and a typo set through it is caught by the same check."""
    cfg = OmegaConf.structured(HFOptions)
    assert cfg.structural.hidden_nonlinearity is None and cfg.rho == "damped"
    cfg.structural.hidden_nonlinearity = "logistic"
    cfg.rho = "undampd"
    opts = OmegaConf.to_object(cfg)
    assert isinstance(opts, HFOptions) and opts.structural.hidden_nonlinearity == "logistic"
    with pytest.raises(ConfigError, match="optimizer.rho must be one of damped, undamped"):
        check_hf_options(opts, prefix="optimizer.")


# -- structural.hidden_nonlinearity: the model's, or refused ------------------------------------------

class Net(nn.Module):
    """Returns ``(s, t)``; declares no nonlinearity unless a subclass does."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 3).double(), nn.Linear(3, 1).double()

    def forward(self, x):
        t = self.a(x).cumsum(0)
        return self.b(torch.sigmoid(t)), t


class LogisticNet(Net):
    hidden_nonlinearity = "logistic"


def _rnn():
    return RNN(2, 3, 1, generator=torch.Generator().manual_seed(0)).double()


@pytest.mark.parametrize("model,structural,given,want", [
    (Net(), StructuralOptions(hidden_nonlinearity="logistic"), None, "logistic"),   # the option declares it
    (LogisticNet(), StructuralOptions(), None, "logistic"),                        # the model does
    (LogisticNet(), StructuralOptions(hidden_nonlinearity="logistic"), None, "logistic"),  # both, agreeing
    (Net(), StructuralOptions(), "linear", "linear"),                              # the keyword shorthand
    (Net(), StructuralOptions(enabled=False), None, "linear"),                     # unused when off
])
def test_the_structural_distance_is_the_declared_one(model, structural, given, want):
    assert hidden_nonlinearity_of(model, structural, given) == want
    opt = HessianFree(model, "squared", HFOptions(structural=structural), hidden_nonlinearity=given)
    assert opt.hidden_nonlinearity == want
    if structural.enabled:
        assert isinstance(opt.backend, GenericCurvature) and opt.backend.hidden_nonlinearity == want


def test_hfrnns_rnn_keeps_its_fast_tanh_backend():
    opt = HessianFree(_rnn(), "squared", HFOptions(structural=StructuralOptions(hidden_nonlinearity="tanh")))
    assert opt.hidden_nonlinearity == "tanh" and isinstance(opt.backend, RNNFastCurvature)


@pytest.mark.parametrize("model,structural,given,words", [
    (_rnn(), StructuralOptions(hidden_nonlinearity="linear"), None, ["declared twice", "'linear'", "'tanh'"]),
    (Net(), StructuralOptions(hidden_nonlinearity="tanh"), "linear", ["declared twice", "hidden_nonlinearity="]),
    (Net(), StructuralOptions(), None, ["needs the hidden units' nonlinearity", "tanh, logistic, linear"]),
    (Net(), StructuralOptions(), "relu", ["hidden_nonlinearity must be one of tanh, logistic, linear", "'relu'"]),
])
def test_an_unknown_or_contradicted_nonlinearity_is_refused(model, structural, given, words):
    with pytest.raises(ConfigError) as e:
        HessianFree(model, "squared", HFOptions(structural=structural), hidden_nonlinearity=given)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_structural_damping_off_ignores_an_unknown_model_nonlinearity():
    class Relu(Net):
        hidden_nonlinearity = "relu"

    opt = HessianFree(Relu(), "squared", HFOptions(structural=StructuralOptions(enabled=False)))
    assert opt.hidden_nonlinearity == "linear"
