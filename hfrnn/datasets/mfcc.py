"""MFCCs with first and second time derivatives, in numpy (``specs/tasks.md``, speech features).

For a signal ``x`` (floats in [-1, 1]) at sample rate ``sr``:

1. pre-emphasis ``y[n] = x[n] - a x[n-1]`` (``a`` = 0.97; ``y[0] = x[0]``);
2. frames of ``W = round(win_ms sr / 1000)`` samples every ``H = round(hop_ms sr / 1000)``
   (25 ms / 10 ms: 200 / 80 samples at 8 kHz); ``1 + (len - W) // H`` frames, no end padding;
3. Hamming window, power spectrum ``P = |rfft(frame, K)|^2 / K`` with ``K`` the next power of
   two ``>= W`` (bins at ``k sr / K``, ``k = 0..K/2``);
4. ``M`` (26) triangular mel filters, HTK style: ``M + 2`` edges equally spaced on the mel scale
   ``mel(f) = 2595 log10(1 + f / 700)`` between ``fmin`` and ``fmax``; ``fmax`` is clipped to
   the Nyquist frequency ``sr / 2`` so no filter reaches past it; filter ``m`` rises from edge
   ``m`` to 1 at edge ``m + 1`` (its centre) and falls to 0 at edge ``m + 2``;
5. log energies ``log(max(F P, 1e-10))`` (the floor keeps silence finite);
6. DCT-II (orthonormal) of the log energies, first ``n_mfcc`` (13) coefficients, c0 included;
7. deltas by regression over ``+-N`` (2) frames,
   ``d_t = sum_{n=1}^N n (c_{t+n} - c_{t-n}) / (2 sum_{n=1}^N n^2)``, edge frames repeated;
   delta-deltas are the deltas of the deltas. The output is ``[n_frames, 3 n_mfcc]`` (39).

No liftering: it scales each coefficient by a constant, which the per-coefficient normalisation
with training-set statistics (:mod:`hfrnn.datasets.speech`) undoes anyway.

Relation to librosa (cross-checked in ``tests/test_crosscheck_mfcc.py``, agreement to ~1e-13;
the test asserts 1e-9). These conventions differ from librosa's defaults on purpose (they are
HTK's), so the reference is librosa's building blocks with matching arguments, not
``librosa.feature.mfcc(y=...)``:

* pre-emphasis: ``librosa.effects.preemphasis(x, coef=a, zi=[0])``; librosa's default ``zi``
  extrapolates ``x[-1] = 2 x[0] - x[1]`` instead of taking ``x[-1] = 0``;
* frames start at sample 0 with no padding (librosa: ``center=True`` pads by ``n_fft / 2``); and
  the window is the symmetric Hamming window ``np.hamming(W)`` (HTK's), whereas librosa's
  ``window="hamming"`` is the periodic one. librosa places a ``W``-sample window in the middle
  of its ``K``-sample frame, ``(K - W) // 2`` samples in; this changes only the phase of the
  spectrum, so ``|rfft|^2`` matches once the signal is shifted by that many samples;
* the power spectrum is divided by ``K`` (librosa: not), a constant that only shifts c0;
* filters: ``librosa.filters.mel(htk=True, norm=None)`` (librosa's default is the Slaney mel
  scale with area-normalised filters);
* log: natural log with floor ``1e-10`` = ``power_to_db(E, ref=1, amin=1e-10, top_db=None)``
  times ``ln(10) / 10``; ``librosa.feature.mfcc(y=...)`` uses decibels and clips everything
  80 dB below the clip's peak (``top_db=80``), which makes silence depend on the clip;
* DCT: the same (``dct_type=2, norm="ortho"``, ``lifter=0``);
* deltas: ``librosa.feature.delta(c, width=2N+1, order=1, mode="nearest")``; its default is
  ``width=9, mode="interp"`` (edge frames from a local polynomial fit, not repeated), and its
  ``order=2`` is the second derivative of a local quadratic fit, whereas the delta-deltas here
  are, as in HTK, the deltas of the deltas.
"""
from __future__ import annotations

import functools

import numpy as np

LOG_FLOOR = 1e-10


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_edges(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """The ``n_mels + 2`` filter edges in Hz; filter ``m`` has centre ``edges[m + 1]``."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))


@functools.lru_cache(maxsize=16)
def mel_filterbank(sr: int, n_fft: int, n_mels: int = 26, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular filters ``[n_mels, n_fft // 2 + 1]`` on the rfft bins (peak height 1)."""
    nyquist = sr / 2.0
    fmax = nyquist if fmax is None else min(fmax, nyquist)
    if not 0 <= fmin < fmax:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    e = mel_edges(n_mels, fmin, fmax)
    f = np.arange(n_fft // 2 + 1) * sr / n_fft
    lo, mid, hi = e[:-2, None], e[1:-1, None], e[2:, None]
    # Weights from the exact bin frequencies (not bins rounded to edges, as in HTK), so a filter
    # only a bin or two wide keeps its weight. (One narrower than the bin spacing, e.g. 64+ filters
    # at 8 kHz with K = 256, can still miss every bin; its log energy is then the floor. The
    # defaults leave at least 3 bins in every filter.)
    return np.maximum(0.0, np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)))


def frame_signal(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    """Overlapping frames ``[1 + (len(x) - win) // hop, win]`` (requires ``len(x) >= win``)."""
    n = 1 + (len(x) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def log_mel_energies(x: np.ndarray, sr: int, win_ms: float = 25.0, hop_ms: float = 10.0,
                     n_mels: int = 26, fmin: float = 0.0, fmax: float | None = None,
                     preemphasis: float = 0.97) -> np.ndarray:
    """Steps 1-5 of the module docstring: ``[n_frames, n_mels]``."""
    win, hop = round(win_ms * sr / 1000), round(hop_ms * sr / 1000)
    if len(x) < win:
        raise ValueError(f"signal of {len(x)} samples is shorter than one {win}-sample window")
    y = np.concatenate([x[:1], x[1:] - preemphasis * x[:-1]])
    n_fft = 1 << (win - 1).bit_length()
    frames = frame_signal(y, win, hop) * np.hamming(win)
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft
    return np.log(np.maximum(power @ mel_filterbank(sr, n_fft, n_mels, fmin, fmax).T, LOG_FLOOR))


@functools.lru_cache(maxsize=16)
def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II rows ``[n_out, n_in]``: ``C[k, m] = s_k cos(pi k (m + 1/2) / n_in)``."""
    k, m = np.arange(n_out)[:, None], np.arange(n_in)[None, :]
    c = np.cos(np.pi * k * (m + 0.5) / n_in) * np.sqrt(2.0 / n_in)
    c[0] /= np.sqrt(2.0)
    return c


def deltas(c: np.ndarray, N: int = 2) -> np.ndarray:
    """Regression deltas over ``+-N`` frames along axis 0, edge frames repeated."""
    padded = np.concatenate([np.repeat(c[:1], N, 0), c, np.repeat(c[-1:], N, 0)])
    T = len(c)
    num = sum(n * (padded[N + n:N + n + T] - padded[N - n:N - n + T]) for n in range(1, N + 1))
    return num / (2 * sum(n * n for n in range(1, N + 1)))


def mfcc_features(x: np.ndarray, sr: int, win_ms: float = 25.0, hop_ms: float = 10.0,
                  n_mfcc: int = 13, n_mels: int = 26, fmin: float = 0.0, fmax: float | None = None,
                  preemphasis: float = 0.97, delta_n: int = 2) -> np.ndarray:
    """MFCCs, deltas and delta-deltas ``[n_frames, 3 * n_mfcc]`` (float64)."""
    logmel = log_mel_energies(x, sr, win_ms, hop_ms, n_mels, fmin, fmax, preemphasis)
    c = logmel @ dct_matrix(n_mels, n_mfcc).T
    d = deltas(c, delta_n)
    return np.concatenate([c, d, deltas(d, delta_n)], axis=1)
