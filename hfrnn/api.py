"""The public API: Hessian-free optimisation of any recurrent ``nn.Module``, in torch.optim's words.

    from hfrnn import HessianFree, HFOptions

    opt = HessianFree(model, loss="softmax", hidden_nonlinearity="tanh")
    for inputs, targets in batches:          # time-major: [T, B, n_in], [T, B, K]
        info = opt.step((inputs, targets))   # one HF iteration; the model's parameters are updated

The model's ``forward(x [T, B, n_in])`` returns the output pre-activations ``s`` ``[T, B, K]`` (the
loss applies the matching output nonlinearity, :mod:`hfrnn.losses`) and, for structural damping,
the hidden pre-activations ``t`` ``[T, B, H]`` as ``(s, t)``. The structural distance is the
matching loss of the hidden units' nonlinearity (``tanh``, ``logistic`` or ``linear``; see
:data:`hfrnn.curvature.protocol.HIDDEN_NONLINEARITIES`): ``options.structural.hidden_nonlinearity``,
or the model's class attribute ``hidden_nonlinearity`` (:func:`hidden_nonlinearity_of`); with
structural damping off (``HFOptions(structural=StructuralOptions(enabled=False))``) the model may
return ``s`` alone.

The module's parameters are the source of truth: each :meth:`HessianFree.step` reads them into
one flat vector (``theta`` in R^N, what HF works on), runs the iteration
(:class:`hfrnn.optim.hessian_free.HessianFree`) and writes the result back, so a user may change
or load parameters between steps. Every option is checked when the optimiser is built
(:func:`hfrnn.optim.options.check_hf_options`): a misspelt choice fails in Python, not later.

The objective is the paper's (section 2): each sequence's loss summed over its scored steps
(``mask``), averaged over sequences, plus ``weight_cost / 2 |theta|^2``.

``hfrnn train`` (:mod:`hfrnn.train.loop`) drives these same classes; :class:`SGD` and :class:`Adam`
wrap the first-order baselines the same way.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence, Union, get_args

import torch
from torch import Tensor, nn

from .curvature.blocking import auto_block
from .curvature.generic import GenericCurvature
from .curvature.protocol import CurvatureBackend
from .errors import ConfigError
from .linalg.params import ParamLayout
from .losses import LOSSES
from .models.rnn import RNN, unroll_states
from .optim import adam as _adam
from .optim import hessian_free as _hf
from .optim import sgd as _sgd
from .optim.adam import AdamOptions
from .optim.first_order import FirstOrderStepInfo
from .optim.hessian_free import HFOptions, HFStepInfo, HiddenNonlinearity, StructuralOptions
from .optim.options import check_options, choice
from .optim.sgd import SGDOptions
from .parallel.sharded import ShardedBackend
from .tasks.base import Batch

log = logging.getLogger(__name__)
BatchLike = Union[Batch, Sequence[Tensor]]  # a Batch, or (inputs, targets) / (inputs, targets, mask)
DEFAULT_CHUNK = 2000  # sequences per evaluation pass where no cache-sized block is known


def as_batch(batch: BatchLike) -> Batch:
    """A :class:`Batch` from a ``Batch`` or a tuple ``(inputs, targets[, mask])``, time-major."""
    if isinstance(batch, Batch):
        return batch
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        return Batch(*batch)
    raise TypeError("a batch is a hfrnn Batch or a tuple (inputs [T, B, n], targets [T, B, K][, mask [T, B]])")


def _is_fast_rnn(model: nn.Module) -> bool:
    return type(model) is RNN


def make_backend(model: nn.Module, loss: str, curvature: str = "fast", structural_scale: float = 1.0,
                 hidden_nonlinearity: str = "tanh", block: int = 0, shard: bool = False) -> CurvatureBackend:
    """The curvature backend for ``model``: the hand-written one for hfrnn's tanh RNN when
    ``curvature="fast"``, else the generic ``torch.func`` one; sharded across the process group's
    ranks if ``shard`` (every rank must then pass the same batches)."""
    backend: CurvatureBackend
    if curvature == "fast" and _is_fast_rnn(model) and hidden_nonlinearity == "tanh":
        from .curvature.rnn_fast import RNNFastCurvature

        backend = RNNFastCurvature(ParamLayout.of(dict(model.named_parameters())), loss, structural_scale, block)
    else:
        backend = GenericCurvature(model, loss, structural_scale, hidden_nonlinearity)
    return ShardedBackend(backend) if shard else backend


def hidden_nonlinearity_of(model: nn.Module, structural: StructuralOptions, given: str | None = None) -> str:
    """The hidden units' nonlinearity ``e`` whose matching distance the structural term uses.

    Each of ``given`` (the ``hidden_nonlinearity=`` shorthand), ``structural.hidden_nonlinearity``
    and ``model.hidden_nonlinearity`` may declare it; with structural damping on, at least one must,
    all that do must agree, and the value must be one the structural term knows (``tanh``,
    ``logistic``, ``linear``): assuming tanh of a model whose states are something else would damp
    the wrong distance without a sign. With structural damping off the value is never used.

    Raises:
        ConfigError: none declared, two that disagree, or an unknown one.
    """
    said = {key: value for key, value in (("hidden_nonlinearity=", given),
                                          ("structural.hidden_nonlinearity", structural.hidden_nonlinearity),
                                          ("model.hidden_nonlinearity", getattr(model, "hidden_nonlinearity", None)))
            if value is not None}
    if not structural.enabled:  # the structural weight is 0: any declared value will do, or none
        known = [v for v in said.values() if v in get_args(HiddenNonlinearity)]
        return known[0] if known else "linear"
    if not said:
        raise ConfigError("structural damping needs the hidden units' nonlinearity: set "
                          f"StructuralOptions(hidden_nonlinearity=...) ({', '.join(get_args(HiddenNonlinearity))}) or "
                          "model.hidden_nonlinearity, or turn it off with StructuralOptions(enabled=False)")
    if len(set(said.values())) > 1:
        raise ConfigError("the hidden nonlinearity is declared twice, differently: "
                          + ", ".join(f"{key} {value!r}" for key, value in said.items()))
    key, value = next(iter(said.items()))
    choice(key.rstrip("="), value, HiddenNonlinearity)
    return value


class ModuleOptimizer:
    """What every public optimiser shares: the module <-> flat vector bridge, outputs, state.

    Args:
        model: the module; its parameters are read before and written after every step.
        backend: the objective, gradient and curvature products over the flat vector.
    """

    batch_sizes: tuple[int, ...] = ()  # sequences per batch that step() takes (hfrnn train draws them)
    _core: Any  # the flat-vector optimiser (hfrnn.optim.*) a subclass bridges to

    def __init__(self, model: nn.Module, backend: CurvatureBackend) -> None:
        self.model = model
        self.backend = backend
        self._params = dict(model.named_parameters())
        self.layout = ParamLayout.of(self._params)
        if self.layout != backend.layout:
            raise ValueError("the backend's parameter layout is not the model's")
        self._theta = self.layout.flatten({k: v.detach() for k, v in self._params.items()}).clone()

    # -- the module is the source of truth --------------------------------------------------------
    def flat(self) -> Tensor:
        """The model's parameters as one flat vector ``[N]`` (the optimiser's own working copy)."""
        with torch.no_grad():
            self._theta.copy_(self.layout.flatten({k: v.detach() for k, v in self._params.items()}))
        return self._theta

    def load_flat(self, theta: Tensor) -> None:
        """Write a flat vector ``[N]`` into the model's parameters."""
        if theta.shape != self._theta.shape:
            raise ValueError(f"expected {self._theta.numel()} parameters, got shape {tuple(theta.shape)}")
        with torch.no_grad():
            self._theta.copy_(theta)
            for name, view in self.layout.unflatten(self._theta).items():
                self._params[name].copy_(view)

    def _step(self, run: Callable[[], object]):
        self.flat()
        try:
            return run()
        finally:
            self.load_flat(self._theta)

    # -- what a training loop needs ----------------------------------------------------------------
    def outputs(self, x: Tensor, theta: Tensor | None = None) -> Tensor:
        """Output pre-activations ``s`` ``[T, B, K]`` for inputs ``x`` ``[T, B, n]`` (no graph), at
        ``theta`` (default: the model's current parameters)."""
        theta = self.flat() if theta is None else theta
        with torch.no_grad():
            if _is_fast_rnn(self.model):  # the in-place forward of the fast backend
                return unroll_states(self.layout.unflatten(theta), x)[0]
            from torch.func import functional_call
            out = functional_call(self.model, self.layout.unflatten(theta), (x,))
            return out if isinstance(out, Tensor) else out[0]

    def forward_chunk(self, T: int) -> int:
        """Sequences per forward pass when evaluating ``T``-step batches: the fast RNN's
        cache-sized block, else :data:`DEFAULT_CHUNK`."""
        if not _is_fast_rnn(self.model):
            return DEFAULT_CHUNK
        return auto_block(T, self.model.W_hh.shape[0], self._theta.dtype, self._theta.device) or DEFAULT_CHUNK

    def describe(self) -> str:
        """What a log line adds about this optimiser ("" by default)."""
        return ""

    @property
    def consecutive_rejections(self) -> int:
        return self._core.consecutive_rejections

    def state_dict(self) -> dict:
        """The optimiser's state (not the parameters: they are the model's)."""
        return self._core.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._core.load_state_dict(state)


class HessianFree(ModuleOptimizer):
    """Hessian-free optimisation with structural damping (Martens & Sutskever 2011) of ``model``.

    Args:
        model: an ``nn.Module`` whose ``forward(x [T, B, n])`` returns ``s [T, B, K]`` or
            ``(s, t [T, B, H])`` (``t`` is needed for structural damping).
        loss: the matched output nonlinearity and loss: ``squared`` (linear outputs),
            ``logistic`` (sigmoid, binary cross-entropy) or ``softmax`` (categorical cross-entropy).
        options: :class:`~hfrnn.optim.hessian_free.HFOptions` (default: the paper's settings;
            ``options.damping.initial`` is lambda at the start). Checked here; not changed.
        hidden_nonlinearity: shorthand for ``options.structural.hidden_nonlinearity``, the units
            behind ``t`` (``tanh``, ``logistic``, ``linear``); default: the model's class
            attribute ``hidden_nonlinearity``. Required with structural damping on
            (:func:`hidden_nonlinearity_of`).
        shard: data-parallel: evaluate this rank's share of every batch and all-reduce
            (:mod:`hfrnn.parallel`); every rank must pass the same batches.

    Raises:
        ConfigError: an impossible option, an unknown loss or hidden nonlinearity.
    """

    def __init__(self, model: nn.Module, loss: str, options: HFOptions | None = None, *,
                 hidden_nonlinearity: str | None = None, shard: bool = False) -> None:
        opts = check_options(HFOptions() if options is None else options)
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}; got loss={loss!r}")
        declared = hidden_nonlinearity_of(model, opts.structural, hidden_nonlinearity)
        backend = make_backend(model, loss, opts.curvature, opts.structural.scale, declared, opts.batch.block, shard)
        super().__init__(model, backend)
        self.options = opts
        self.loss = loss
        self.hidden_nonlinearity = declared  # the one the structural term uses
        self._core = _hf.HessianFree(self._theta, backend, opts, opts.damping.initial)
        self.batch_sizes = (opts.batch.gradient, opts.batch.curvature)

    def describe(self) -> str:
        s = self.options.structural
        return f" (structural mu={s.mu:g})" if s.enabled else ""

    @property
    def damping(self) -> float:
        """lambda, the Tikhonov damping the next step's CG starts from."""
        return self._core.damping

    def step(self, batch: BatchLike, curvature_batch: BatchLike | None = None) -> HFStepInfo:
        """One HF iteration; updates the model's parameters and returns what the step did.

        Args:
            batch: the gradient batch: the gradient, CG backtracking, rho (by default) and the line
                search use it.
            curvature_batch: the batch of the Gauss-Newton products (default: the first
                ``options.batch.curvature`` sequences of ``batch``).
        """
        g = as_batch(batch)
        c = g.split(self.options.batch.curvature)[0] if curvature_batch is None else as_batch(curvature_batch)
        return self._step(lambda: self._core.step_on(g, c))


class _FirstOrder(ModuleOptimizer):
    _make: Callable

    def __init__(self, model: nn.Module, loss: str, options, *, shard: bool = False) -> None:
        opts = check_options(options)
        backend = make_backend(model, loss, "fast", shard=shard)
        super().__init__(model, backend)
        self.options = opts
        self._core = self._make(self._theta, backend, opts)
        self.batch_sizes = (opts.batch_size,)

    def step(self, batch: BatchLike) -> FirstOrderStepInfo:
        """One step on ``batch``; updates the model's parameters."""
        b = as_batch(batch)
        return self._step(lambda: self._core.step(lambda n: b))


class SGD(_FirstOrder):
    """Momentum SGD through time with gradient-norm clipping (:mod:`hfrnn.optim.sgd`) of ``model``."""

    _make = _sgd.SGD

    def __init__(self, model: nn.Module, loss: str, options: SGDOptions | None = None, *, shard: bool = False):
        super().__init__(model, loss, SGDOptions() if options is None else options, shard=shard)


class Adam(_FirstOrder):
    """Adam with gradient-norm clipping (:mod:`hfrnn.optim.adam`) of ``model``."""

    _make = _adam.Adam

    def __init__(self, model: nn.Module, loss: str, options: AdamOptions | None = None, *, shard: bool = False):
        super().__init__(model, loss, AdamOptions() if options is None else options, shard=shard)


def optimizer_for(model: nn.Module, loss: str, options, *, shard: bool = False) -> ModuleOptimizer:
    """The public optimiser an options record configures (HF, SGD or Adam)."""
    kinds = {HFOptions: HessianFree, SGDOptions: SGD, AdamOptions: Adam}
    kind = kinds.get(type(options))
    if kind is None:
        raise ConfigError(f"unknown optimizer options {type(options).__name__}")
    return kind(model, loss, options, shard=shard)
