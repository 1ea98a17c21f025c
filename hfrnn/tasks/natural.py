"""The natural problems (paper Table 1): next-step prediction on bouncing balls, MIDI, speech.

The data are the HDF5 files that ``hfrnn data`` builds (:mod:`hfrnn.datasets.h5io`); the tasks
only read them. A *window* is ``T`` consecutive frames ``x_0 .. x_{T-1}`` of one sequence; the
network reads ``x_0 .. x_{T-2}`` and predicts ``x_1 .. x_{T-1}``, so a batch has ``T - 1``
steps (``[T-1, B, D]``), every step scored. A sequence shorter than ``T`` (``L < T`` frames)
gives one window of ``L`` frames, zero-padded to ``T``, with ``mask = 1`` on its ``L - 1`` steps.

* ``sample(B, g)``: ``B`` windows drawn uniformly (with replacement) among all window positions
  of the training split: a sequence of length ``L`` holds ``max(L - T + 1, 1)`` of them
  (sequences with ``L < 2`` hold none).
* ``test_set()``: every test sequence cut into windows starting at ``0, T-1, 2(T-1), ...``
  (consecutive windows share one frame), so every transition ``x_t -> x_{t+1}`` of the test split
  is predicted exactly once (each window from a fresh hidden state); the last window is padded.

Measures (``extra_metrics``; ``p = g(s)`` the prediction, sums over scored steps ``t`` and
sequences ``b`` of the batch, ``d`` over the ``D`` output units, ``N`` scored steps, ``S`` windows):

* bouncing balls and speech: ``sq_err_sum = sum_{t,b} sum_d (p - y)^2`` (not halved),
  ``sq_err_per_frame = sq_err_sum / N``, ``sq_err_per_sequence = sq_err_sum / S``;
* MIDI (logistic outputs, independent Bernoulli pitches):
  ``log_lik_sum = sum_{t,b} sum_d [y log p + (1 - y) log(1 - p)]`` (natural log),
  ``log_lik_per_step = log_lik_sum / N``, ``log_lik_per_sequence = log_lik_sum / S``;
* always ``frames = N`` and ``sequences = S`` so that sums over several batches can be combined.

A "sequence" is a window of ``T`` frames (``T - 1`` predictions) unless it was padded. The
natural problems have no success rule and runs never "solve": ``wrong`` is True only for a
sequence with a non-finite output at a scored step (a NaN network is never right).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hfrnn.datasets.errors import DataError
from hfrnn.datasets.h5io import SequenceSet, Split, read_sequence_set
from hfrnn.losses import predict
from hfrnn.tasks.base import Batch

log = logging.getLogger(__name__)

NATURAL_TASKS = ("bouncing_balls", "midi", "speech")
LOSSES = {"bouncing_balls": ("logistic", "squared"), "midi": ("logistic",), "speech": ("squared",)}
DEFAULT_PATHS = {"bouncing_balls": "data/bouncing_balls.h5", "midi": "data/nottingham.h5",
                 "speech": "data/fsdd.h5"}


class _Windows:
    """Window positions of one split and a gather from them (see the module docstring)."""

    def __init__(self, split: Split, T: int):
        lengths = split.lengths
        keep = lengths >= 2
        self.T = T
        self.offsets = torch.from_numpy(split.offsets[:-1][keep].copy())
        self.lengths = torch.from_numpy(lengths[keep].copy())
        # One all-zero row at the end serves every padded position.
        pad = np.zeros((1, split.data.shape[1]), dtype=split.data.dtype)
        self.data = torch.from_numpy(np.concatenate([split.data, pad]))  # uint8 rolls stay uint8
        self.pad_row = len(split.data)

    def gather(self, seq: Tensor, start: Tensor) -> Batch:
        """Windows of ``T`` frames from sequences ``seq`` ``[B]`` at ``start`` ``[B]``."""
        t = torch.arange(self.T)[:, None]  # [T, 1]
        valid = t < (self.lengths[seq] - start)[None, :]  # [T, B]
        idx = torch.where(valid, self.offsets[seq][None, :] + start[None, :] + t,
                          torch.tensor(self.pad_row))
        x = self.data[idx].to(torch.float32)  # [T, B, D]
        mask = valid[1:].to(torch.float32)
        # Inputs at unscored steps (the window's last frame, padding) are zeroed too.
        return Batch(x[:-1] * mask[..., None], x[1:].clone(), mask, mask.clone())


class NaturalTask:
    """A next-step prediction task on a built dataset (module docstring)."""

    damping_scale_T = False
    has_success_rule = False

    def __init__(self, name: str, T: int, data: SequenceSet, loss: str | None = None,
                 train_split: str = "train", test_split: str = "test", path: str = ""):
        if name not in NATURAL_TASKS:
            raise ValueError(f"unknown natural task {name!r}; expected one of {NATURAL_TASKS}")
        if T < 2:
            raise ValueError(f"next-step prediction needs T >= 2 frames per window, got T={T}")
        loss = loss or LOSSES[name][0]
        if loss not in LOSSES[name]:
            raise ValueError(f"task {name}: loss must be one of {LOSSES[name]}, got {loss!r}")
        self.name, self.T, self.loss = name, T, loss
        self.n_in = self.n_out = data.dim
        self._train = _Windows(data.splits[train_split], T)
        if len(self._train.lengths) == 0:
            raise DataError(f"{path}: the {train_split!r} split has no sequence of 2 or more frames")
        self._test = _Windows(data.splits[test_split], T)
        self._test_batch: Batch | None = None
        w = torch.clamp(self._train.lengths - T + 1, min=1)
        self._cum = torch.cumsum(w, 0)
        self.info: dict[str, Any] = {
            "dataset": data.name, "path": path, "T": T, "loss": loss, "steps_per_window": T - 1,
            "mode": data.params.get("mode", "sequences"), "description": data.description,
            "train_windows": int(self._cum[-1]), "hfrnn_version_of_data": data.hfrnn_version}
        log.info("task %s on %s: %s", name, path or data.name, self.info)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        u = torch.randint(int(self._cum[-1]), (batch_size,), generator=generator)
        seq = torch.searchsorted(self._cum, u, right=True)
        start = u - (self._cum[seq] - torch.clamp(self._train.lengths[seq] - self.T + 1, min=1))
        return self._train.gather(seq, start)

    def test_set(self) -> Batch:
        if self._test_batch is None:
            stride = self.T - 1
            n_win = (self._test.lengths - 2) // stride + 1  # windows start while start < L - 1
            seq = torch.repeat_interleave(torch.arange(len(n_win)), n_win)
            first = torch.cumsum(n_win, 0) - n_win
            start = (torch.arange(len(seq)) - first[seq]) * stride
            self._test_batch = self._test.gather(seq, start)
        return self._test_batch

    def wrong(self, outputs: Tensor, batch: Batch) -> Tensor:
        bad = ~torch.isfinite(outputs.detach()).all(-1)  # [T, B]
        return (bad & (batch.score_mask.to(outputs.device) > 0)).any(0)

    def extra_metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        s, y, m = outputs.double(), batch.targets.double(), batch.mask.double()
        frames = float(m.sum())
        seqs = float((m.sum(0) > 0).sum())
        out = {"frames": frames, "sequences": seqs}
        if self.name == "midi":
            ll = -(F.binary_cross_entropy_with_logits(s, y, reduction="none").sum(-1) * m).sum()
            out.update(log_lik_sum=float(ll), log_lik_per_step=float(ll) / max(frames, 1.0),
                       log_lik_per_sequence=float(ll) / max(seqs, 1.0))
        else:
            se = (((predict(self.loss, s) - y) ** 2).sum(-1) * m).sum()
            out.update(sq_err_sum=float(se), sq_err_per_frame=float(se) / max(frames, 1.0),
                       sq_err_per_sequence=float(se) / max(seqs, 1.0))
        return out


def make_natural_task(name: str, T: int, path: str | None = None, **options: Any) -> NaturalTask:
    """Load ``path`` (default ``DEFAULT_PATHS[name]``) and build the task.

    Args:
        name: ``bouncing_balls``, ``midi`` or ``speech``; the file must be of that kind.
        T: frames per window (``T - 1`` predicted steps per sequence).
        path: the ``.h5`` file built by ``hfrnn data``.
        **options: ``loss`` (bouncing_balls: ``logistic`` (default) or ``squared``),
            ``train_split`` (default ``train``), ``test_split`` (default ``test``; ``valid``
            evaluates on the validation split).
    Raises:
        DataError: the file is missing, truncated, of the wrong kind or layout.
    """
    allowed = {"loss", "train_split", "test_split"}
    if set(options) - allowed:
        raise ValueError(f"unknown option(s) {sorted(set(options) - allowed)} for task {name}; "
                         f"allowed: {sorted(allowed)}")
    if name not in NATURAL_TASKS:
        raise ValueError(f"unknown natural task {name!r}; expected one of {NATURAL_TASKS}")
    path = str(path or DEFAULT_PATHS[name])
    data = read_sequence_set(Path(path), kind=name)
    return NaturalTask(name, T, data, path=path, **options)
