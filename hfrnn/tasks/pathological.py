"""The eight pathological long-range problems of Martens & Sutskever (2011), ``specs/tasks.md`` 1-7.

Time steps are 0-based; ``i[a, b]`` is a uniform integer in ``[a, b]`` inclusive, ``U[a, b]`` a
uniform real. Every batch is time-major (``inputs [T, B, n_in]``, ``targets [T, B, n_out]``,
``mask`` and ``score_mask [T, B]``), float32 on the CPU, and drawn from a caller's
``torch.Generator`` only, so a seed fixes it.

==========================  =====  =====  ========  ============================================
name                        n_in   n_out  loss      definition
==========================  =====  =====  ========  ============================================
addition                    2      1      squared   ch. 0 ``u_t ~ U[0,1]``; ch. 1 marks ``I < J``;
                                                    target ``u_I + u_J`` (or the mean) at the end
multiplication              2      1      squared   as addition, target ``u_I * u_J``
xor                         2      1      logistic  as addition with bits ``u_t``, target XOR
temporal_order              6      4      softmax   A/B at ``t1, t2``, distractors elsewhere;
                                                    class ``AA, AB, BA, BB`` at the end
temporal_order_3bit         6      8      softmax   three relevant positions, 8 classes
random_permutation          100    100    softmax   predict ``s_{t+1}``; ``s_0`` at the end
memorization                4      3      softmax   recall 5 bits after a trigger
memorization_20bit          7      6      softmax   recall 10 symbols of 5 after a trigger
==========================  =====  =====  ========  ============================================

**Marked pairs** (addition, multiplication, xor). A sequence has length ``T' ~ i[T, floor(1.1 T)]``
(``variable_length``, the default here; every batch is then padded to ``floor(1.1 T)`` steps with
zero inputs, zero targets and mask 0), or ``T' = T``. Marker positions are
``I ~ i[0, floor(T'/10) - 1]`` and ``J ~ i[floor(T'/10), floor(T'/2) - 1]``; the target sits at the
last real step ``T' - 1`` only. With ``sentinel`` the marker channel holds -1 at step 0 and at
``T' - 4`` (three steps before the last), and ``I`` is drawn from ``i[1, floor(T'/10) - 1]`` so a
marker never overwrites the sentinel (this needs ``T >= 20``). With ``shared_length`` one ``T'`` is
drawn per batch instead of per sequence.

**Temporal order** (Hochreiter & Schmidhuber 6a/6b). Symbols are one-hot over 6 channels:
0 = A, 1 = B, 2-5 distractors. Relevant positions ``i[floor(k T'/10), floor((k+1) T'/10)]`` for
``k = 1, 5`` (two-bit) or ``k = 1, 3, 6`` (three-bit) hold A or B; every other real step holds a
uniform distractor. The class, with A = 0 and B = 1 read as a binary number (first position most
significant), is the target at step ``T' - 1``. Fixed length ``T' = T`` by default.

**Random permutation** (task 2b). ``s_0 ~ i[0, 1]``, ``s_1 .. s_{T-1} ~ i[2, 99]``; the input at
step ``t`` is ``s_t``, the target ``s_{t+1}``, and ``s_0`` at step ``T - 1``. The loss is taken at
every step (``loss_every_step``) or the last only; right/wrong is decided at the last step only.
The released code scales HF's initial damping by ``T`` (``damping_scale_T``).

**Memorization** with ``K`` data steps over ``m`` data symbols (5-bit: ``K = 5, m = 2``; 20-bit:
``K = 10, m = 5``). Input channels ``0..m-1`` data, ``m`` blank, ``m+1`` trigger; output channels
``0..m-1`` data, ``m`` blank. Total length ``T + 2K`` (or ``T`` with ``total_length_is_T``; write
``D`` for the total minus ``2K``): data at steps ``0..K-1``, trigger at ``D + K - 1``, blank inputs
elsewhere; the targets are blank except at ``D + K .. D + 2K - 1``, which recall the data in order.
The loss and the decision are taken at every step. Only ``m**K`` sequences exist (32 for 5-bit),
so training and test sequences coincide.

**Wrong** (per sequence, at any ``score_mask`` step): real targets ``|s - y| > 0.04``; bits
``(s > 0) != y``; classes ``argmax s != argmax y``. A run succeeds when the wrong fraction on the
test set (10,000 sequences drawn from ``TEST_SEED``, outside every training seed ``[0, 2**32)``)
is below 1% (or 0.1%).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from hfrnn.tasks.base import Batch

__all__ = [
    "PATHOLOGICAL_TASKS",
    "TEST_SEED",
    "REAL_TOLERANCE",
    "make_task",
    "success",
    "error_rate",
    "wrong_sequences",
    "PathologicalTask",
    "MarkedPairTask",
    "TemporalOrderTask",
    "RandomPermutationTask",
    "MemorizationTask",
]

PATHOLOGICAL_TASKS: tuple[str, ...] = (
    "addition",
    "multiplication",
    "xor",
    "temporal_order",
    "temporal_order_3bit",
    "random_permutation",
    "memorization",
    "memorization_20bit",
)

TEST_SEED: int = 2**40 + 12345
"""Seed of every test set; training seeds lie in ``[0, 2**32)``, so the streams are disjoint."""

REAL_TOLERANCE: float = 0.04
"""A real-valued prediction is wrong when its absolute error exceeds this."""

_DEFAULT_OPTIONS: dict[str, Any] = {
    "variable_length": None,
    "shared_length": False,
    "addition_target": "sum",
    "sentinel": False,
    "loss_every_step": True,
    "total_length_is_T": False,
    "test_size": 10000,
    "test_seed": TEST_SEED,
}
_ADDITION_TARGETS = ("sum", "mean")


# ----------------------------------------------------------------------------------------------
# Scoring


def wrong_sequences(loss: str, outputs: Tensor, batch: Batch, tol: float = REAL_TOLERANCE) -> Tensor:
    """Per-sequence wrongness for a matched output/loss pair.

    Args:
        loss: ``squared`` (prediction ``s``; wrong when ``|s - y| > tol``), ``logistic``
            (wrong when ``(s > 0) != y``) or ``softmax`` (wrong when ``argmax s != argmax y``).
            Whatever the loss, a step with a non-finite output (NaN, inf) is wrong: no comparison
            with NaN is true, so without this rule a NaN network would be "solved".
        outputs: pre-activations ``s`` ``[T, B, K]``.
        batch: the batch; its ``score_mask`` ``[T, B]`` says where a step counts.
        tol: absolute tolerance for real targets.
    Returns:
        ``[B]`` bool, True where any scored step is wrong.
    """
    if outputs.shape != batch.targets.shape:
        raise ValueError(f"outputs have shape {tuple(outputs.shape)}, targets {tuple(batch.targets.shape)}")
    s, y = outputs.detach(), batch.targets.to(outputs.device)
    if loss == "squared":
        step_wrong = ((s - y).abs() > tol).any(-1)
    elif loss == "logistic":
        step_wrong = ((s > 0) != (y > 0.5)).any(-1)
    elif loss == "softmax":
        step_wrong = s.argmax(-1) != y.argmax(-1)
    else:
        raise ValueError(f"unknown loss {loss!r}; expected squared, logistic or softmax")
    step_wrong = step_wrong | ~torch.isfinite(s).all(-1)
    return (step_wrong & (batch.score_mask.to(outputs.device) > 0)).any(0)


def error_rate(wrong: Tensor) -> float:
    """Fraction of wrong sequences.

    Args:
        wrong: ``[B]`` bool from :meth:`PathologicalTask.wrong`.
    """
    if wrong.numel() == 0:
        raise ValueError("error_rate of an empty set of sequences")
    return int(wrong.sum().item()) / wrong.numel()  # exact count / n: 10 of 1000 is 0.01


def success(wrong: Tensor, threshold: float = 0.01) -> bool:
    """The paper's success rule: fewer than ``threshold`` of the sequences are wrong.

    Args:
        wrong: ``[B]`` bool, usually on the 10,000-sequence test set.
        threshold: 0.01 (the paper) or 0.001 (the released demo's stricter stop).
    """
    return error_rate(wrong) < threshold


# ----------------------------------------------------------------------------------------------
# Sampling helpers (all vectorised over the batch)


def _randint(lo: Tensor, hi: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform integers in ``[lo, hi]`` inclusive, elementwise (same shape as ``lo``, int64)."""
    r = torch.rand(lo.shape, generator=generator, dtype=torch.float64)
    v = lo + (r * (hi - lo + 1).to(torch.float64)).floor().long()
    return torch.minimum(v, hi)


def _lengths(batch_size: int, T: int, variable: bool, shared: bool, generator: torch.Generator) -> Tensor:
    """Per-sequence lengths ``T'`` ``[B]``: ``i[T, floor(1.1 T)]`` if ``variable`` else ``T``."""
    if not variable:
        return torch.full((batch_size,), T, dtype=torch.long)
    n = 1 if shared else batch_size
    lo = torch.full((n,), T, dtype=torch.long)
    L = _randint(lo, torch.full_like(lo, _padded_length(T)), generator)
    return L.expand(batch_size).clone() if shared else L


def _padded_length(T: int) -> int:
    """``floor(1.1 T)`` in exact integer arithmetic."""
    return (11 * T) // 10


def _valid(L: Tensor, T_total: int) -> Tensor:
    """``[T_total, B]`` bool, True at the real steps ``t < L_b``."""
    return torch.arange(T_total).unsqueeze(1) < L.unsqueeze(0)


def _at(L: Tensor, steps: Tensor, T_total: int) -> Tensor:
    """``[T_total, B]`` float, 1 exactly at step ``steps[b]`` of sequence ``b``."""
    out = torch.zeros(T_total, L.shape[0])
    out[steps, torch.arange(L.shape[0])] = 1.0
    return out


def _one_hot(symbols: Tensor, n: int) -> Tensor:
    """Float one-hot ``[..., n]`` of a long tensor."""
    out = torch.zeros(*symbols.shape, n)
    return out.scatter_(-1, symbols.unsqueeze(-1), 1.0)


def _window(L: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Temporal-order window ``[floor(k L / 10), floor((k + 1) L / 10)]``."""
    return (k * L) // 10, ((k + 1) * L) // 10


# ----------------------------------------------------------------------------------------------
# Tasks


class PathologicalTask:
    """Common part of the pathological problems (see the module docstring).

    Subclasses set ``name, n_in, n_out, loss, T_total`` and implement :meth:`_generate`.

    Attributes:
        T: the nominal sequence length the task was made with.
        T_total: the number of time steps of every batch (padded length).
        test_size, test_seed: size and seed of the fixed test set.
    """

    name: str
    n_in: int
    n_out: int
    loss: str
    damping_scale_T: bool = False
    has_success_rule: bool = True

    def __init__(self, name: str, T: int, test_size: int, test_seed: int) -> None:
        self.name = name
        self.T = T
        self.test_size = test_size
        self.test_seed = test_seed
        self._test: Batch | None = None

    T_total: int

    def _generate(self, batch_size: int, generator: torch.Generator) -> Batch:
        raise NotImplementedError

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A fresh batch of ``batch_size`` sequences drawn from ``generator``.

        Returns:
            :class:`Batch` with ``inputs [T_total, B, n_in]``, ``targets [T_total, B, n_out]``,
            ``mask`` and ``score_mask [T_total, B]``, all float32.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        return self._generate(batch_size, generator)

    def test_set(self) -> Batch:
        """The fixed test set: ``test_size`` sequences from ``test_seed`` (built once, cached)."""
        if self._test is None:
            g = torch.Generator().manual_seed(self.test_seed)
            self._test = self._generate(self.test_size, g)
        return self._test

    def wrong(self, outputs: Tensor, batch: Batch) -> Tensor:
        """``[B]`` bool, True where the sequence is wrong at any ``score_mask`` step.

        Args:
            outputs: pre-activations ``s`` ``[T_total, B, n_out]``.
            batch: the batch they were computed on.
        """
        return wrong_sequences(self.loss, outputs, batch)

    def extra_metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """None for the pathological problems: they are scored by :meth:`wrong` alone."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, T={self.T}, T_total={self.T_total})"


_PAIR_FUNCTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "addition": lambda a, b: a + b,
    "multiplication": lambda a, b: a * b,
    "xor": lambda a, b: (a != b).to(torch.float32),
}


class MarkedPairTask(PathologicalTask):
    """Addition, multiplication and XOR: a function of the two marked values at the end.

    Args:
        name: ``addition``, ``multiplication`` or ``xor``.
        T: nominal length (``>= 10``; ``>= 20`` with ``sentinel``).
        variable_length: ``T' ~ i[T, floor(1.1 T)]`` and padding to ``floor(1.1 T)``.
        shared_length: one ``T'`` per batch instead of per sequence.
        addition_target: ``sum`` or ``mean`` (addition only).
        sentinel: -1 in the marker channel at step 0 and ``T' - 4``.
    """

    n_in = 2
    n_out = 1

    def __init__(self, name: str, T: int, *, variable_length: bool, shared_length: bool,
                 addition_target: str, sentinel: bool, test_size: int, test_seed: int) -> None:
        super().__init__(name, T, test_size, test_seed)
        min_T = 20 if sentinel else 10
        if T < min_T:
            raise ValueError(f"{name} needs T >= {min_T}{' with sentinel' if sentinel else ''}, got T={T}")
        self.loss = "logistic" if name == "xor" else "squared"
        self.variable_length = variable_length
        self.shared_length = shared_length
        self.sentinel = sentinel
        self.addition_target = addition_target
        self.T_total = _padded_length(T) if variable_length else T
        self._f = _PAIR_FUNCTIONS[name]
        self._scale = 0.5 if (name == "addition" and addition_target == "mean") else 1.0

    def _generate(self, batch_size: int, generator: torch.Generator) -> Batch:
        B, Tt = batch_size, self.T_total
        L = _lengths(B, self.T, self.variable_length, self.shared_length, generator)
        valid = _valid(L, Tt)
        if self.name == "xor":
            u = torch.randint(0, 2, (Tt, B), generator=generator).to(torch.float32)
        else:
            u = torch.rand((Tt, B), generator=generator)
        u = u * valid
        tenth = L // 10
        I = _randint(torch.full_like(L, 1 if self.sentinel else 0), tenth - 1, generator)
        J = _randint(tenth, L // 2 - 1, generator)
        marker = _at(L, I, Tt) + _at(L, J, Tt)
        if self.sentinel:
            marker = marker - _at(L, torch.zeros_like(L), Tt) - _at(L, L - 4, Tt)
        cols = torch.arange(B)
        y = self._f(u[I, cols], u[J, cols]) * self._scale
        end = _at(L, L - 1, Tt)
        targets = (end * y).unsqueeze(-1)
        inputs = torch.stack([u, marker], dim=-1)
        return Batch(inputs, targets, end, end.clone())


class TemporalOrderTask(PathologicalTask):
    """Temporal order (2 relevant positions, 4 classes) and its 3-bit version (8 classes).

    Args:
        name: ``temporal_order`` or ``temporal_order_3bit``.
        T: nominal length; the relevant windows must be disjoint and end before ``T' - 1``.
        variable_length, shared_length: as for :class:`MarkedPairTask` (default off here).
    """

    n_in = 6
    n_distractors = 4

    def __init__(self, name: str, T: int, *, variable_length: bool, shared_length: bool,
                 test_size: int, test_seed: int) -> None:
        super().__init__(name, T, test_size, test_seed)
        self.loss = "softmax"
        self.windows = (1, 3, 6) if name == "temporal_order_3bit" else (1, 5)
        self.n_out = 2 ** len(self.windows)
        self.variable_length = variable_length
        self.shared_length = shared_length
        self.T_total = _padded_length(T) if variable_length else T
        self._check_windows()

    def _check_windows(self) -> None:
        """Raise unless, for every possible ``T'``, the windows are disjoint and precede the end."""
        for Lp in range(self.T, self.T_total + 1):
            bounds = [_window(torch.tensor(Lp), k) for k in self.windows]
            ends = [int(hi) for _, hi in bounds]
            starts = [int(lo) for lo, _ in bounds]
            if any(ends[i] >= starts[i + 1] for i in range(len(bounds) - 1)) or ends[-1] >= Lp - 1:
                raise ValueError(f"{self.name}: T={self.T} too short for disjoint relevant windows")

    def _generate(self, batch_size: int, generator: torch.Generator) -> Batch:
        B, Tt = batch_size, self.T_total
        L = _lengths(B, self.T, self.variable_length, self.shared_length, generator)
        valid = _valid(L, Tt)
        symbols = torch.randint(2, 2 + self.n_distractors, (Tt, B), generator=generator)
        cols = torch.arange(B)
        label = torch.zeros(B, dtype=torch.long)
        for k in self.windows:
            lo, hi = _window(L, k)
            pos = _randint(lo, hi, generator)
            bit = torch.randint(0, 2, (B,), generator=generator)
            symbols[pos, cols] = bit
            label = 2 * label + bit
        inputs = _one_hot(symbols, self.n_in) * valid.unsqueeze(-1)
        end = _at(L, L - 1, Tt)
        targets = _one_hot(label, self.n_out).unsqueeze(0) * end.unsqueeze(-1)
        return Batch(inputs, targets, end, end.clone())


class RandomPermutationTask(PathologicalTask):
    """Random permutation: predict the next symbol; recall ``s_0`` at the last step.

    Args:
        T: sequence length (fixed).
        loss_every_step: loss at every step (True) or at the last step only.
    """

    n_in = 100
    n_out = 100
    damping_scale_T = True

    def __init__(self, name: str, T: int, *, loss_every_step: bool, test_size: int, test_seed: int) -> None:
        super().__init__(name, T, test_size, test_seed)
        self.loss = "softmax"
        self.loss_every_step = loss_every_step
        self.T_total = T

    def _generate(self, batch_size: int, generator: torch.Generator) -> Batch:
        B, T = batch_size, self.T
        s0 = torch.randint(0, 2, (1, B), generator=generator)
        rest = torch.randint(2, self.n_in, (T - 1, B), generator=generator)
        s = torch.cat([s0, rest], dim=0)
        nxt = torch.cat([rest, s0], dim=0)
        last = torch.zeros(T, B)
        last[-1] = 1.0
        mask = torch.ones(T, B) if self.loss_every_step else last.clone()
        return Batch(_one_hot(s, self.n_in), _one_hot(nxt, self.n_out), mask, last)


class MemorizationTask(PathologicalTask):
    """Noiseless memorization: recall ``K`` symbols of ``m`` after a long blank stretch.

    Args:
        name: ``memorization`` (``K = 5, m = 2``) or ``memorization_20bit`` (``K = 10, m = 5``).
        T: the delay (total length ``T + 2K``), or the total length with ``total_length_is_T``.
    """

    def __init__(self, name: str, T: int, *, total_length_is_T: bool, test_size: int, test_seed: int) -> None:
        super().__init__(name, T, test_size, test_seed)
        self.loss = "softmax"
        self.n_steps, self.n_symbols = (10, 5) if name == "memorization_20bit" else (5, 2)
        K, m = self.n_steps, self.n_symbols
        self.n_in, self.n_out = m + 2, m + 1
        self.blank, self.trigger = m, m + 1
        self.total_length_is_T = total_length_is_T
        self.T_total = T if total_length_is_T else T + 2 * K
        self.delay = self.T_total - 2 * K
        if self.delay < 1:
            raise ValueError(f"{name} with total_length_is_T needs T >= {2 * K + 1}, got T={T}")
        # the trigger input: step T + 4 (5-bit) or T + 9 (20-bit) by default
        self.trigger_step = self.delay + K - 1

    def _generate(self, batch_size: int, generator: torch.Generator) -> Batch:
        B, Tt, K = batch_size, self.T_total, self.n_steps
        data = torch.randint(0, self.n_symbols, (K, B), generator=generator)
        x = torch.full((Tt, B), self.blank, dtype=torch.long)
        x[:K] = data
        x[self.trigger_step] = self.trigger
        y = torch.full((Tt, B), self.blank, dtype=torch.long)
        y[self.trigger_step + 1:] = data
        ones = torch.ones(Tt, B)
        return Batch(_one_hot(x, self.n_in), _one_hot(y, self.n_out), ones, ones.clone())


# ----------------------------------------------------------------------------------------------
# Factory


def _check_bool(key: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, bool):
        raise ValueError(f"option {key} must be a bool{' or None' if allow_none else ''}, got {value!r}")


def _check_int(key: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{key} must be an int >= {low}, got {value!r}")


def _validate(T: Any, opts: dict[str, Any]) -> None:
    """Raise ValueError for a bad ``T`` or a bad option value."""
    _check_int("T", T, 2)
    _check_bool("variable_length", opts["variable_length"], allow_none=True)
    for key in ("shared_length", "sentinel", "loss_every_step", "total_length_is_T"):
        _check_bool(key, opts[key])
    if opts["addition_target"] not in _ADDITION_TARGETS:
        raise ValueError(f"addition_target must be one of {_ADDITION_TARGETS}, "
                         f"got {opts['addition_target']!r}")
    _check_int("test_size", opts["test_size"], 1)
    _check_int("test_seed", opts["test_seed"], 0)


def make_task(name: str, T: int, **options: Any) -> PathologicalTask:
    """Build a pathological task by name.

    Args:
        name: one of :data:`PATHOLOGICAL_TASKS`.
        T: nominal sequence length (``>= 2``; each task may need more, see its class).
        **options: every task accepts all of these and ignores those that do not apply:
            ``variable_length`` (bool | None; None = task default: True for addition,
            multiplication, xor, False for the temporal orders; unused elsewhere),
            ``shared_length`` (bool, False: one length per batch instead of per sequence),
            ``addition_target`` (``sum`` | ``mean``), ``sentinel`` (bool, False),
            ``loss_every_step`` (bool, True; random permutation), ``total_length_is_T``
            (bool, False; memorization), ``test_size`` (int, 10000), ``test_seed``
            (int, :data:`TEST_SEED`).
    Returns:
        A task implementing :class:`hfrnn.tasks.base.Task`.
    Raises:
        ValueError: unknown name or option, or a bad value.
    """
    if name not in PATHOLOGICAL_TASKS:
        raise ValueError(f"unknown pathological task {name!r}; valid names: {', '.join(PATHOLOGICAL_TASKS)}")
    unknown = sorted(set(options) - set(_DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name}; "
                         f"valid options: {', '.join(_DEFAULT_OPTIONS)}")
    opts = {**_DEFAULT_OPTIONS, **options}
    _validate(T, opts)
    common = {"test_size": opts["test_size"], "test_seed": opts["test_seed"]}
    if name in _PAIR_FUNCTIONS:
        variable = True if opts["variable_length"] is None else opts["variable_length"]
        return MarkedPairTask(name, T, variable_length=variable, shared_length=opts["shared_length"],
                              addition_target=opts["addition_target"], sentinel=opts["sentinel"], **common)
    if name.startswith("temporal_order"):
        variable = bool(opts["variable_length"])
        return TemporalOrderTask(name, T, variable_length=variable,
                                 shared_length=opts["shared_length"], **common)
    if name == "random_permutation":
        return RandomPermutationTask(name, T, loss_every_step=opts["loss_every_step"], **common)
    return MemorizationTask(name, T, total_length_is_T=opts["total_length_is_T"], **common)
