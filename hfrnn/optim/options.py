"""Validation of the optimisers' option records, where they are built.

The option dataclasses (:class:`~hfrnn.optim.hessian_free.HFOptions` and its groups,
:class:`~hfrnn.optim.sgd.SGDOptions`, :class:`~hfrnn.optim.adam.AdamOptions`) are plain records,
filled by Hydra from YAML or by a Python user. :func:`check_options` checks every choice and range
and raises :class:`~hfrnn.errors.ConfigError` naming the key, so that
``HFOptions(rho="undampd")`` fails in Python exactly as ``optimizer.rho=undampd`` fails on the
command line (``hfrnn.train.schema.validate`` calls it with ``prefix="optimizer."``). The public
optimisers (:mod:`hfrnn.api`) call it in their constructors.

The choices are the ``Literal`` types of :mod:`hfrnn.optim.hessian_free` (``Curvature``, ``Rho``,
``RhoBatch``, ``HiddenNonlinearity``), the one source of their allowed values: a type checker
holds a literal to them, :func:`choice` holds a run-time value to the same ``get_args``.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, get_args

from ..errors import ConfigError
from .adam import AdamOptions
from .damping import DampingOptions
from .hessian_free import (BatchOptions, CGOptions, Curvature, HFOptions, HiddenNonlinearity, Rho, RhoBatch,
                           StructuralOptions)
from .search import LineSearchOptions
from .sgd import SGDOptions

__all__ = ["Curvature", "Rho", "RhoBatch", "HiddenNonlinearity", "choice", "check_hf_options",
           "check_first_order_options", "check_options"]

GROUPS = {"cg": CGOptions, "damping": DampingOptions, "structural": StructuralOptions,
          "line_search": LineSearchOptions, "batch": BatchOptions}


def choice(key: str, value: Any, allowed: Any) -> None:
    """Raise unless ``value`` is one of the ``Literal`` type ``allowed``'s values: one line that
    names them and the closest to a misspelt string."""
    options = get_args(allowed)
    if not isinstance(value, str) or value not in options:
        close = difflib.get_close_matches(value, options, n=1) if isinstance(value, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key} must be one of {', '.join(options)}; got {key}={value!r}{hint}")


def _require(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {key}={value!r}")


def _numbers(opts: Any, prefix: str) -> None:
    """Every field holds a value of its declared kind (bool, int, float); floats are finite."""
    for f in dataclasses.fields(opts):
        value, key = getattr(opts, f.name), prefix + f.name
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if kind == "bool":
            _require(isinstance(value, bool), key, "true or false", value)
        elif kind == "int":
            _require(isinstance(value, int) and not isinstance(value, bool), key, "an integer", value)
        elif kind == "float":
            _require(isinstance(value, (int, float)) and not isinstance(value, bool), key, "a number", value)
            _require(math.isfinite(value), key, "a finite number", value)


def check_hf_options(opts: HFOptions, prefix: str = "") -> HFOptions:
    """Check an :class:`HFOptions`; return it unchanged or raise :class:`ConfigError` naming the key."""
    p = prefix
    if not isinstance(opts, HFOptions):
        raise ConfigError(f"{p or 'options'} must be an HFOptions, got {type(opts).__name__}")
    for name, kind in GROUPS.items():
        group = getattr(opts, name)
        if not isinstance(group, kind):
            raise ConfigError(f"{p}{name} must be a {kind.__name__}, got {type(group).__name__}")
        _numbers(group, f"{p}{name}.")
    _numbers(opts, p)
    choice(f"{p}curvature", opts.curvature, Curvature)
    choice(f"{p}rho", opts.rho, Rho)
    choice(f"{p}rho_batch", opts.rho_batch, RhoBatch)
    if opts.structural.hidden_nonlinearity is not None:  # None: the model's (hfrnn.api resolves it)
        choice(f"{p}structural.hidden_nonlinearity", opts.structural.hidden_nonlinearity, HiddenNonlinearity)
    _require(opts.weight_cost >= 0, f"{p}weight_cost", ">= 0", opts.weight_cost)
    _require(opts.max_rejections >= 1, f"{p}max_rejections", ">= 1", opts.max_rejections)
    cg, d, s, ls, b = opts.cg, opts.damping, opts.structural, opts.line_search, opts.batch
    _require(cg.max_iters >= 1, f"{p}cg.max_iters", ">= 1", cg.max_iters)
    _require(cg.eps > 0, f"{p}cg.eps", "> 0", cg.eps)
    _require(cg.min_gap >= 1, f"{p}cg.min_gap", ">= 1", cg.min_gap)
    _require(cg.gap_fraction >= 0, f"{p}cg.gap_fraction", ">= 0", cg.gap_fraction)
    _require(0 <= cg.decay <= 1, f"{p}cg.decay", "in [0, 1]", cg.decay)
    _require(cg.keep_first >= 1, f"{p}cg.keep_first", ">= 1", cg.keep_first)
    _require(cg.keep_growth > 1, f"{p}cg.keep_growth", "> 1", cg.keep_growth)
    _require(d.initial > 0, f"{p}damping.initial", "> 0", d.initial)
    _require(0 <= d.low <= d.high, f"{p}damping.low, damping.high", "0 <= low <= high", (d.low, d.high))
    _require(d.boost >= 1, f"{p}damping.boost", ">= 1", d.boost)
    _require(0 < d.drop <= 1, f"{p}damping.drop", "in (0, 1]", d.drop)
    _require(0 < d.min <= d.max, f"{p}damping.min, damping.max", "0 < min <= max", (d.min, d.max))
    _require(s.mu >= 0, f"{p}structural.mu", ">= 0", s.mu)
    _require(s.scale > 0, f"{p}structural.scale", "> 0", s.scale)
    _require(0 < ls.c < 1, f"{p}line_search.c", "in (0, 1)", ls.c)
    _require(0 < ls.shrink < 1, f"{p}line_search.shrink", "in (0, 1)", ls.shrink)
    _require(ls.max_tries >= 1, f"{p}line_search.max_tries", ">= 1", ls.max_tries)
    for key in ("gradient", "curvature", "chunk"):
        _require(getattr(b, key) >= 1, f"{p}batch.{key}", ">= 1", getattr(b, key))
    _require(b.block >= 0, f"{p}batch.block", ">= 0 (0 = automatic)", b.block)
    return opts


def check_first_order_options(opts: SGDOptions | AdamOptions, prefix: str = "") -> SGDOptions | AdamOptions:
    """Check an :class:`SGDOptions` or :class:`AdamOptions`; raise :class:`ConfigError` naming the key."""
    p = prefix
    _numbers(opts, p)
    _require(opts.lr > 0, f"{p}lr", "> 0", opts.lr)
    _require(opts.batch_size >= 1, f"{p}batch_size", ">= 1", opts.batch_size)
    _require(opts.clip >= 0, f"{p}clip", ">= 0 (0 disables clipping)", opts.clip)
    _require(opts.weight_cost >= 0, f"{p}weight_cost", ">= 0", opts.weight_cost)
    _require(opts.max_rejections >= 1, f"{p}max_rejections", ">= 1", opts.max_rejections)
    if isinstance(opts, SGDOptions):
        _require(0 <= opts.momentum < 1, f"{p}momentum", "in [0, 1)", opts.momentum)
    else:
        for key in ("beta1", "beta2"):
            _require(0 <= getattr(opts, key) < 1, f"{p}{key}", "in [0, 1)", getattr(opts, key))
        _require(opts.eps > 0, f"{p}eps", "> 0", opts.eps)
    return opts


def check_options(opts: Any, prefix: str = "") -> Any:
    """Check any optimiser's options record (HF, SGD, Adam)."""
    if isinstance(opts, HFOptions):
        return check_hf_options(opts, prefix)
    if isinstance(opts, (SGDOptions, AdamOptions)):
        return check_first_order_options(opts, prefix)
    raise ConfigError(f"{prefix or 'options'}: unknown optimizer options {type(opts).__name__}")
