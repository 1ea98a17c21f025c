"""The natural tasks: windows, next-step shift, padding, the fixed test set, the measures."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

try:
    from fixtures_data import make_fsdd, make_midi_folder
except ImportError:
    from tests.fixtures_data import make_fsdd, make_midi_folder

from hfrnn.datasets import bouncing_balls, midi, speech
from hfrnn.datasets.config import BouncingBallsConfig, MidiConfig, SpeechConfig
from hfrnn.datasets.errors import DataError
from hfrnn.datasets.h5io import SequenceSet, Split, write_sequence_set
from hfrnn.tasks.base import Task
from hfrnn.tasks.natural import make_natural_task


def _toy(tmp_path, kind="speech", lengths=(5, 1, 3)):
    """Frames hold (sequence id, time) so windows can be checked exactly."""
    seqs = [np.stack([np.full(n, i + 1.0), np.arange(n, dtype=float) + 1], 1).astype(np.float32)
            for i, n in enumerate(lengths)]
    split = Split.from_sequences(seqs, [str(i) for i in range(len(seqs))], 2, np.float32)
    ds = SequenceSet(kind=kind, name="toy", dim=2, splits={"train": split, "valid": split, "test": split},
                     source="toy", params={})
    return str(write_sequence_set(tmp_path / f"{kind}.h5", ds))


def _pairs(batch):
    """(input frame, target frame) pairs at scored steps."""
    m = batch.mask.bool()
    return [(tuple(batch.inputs[t, b].tolist()), tuple(batch.targets[t, b].tolist()))
            for t, b in zip(*torch.nonzero(m, as_tuple=True))]


def test_protocol_and_flags(tmp_path):
    task = make_natural_task("speech", 3, _toy(tmp_path))
    assert isinstance(task, Task)
    assert task.n_in == task.n_out == 2 and task.loss == "squared"
    assert not task.has_success_rule and not task.damping_scale_T
    b = task.sample(4, torch.Generator().manual_seed(0))
    assert not task.wrong(b.targets, b).any() and task.wrong(b.targets, b).shape == (4,)


def test_sample_windows_are_uniform_and_shifted(tmp_path):
    task = make_natural_task("speech", 3, _toy(tmp_path))
    b = task.sample(4000, torch.Generator().manual_seed(0))
    assert b.inputs.shape == (2, 4000, 2) and b.mask.shape == (2, 4000) and b.mask.all()
    torch.testing.assert_close(b.inputs[1:], b.targets[:-1])  # x_{t+1} is input and target
    assert torch.all(b.targets[..., 1] == b.inputs[..., 1] + 1)  # consecutive frames
    assert torch.all(b.targets[..., 0] == b.inputs[..., 0])  # within one sequence
    starts = {(int(s), int(t)) for s, t in b.inputs[0].tolist()}
    assert starts == {(1, 1), (1, 2), (1, 3), (3, 1)}  # the length-1 sequence holds no window
    counts = np.unique(b.inputs[0, :, 1] * 10 + b.inputs[0, :, 0], return_counts=True)[1]
    assert counts.min() > 800  # 4 windows, about 1000 each
    again = task.sample(4000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.inputs, b.inputs)


def test_short_sequences_are_padded_and_masked(tmp_path):
    task = make_natural_task("speech", 6, _toy(tmp_path))
    b = task.sample(200, torch.Generator().manual_seed(1))
    assert b.inputs.shape == (5, 200, 2)
    for j in range(200):
        n = 5 if b.inputs[0, j, 0] == 1 else 3
        assert b.mask[:, j].tolist() == [1.0] * (n - 1) + [0.0] * (6 - n)
        assert torch.all(b.targets[n - 1:, j] == 0) and torch.all(b.inputs[n - 1:, j] == 0)


@pytest.mark.parametrize("T", [2, 3, 4, 9])
def test_test_set_scores_every_transition_once(tmp_path, T):
    task = make_natural_task("speech", T, _toy(tmp_path))
    tb = task.test_set()
    pairs = _pairs(tb)
    expected = [((s, t), (s, t + 1)) for s, n in ((1.0, 5), (3.0, 3)) for t in range(1, n)]
    assert sorted(pairs) == sorted(expected)
    assert task.test_set() is tb


def test_midi_log_likelihood(tmp_path):
    task = make_natural_task("midi", 3, _toy(tmp_path, "midi", (4, 3)))
    tb = task.test_set()
    m = task.extra_metrics(torch.zeros_like(tb.targets), tb)  # p = 1/2 everywhere
    n = 3 + 2  # transitions
    assert m["frames"] == n and m["sequences"] == 3  # windows of 3 frames: [0..2], [2,3], [0..2]
    assert m["log_lik_per_step"] == pytest.approx(-2 * math.log(2))
    assert m["log_lik_sum"] == pytest.approx(-2 * n * math.log(2))
    assert m["log_lik_per_sequence"] == pytest.approx(-2 * n * math.log(2) / 3)
    # Confident right answers give a log-likelihood near 0 (targets here are >= 1: clip to {0, 1}).
    tb.targets.clamp_(0, 1)
    m = task.extra_metrics(torch.where(tb.targets > 0, 30.0, -30.0), tb)
    assert -1e-9 < m["log_lik_per_step"] <= 0


def test_squared_error_measures(tmp_path):
    task = make_natural_task("bouncing_balls", 3, _toy(tmp_path, "bouncing_balls", (4,)))
    assert task.loss == "logistic"
    tb = task.test_set()
    m = task.extra_metrics(torch.zeros_like(tb.targets), tb)  # prediction sigmoid(0) = 1/2
    expect = sum((0.5 - 1) ** 2 + (0.5 - t) ** 2 for t in (2, 3, 4))
    assert m["sq_err_sum"] == pytest.approx(expect)
    assert m["sq_err_per_frame"] == pytest.approx(expect / 3)
    assert m["sq_err_per_sequence"] == pytest.approx(expect / 2)
    sq = make_natural_task("bouncing_balls", 3, task.info["path"], loss="squared")
    m = sq.extra_metrics(tb.targets, tb)  # linear outputs equal to the targets
    assert m["sq_err_sum"] == 0.0


def test_bad_options_and_files(tmp_path):
    path = _toy(tmp_path)
    with pytest.raises(ValueError, match="loss"):
        make_natural_task("speech", 3, path, loss="logistic")
    with pytest.raises(ValueError, match="unknown option"):
        make_natural_task("speech", 3, path, colour="red")
    with pytest.raises(ValueError, match="T >= 2"):
        make_natural_task("speech", 1, path)
    with pytest.raises(DataError, match="not 'midi'"):
        make_natural_task("midi", 3, path)
    with pytest.raises(DataError, match="hfrnn data midi source="):
        make_natural_task("midi", 3, str(tmp_path / "nottingham.h5"))
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 3])
    with pytest.raises(DataError):
        make_natural_task("speech", 3, path)


def test_end_to_end_on_built_fixtures(tmp_path):
    g = torch.Generator().manual_seed(0)
    cfg = BouncingBallsConfig(n_train=10, n_valid=2, n_test=3, length=8)
    p = write_sequence_set(tmp_path / "bb.h5", bouncing_balls.build(cfg))
    t = make_natural_task("bouncing_balls", 8, str(p))
    b = t.sample(5, g)
    assert b.inputs.shape == (7, 5, 225) and t.test_set().inputs.shape == (7, 3, 225)
    src = make_midi_folder(tmp_path / "m")
    p = write_sequence_set(tmp_path / "m.h5", midi.build(MidiConfig(source=str(src))))
    t = make_natural_task("midi", 20, str(p))
    b = t.sample(5, g)
    assert b.inputs.shape == (19, 5, 128) and set(b.inputs.unique().tolist()) <= {0.0, 1.0}
    assert t.test_set().mask.sum() == 2 * 39  # two 40-frame test tunes
    src = make_fsdd(tmp_path / "f")
    p = write_sequence_set(tmp_path / "s.h5", speech.build(SpeechConfig(source=str(src))))
    t = make_natural_task("speech", 10, str(p))
    assert t.info["mode"] == "stream" and t.sample(3, g).inputs.shape == (9, 3, 39)
    with pytest.raises(DataError):  # FSDD has no valid split by default
        make_natural_task("speech", 10, str(p), train_split="valid")
