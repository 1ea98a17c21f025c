"""Cross-check of :mod:`hfrnn.datasets.mfcc` (and the WAV reader feeding it) against librosa.

hfrnn's features follow HTK's conventions, which are not librosa's defaults (the list is in the
module docstring of :mod:`hfrnn.datasets.mfcc`). The reference :func:`_librosa_features` therefore
rebuilds the pipeline from librosa's own pieces with the matching arguments; every step of it is
librosa's code (pre-emphasis, STFT, mel filters, dB conversion, DCT, Savitzky-Golay deltas), and
only the conventions are ours:

* pre-emphasis with ``zi=0`` (``y[0] = x[0]``);
* frames of ``W`` samples from sample 0, no centring: librosa puts the ``W``-sample window in
  the middle of a ``K``-sample frame, so the signal gets ``(K - W) // 2`` leading zeros (this
  shifts each frame's phase only, not ``|X|^2``) and ``K - W - (K - W) // 2`` trailing ones,
  giving the same ``1 + (len - W) // H`` frames;
* the symmetric Hamming window ``np.hamming(W)``, HTK mel filters with peak 1, power / ``K``;
* ``ln(max(E, 1e-10)) = power_to_db(E, amin=1e-10, top_db=None) ln(10) / 10``;
* DCT-II orthonormal, no liftering; deltas ``delta(width=2N+1, order=1, mode="nearest")``,
  delta-deltas the same applied to the deltas.

Tolerance: ``atol = 1e-9`` on log energies and features (observed: ~1e-13, float64 rounding of
two FFT implementations; any convention difference, e.g. a periodic window or the Slaney scale,
moves them by more than 1e-3). The pieces are also checked one by one, so a failure points at
its step.
"""
from __future__ import annotations

import warnings
import wave

import numpy as np
import pytest

librosa = pytest.importorskip("librosa")
wavfile = pytest.importorskip("scipy.io.wavfile")

try:
    from fixtures_data import SHARED_DATA
except ImportError:
    from tests.fixtures_data import SHARED_DATA

from hfrnn.datasets import mfcc
from hfrnn.datasets.speech import read_wav

ATOL = 1e-9
FSDD = SHARED_DATA / "speech" / "fsdd" / "recordings"


def _sizes(sr: int, win_ms: float, hop_ms: float) -> tuple[int, int, int]:
    """(W, H, K): window and hop in samples, FFT size the next power of two >= W."""
    W, H = round(win_ms * sr / 1000), round(hop_ms * sr / 1000)
    return W, H, 1 << (W - 1).bit_length()


def _librosa_features(x: np.ndarray, sr: int, win_ms: float = 25.0, hop_ms: float = 10.0,
                      n_mfcc: int = 13, n_mels: int = 26, fmin: float = 0.0,
                      fmax: float | None = None, preemphasis: float = 0.97,
                      delta_n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel energies ``[T, n_mels]``, features ``[T, 3 n_mfcc]``) from librosa's pieces."""
    W, H, K = _sizes(sr, win_ms, hop_ms)
    y = librosa.effects.preemphasis(x, coef=preemphasis, zi=[0.0])
    lead = (K - W) // 2  # where librosa's pad_center puts the window inside the K-sample frame
    y = np.concatenate([np.zeros(lead), y, np.zeros(K - W - lead)])
    power = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=K, hop_length=H, win_length=W, window=np.hamming(W), center=False,
        power=2.0, n_mels=n_mels, fmin=fmin, fmax=sr / 2 if fmax is None else fmax, htk=True,
        norm=None, dtype=np.float64) / K
    logmel = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None) * np.log(10) / 10
    c = librosa.feature.mfcc(S=logmel, n_mfcc=n_mfcc, dct_type=2, norm="ortho", lifter=0)
    d = librosa.feature.delta(c, width=2 * delta_n + 1, order=1, mode="nearest")
    dd = librosa.feature.delta(d, width=2 * delta_n + 1, order=1, mode="nearest")
    return logmel.T, np.concatenate([c, d, dd]).T


def _quantised_speechlike(rng, n: int) -> np.ndarray:
    """16-bit-quantised noise bursts with digital silence around them (hits the log floor)."""
    env = np.zeros(n)
    env[n // 4: 3 * n // 4] = 0.05
    return np.round(rng.standard_normal(n) * env * 32768) / 32768


# --- the pieces ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [
    (8000, 256, 26, 0.0, None), (16000, 512, 40, 300.0, 3400.0), (11025, 512, 26, 50.0, 5000.0),
    (22050, 1024, 80, 0.0, None), (8000, 256, 128, 0.0, 4000.0),  # the last has empty filters
])
def test_mel_filterbank_is_librosa_htk_unnormalised(sr, n_fft, n_mels, fmin, fmax):
    ours = mfcc.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa's "Empty filters detected"
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                                  fmax=sr / 2 if fmax is None else fmax, htk=True, norm=None,
                                  dtype=np.float64)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    # Both leave a filter narrower than the bin spacing empty (128 filters at 8 kHz, K = 256).
    assert ((ours.max(axis=1) == 0).sum() > 0) == (n_mels == 128)
    np.testing.assert_allclose(mfcc.mel_edges(n_mels, fmin, sr / 2 if fmax is None else fmax),
                               librosa.mel_frequencies(n_mels + 2, fmin=fmin,
                                                       fmax=sr / 2 if fmax is None else fmax,
                                                       htk=True), rtol=1e-12)
    f = np.array([0.0, 440.0, 1000.0, 4000.0])
    np.testing.assert_allclose(mfcc.hz_to_mel(f), librosa.hz_to_mel(f, htk=True), rtol=1e-12)
    np.testing.assert_allclose(mfcc.mel_to_hz(mfcc.hz_to_mel(f)), f, rtol=1e-12, atol=1e-9)


def test_framing_window_and_power_spectrum():
    rng = np.random.default_rng(1)
    x, sr = rng.standard_normal(1234), 8000
    W, H, K = _sizes(sr, 25.0, 10.0)
    frames = mfcc.frame_signal(x, W, H)
    np.testing.assert_array_equal(frames, librosa.util.frame(x, frame_length=W, hop_length=H).T)
    # hfrnn's window is the symmetric Hamming window; librosa's "hamming" is the periodic one.
    np.testing.assert_allclose(np.hamming(W), 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(W) / (W - 1)))
    assert not np.allclose(np.hamming(W), librosa.filters.get_window("hamming", W))
    ours = np.abs(np.fft.rfft(frames * np.hamming(W), K)) ** 2
    lead = (K - W) // 2
    padded = np.concatenate([np.zeros(lead), x, np.zeros(K - W - lead)])
    ref = np.abs(librosa.stft(padded, n_fft=K, hop_length=H, win_length=W, window=np.hamming(W),
                              center=False)) ** 2
    np.testing.assert_allclose(ours, ref.T, rtol=1e-10, atol=1e-10 * ref.max())


def test_preemphasis_and_log_floor_match_librosa():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(400)
    ours = mfcc.log_mel_energies(x, 8000, preemphasis=0.97)
    ref = _librosa_features(x, 8000)[0]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL)
    # librosa's default zi extrapolates backwards, so its first sample differs from x[0].
    assert librosa.effects.preemphasis(x, coef=0.97)[0] != x[0]
    assert librosa.effects.preemphasis(x, coef=0.97, zi=[0.0])[0] == x[0]
    silent = mfcc.log_mel_energies(np.zeros(800), 8000)
    np.testing.assert_array_equal(silent, np.log(mfcc.LOG_FLOOR))
    np.testing.assert_allclose(_librosa_features(np.zeros(800), 8000)[0], silent, rtol=0, atol=ATOL)


@pytest.mark.parametrize("n_in,n_out", [(26, 13), (40, 20), (13, 13)])
def test_dct_is_orthonormal_dct2(n_in, n_out):
    rng = np.random.default_rng(3)
    s = rng.standard_normal((7, n_in))
    ref = librosa.feature.mfcc(S=s.T, n_mfcc=n_out, dct_type=2, norm="ortho", lifter=0).T
    np.testing.assert_allclose(s @ mfcc.dct_matrix(n_in, n_out).T, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("N", [1, 2, 3])
@pytest.mark.parametrize("T", [1, 2, 5, 40])
def test_deltas_are_savgol_nearest(N, T):
    rng = np.random.default_rng(4)
    c = rng.standard_normal((T, 13))
    d = mfcc.deltas(c, N)
    ref = librosa.feature.delta(c.T, width=2 * N + 1, order=1, mode="nearest").T
    np.testing.assert_allclose(d, ref, rtol=0, atol=1e-12)
    # Delta-deltas are deltas of deltas (HTK), not librosa's order=2 (a local quadratic fit).
    ref2 = librosa.feature.delta(ref.T, width=2 * N + 1, order=1, mode="nearest").T
    np.testing.assert_allclose(mfcc.deltas(d, N), ref2, rtol=0, atol=1e-12)


# --- the whole pipeline --------------------------------------------------------------------------

@pytest.mark.parametrize("case", [
    dict(sr=8000, n=8000),
    dict(sr=8000, n=200),  # exactly one frame
    dict(sr=8000, n=430),  # fewer frames than the delta window
    dict(sr=11025, n=11025),  # W = 276 (odd K - W split), digital silence at the ends
    dict(sr=16000, n=9000, n_mels=40, fmin=300.0, fmax=3400.0, preemphasis=0.0, n_mfcc=20,
         delta_n=3),
    dict(sr=22050, n=5000, win_ms=20.0, hop_ms=5.0),
], ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_mfcc_features_match_librosa(case):
    case = dict(case)
    sr, n = case.pop("sr"), case.pop("n")
    x = _quantised_speechlike(np.random.default_rng(n), n)
    logmel_ref, ref = _librosa_features(x, sr, **case)
    logmel = mfcc.log_mel_energies(x, sr, case.get("win_ms", 25.0), case.get("hop_ms", 10.0),
                                   case.get("n_mels", 26), case.get("fmin", 0.0),
                                   case.get("fmax"), case.get("preemphasis", 0.97))
    ours = mfcc.mfcc_features(x, sr, **case)
    assert ours.shape == ref.shape == (len(logmel_ref), 3 * case.get("n_mfcc", 13))
    np.testing.assert_allclose(logmel, logmel_ref, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL)


def _write_wav(path, samples: np.ndarray, sr: int) -> None:
    """16-bit PCM through the stdlib writer; ``samples`` is ``[n, channels]`` int16."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(samples.astype("<i2").tobytes())


@pytest.mark.parametrize("channels", [1, 2])
def test_read_wav_matches_scipy(tmp_path, channels):
    rng = np.random.default_rng(5)
    s = rng.integers(-32768, 32768, (1000, channels)).astype(np.int16)
    _write_wav(tmp_path / "a.wav", s, 8000)
    x, sr = read_wav(tmp_path / "a.wav")
    sr_ref, raw = wavfile.read(tmp_path / "a.wav")
    assert sr == sr_ref == 8000
    ref = raw.reshape(len(raw), -1).astype(np.float64).mean(axis=1) / 32768.0
    np.testing.assert_array_equal(x, ref)


@pytest.mark.skipif(not FSDD.is_dir(), reason="shared FSDD recordings not present")
def test_real_fsdd_clips_match_librosa():
    """Every 10th FSDD clip (300: all digits and speakers): WAV samples and features."""
    files = sorted(FSDD.glob("*.wav"))[::10]
    assert len(files) >= 100
    worst = 0.0
    for f in files:
        x, sr = read_wav(f)
        sr_ref, raw = wavfile.read(f)
        assert sr == sr_ref and raw.dtype == np.int16
        np.testing.assert_array_equal(x, raw.reshape(len(raw), -1).mean(axis=1) / 32768.0)
        logmel_ref, ref = _librosa_features(x, sr)
        np.testing.assert_allclose(mfcc.log_mel_energies(x, sr), logmel_ref, rtol=0, atol=ATOL)
        ours = mfcc.mfcc_features(x, sr)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL, err_msg=str(f))
        worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst < ATOL
