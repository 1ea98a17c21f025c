"""MFCC features (hand-checkable properties) and the speech dataset builder."""
from __future__ import annotations


import numpy as np
import pytest

try:
    from fixtures_data import SHARED_DATA, make_fsdd, tone, write_wav
except ImportError:
    from tests.fixtures_data import SHARED_DATA, make_fsdd, tone, write_wav

from hfrnn.datasets import mfcc, speech
from hfrnn.datasets.config import SpeechConfig, SpeechMode
from hfrnn.datasets.errors import DataError


@pytest.mark.parametrize("sr", [8000, 16000])
def test_filterbank_within_nyquist(sr):
    fb = mfcc.mel_filterbank(sr, 512, 26, 0.0, 3 * sr)  # fmax beyond Nyquist is clipped
    edges = mfcc.mel_edges(26, 0.0, sr / 2)
    assert fb.shape == (26, 257) and np.all(fb >= 0) and np.all(fb.max(axis=1) > 0.5)
    assert edges[-1] == pytest.approx(sr / 2)
    np.testing.assert_allclose(fb, mfcc.mel_filterbank(sr, 512, 26, 0.0, None))


@pytest.mark.parametrize("sr,freq", [(8000, 300.0), (8000, 1000.0), (8000, 3000.0), (16000, 5000.0)])
def test_pure_tone_lands_in_nearest_band(sr, freq):
    energies = mfcc.log_mel_energies(tone(freq, 0.3, sr), sr, preemphasis=0.0).mean(axis=0)
    centres = mfcc.mel_edges(26, 0.0, sr / 2)[1:-1]
    assert int(np.argmax(energies)) == int(np.argmin(np.abs(centres - freq)))


def test_deltas_of_ramp_are_constant():
    t = np.arange(30.0)[:, None]
    c = 0.7 * t + np.array([[1.0, -2.0, 5.0]])
    d = mfcc.deltas(c, 2)
    np.testing.assert_allclose(d[2:-2], 0.7)  # interior; edge frames are repeated
    np.testing.assert_allclose(mfcc.deltas(d, 2)[4:-4], 0.0, atol=1e-12)
    np.testing.assert_allclose(mfcc.deltas(np.ones((5, 2)), 2), 0.0)


def test_silence_is_finite():
    f = mfcc.mfcc_features(np.zeros(4000), 8000)
    assert f.shape == (1 + (4000 - 200) // 80, 39) and np.isfinite(f).all()
    np.testing.assert_allclose(f[:, 13:], 0.0)  # constant frames: zero deltas
    np.testing.assert_allclose(f[:, 0], f[0, 0])


def test_dct_is_orthonormal():
    c = mfcc.dct_matrix(26, 26)
    np.testing.assert_allclose(c @ c.T, np.eye(26), atol=1e-12)


def test_frame_count_and_short_signal():
    assert mfcc.mfcc_features(tone(440, 0.1), 8000).shape == (1 + (800 - 200) // 80, 39)
    with pytest.raises(ValueError):
        mfcc.mfcc_features(np.zeros(150), 8000)


def test_read_wav(tmp_path):
    x, sr = speech.read_wav(write_wav(tmp_path / "a.wav", tone(440, 0.1), 8000))
    assert sr == 8000 and len(x) == 800 and np.abs(x).max() <= 0.5 + 1e-4
    stereo = np.repeat(tone(440, 0.1), 2)
    y, _ = speech.read_wav(write_wav(tmp_path / "s.wav", stereo, channels=2))
    np.testing.assert_allclose(y, x, atol=1e-4)


def test_bad_wavs(tmp_path):
    write_wav(tmp_path / "w8.wav", tone(440, 0.1), sampwidth=1)
    write_wav(tmp_path / "z.wav", np.zeros(0))
    (tmp_path / "junk.wav").write_bytes(b"RIFF1234WAVEjunk")
    for name, msg in (("w8.wav", "8-bit"), ("z.wav", "no samples"), ("junk.wav", "cannot read")):
        with pytest.raises(DataError, match=msg):
            speech.read_wav(tmp_path / name)


def test_build_streams(tmp_path):
    src = make_fsdd(tmp_path / "toy")
    ds = speech.build(SpeechConfig(source=str(src)))
    assert ds.name == "toy" and ds.dim == 39 and ds.params["mode"] == "stream"
    assert ds.splits["train"].names == ["train/ann", "train/bob"] and len(ds.splits["valid"]) == 0
    assert ds.splits["test"].names == ["test/ann", "test/bob"]
    x = ds.splits["train"].data.astype(np.float64)
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(0), 1.0, atol=1e-4)
    assert ds.extra["norm_mean"].shape == (39,) and np.all(ds.extra["norm_std"] > 0)
    assert len(ds.inputs) == 2 * 2 * 7 and ds.params["sample_rates"] == [8000]
    # Streams are the clips (index, digit order) back to back: the clips mode has the same frames.
    clips = speech.build(SpeechConfig(source=str(src), mode=SpeechMode.clips))
    assert len(clips.splits["train"]) == 2 * 2 * 2 and len(clips.splits["test"]) == 2 * 2 * 5
    ann = [i for i, n in enumerate(clips.splits["train"].names) if "_ann_" in n]
    assert [clips.splits["train"].names[i] for i in ann] == [
        f"recordings/{d}_ann_{i}.wav" for i in (5, 6) for d in (0, 1)]
    np.testing.assert_array_equal(
        np.concatenate([clips.splits["train"].sequence(i) for i in ann]), ds.splits["train"].sequence(0))


def test_build_valid_split_and_errors(tmp_path):
    src = make_fsdd(tmp_path / "fsdd", speakers=("ann",), digits=1, indices=8)
    ds = speech.build(SpeechConfig(source=str(src), valid_max_index=5, mode=SpeechMode.clips))
    assert [len(ds.splits[s]) for s in ("train", "valid", "test")] == [2, 1, 5]
    write_wav(src / "recordings" / "0_ann_9.wav", tone(440, 0.1), sampwidth=1)
    with pytest.raises(DataError, match="0_ann_9.wav"):
        speech.build(SpeechConfig(source=str(src)))
    write_wav(src / "recordings" / "hello.wav", tone(440, 0.1))
    with pytest.raises(DataError, match="digit"):
        speech.build(SpeechConfig(source=str(src)))
    with pytest.raises(DataError):
        speech.build(SpeechConfig(source=str(tmp_path / "none")))
    short = make_fsdd(tmp_path / "s", speakers=("x",), digits=1, indices=6)
    write_wav(short / "recordings" / "0_x_7.wav", np.zeros(100))
    with pytest.raises(DataError, match="shorter"):
        speech.build(SpeechConfig(source=str(short)))


FSDD = SHARED_DATA / "speech" / "fsdd" / "recordings"


@pytest.mark.skipif(not FSDD.is_dir(), reason="shared FSDD data not present")
def test_real_fsdd_clip():
    x, sr = speech.read_wav(FSDD / "0_george_0.wav")
    f = mfcc.mfcc_features(x, sr)
    assert sr == 8000 and f.shape[1] == 39 and np.isfinite(f).all()
    assert f.shape[0] == 1 + (len(x) - 200) // 80
