"""Speech: WAV clips to normalised 39-d MFCC sequences (Free Spoken Digit Dataset layout).

Clips are ``{digit}_{speaker}_{index}.wav`` (in ``source/recordings/`` or ``source/``), 16-bit
PCM; multi-channel files are averaged to mono. The split is the FSDD README's: index
``0..test_max_index`` (0..4) is test, ``test_max_index+1..valid_max_index`` valid (empty by
default, as the README defines no validation set), the rest train.

Features (:mod:`hfrnn.datasets.mfcc`) are computed per clip, so deltas never straddle two clips,
then normalised per coefficient, ``z = (x - mean) / std``, with the mean and standard deviation
over all training frames; both are stored in the file (``/extra/norm_mean``, ``/extra/norm_std``,
``[39]`` float64) so raw features can be recovered.

``mode`` (recorded in the file, and reported by the task with every number):

* ``stream`` (default): per split and speaker, the clips in the fixed order (index, digit) are
  concatenated into one continuous stream (sequence ``<split>/<speaker>``); the task cuts
  windows of length T from them. The FSDD clips (mean 0.44 s, about 42 frames) are much shorter
  than the paper's length-100 sequences, hence streams.
* ``clips``: one sequence per clip (``recordings/<file>``); the task pads and masks.
"""
from __future__ import annotations

import logging
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hfrnn.datasets.config import SpeechConfig, SpeechMode
from hfrnn.datasets.errors import DataError
from hfrnn.datasets.h5io import SPLITS, SequenceSet, Split, sha256_file
from hfrnn.datasets.mfcc import mfcc_features

log = logging.getLogger(__name__)

CLIP_NAME = re.compile(r"^(\d+)_([A-Za-z0-9-]+)_(\d+)\.wav$")
_STD_FLOOR = 1e-8  # a coefficient constant over the training set is left unscaled


@dataclass(frozen=True)
class Clip:
    path: Path
    rel: str  # path relative to the source folder, as recorded in the file
    digit: int
    speaker: str
    index: int


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples as float64 in [-1, 1) (mono) and the sample rate; bad files raise DataError."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, sr, n = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(f"cannot read WAV file {path}: {type(e).__name__}: {e}") from e
    if width != 2:
        raise DataError(f"WAV file {path} has {8 * width}-bit samples; only 16-bit PCM is supported")
    if n == 0 or len(raw) == 0:
        raise DataError(f"WAV file {path} has no samples")
    if len(raw) % (2 * channels):
        raise DataError(f"WAV file {path} is truncated mid-sample")
    x = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).mean(axis=1) / 32768.0
    return x, sr


def find_clips(source: Path) -> list[Clip]:
    """The clips under ``source`` (or ``source/recordings``) in the fixed (speaker, index, digit) order."""
    folder = source / "recordings" if (source / "recordings").is_dir() else source
    if not folder.is_dir():
        raise DataError(f"speech source {source} is not a folder of WAV files")
    clips, bad = [], []
    for p in sorted(folder.glob("*.wav")):
        m = CLIP_NAME.match(p.name)
        if m is None:
            bad.append(p.name)
            continue
        clips.append(Clip(p, p.relative_to(source).as_posix(), int(m[1]), m[2], int(m[3])))
    if bad:
        raise DataError(f"{folder}: WAV names must be <digit>_<speaker>_<index>.wav; got {bad[:3]}")
    if not clips:
        raise DataError(f"no WAV files in {folder}")
    return sorted(clips, key=lambda c: (c.speaker, c.index, c.digit))


def split_of(index: int, cfg: SpeechConfig) -> str:
    if index <= cfg.test_max_index:
        return "test"
    return "valid" if index <= cfg.valid_max_index else "train"


def clip_features(clip: Clip, cfg: SpeechConfig) -> tuple[np.ndarray, int]:
    """Features ``[n_frames, 3 n_mfcc]`` of one clip, and its sample rate."""
    x, sr = read_wav(clip.path)
    try:
        return mfcc_features(x, sr, cfg.win_ms, cfg.hop_ms, cfg.n_mfcc, cfg.n_mels, cfg.fmin,
                             cfg.fmax, cfg.preemphasis, cfg.delta_n), sr
    except ValueError as e:  # too short for one window, or filter edges outside (0, sr/2)
        raise DataError(f"{clip.path}: {e}") from e


def validate(cfg: SpeechConfig) -> None:
    if cfg.win_ms <= 0 or cfg.hop_ms <= 0 or cfg.n_mfcc < 1 or cfg.n_mels < cfg.n_mfcc or cfg.delta_n < 1:
        raise DataError("speech: need win_ms, hop_ms > 0, 1 <= n_mfcc <= n_mels, delta_n >= 1")
    if cfg.valid_max_index < cfg.test_max_index:
        raise DataError("speech: valid_max_index must be >= test_max_index")


def dataset_name(source: Path) -> str:
    p = source.resolve() if source.name in ("", ".", "recordings") else source
    p = p.parent if p.name == "recordings" else p
    return re.sub(r"[^a-z0-9]+", "_", p.name.lower()).strip("_") or "speech"


def build(cfg: SpeechConfig) -> SequenceSet:
    validate(cfg)
    if cfg.source is None:
        raise DataError("speech: give source=<folder of <digit>_<speaker>_<index>.wav clips>")
    source = Path(cfg.source)
    clips = find_clips(source)
    feats, rates = zip(*(clip_features(c, cfg) for c in clips))
    split = [split_of(c.index, cfg) for c in clips]
    train = [f for f, s in zip(feats, split) if s == "train"]
    if not train:
        raise DataError(f"{source}: no training clips (indices above valid_max_index={cfg.valid_max_index})")
    allt = np.concatenate(train)
    mean, std = allt.mean(axis=0), allt.std(axis=0)
    std = np.where(std > _STD_FLOOR, std, 1.0)
    dim = allt.shape[1]
    splits = {}
    for s in SPLITS:
        idx = [i for i, sp in enumerate(split) if sp == s]
        if cfg.mode == SpeechMode.clips:
            seqs = [(feats[i] - mean) / std for i in idx]
            names = [clips[i].rel for i in idx]
        else:
            speakers = sorted({clips[i].speaker for i in idx})
            seqs = [(np.concatenate([feats[i] for i in idx if clips[i].speaker == spk]) - mean) / std
                    for spk in speakers]
            names = [f"{s}/{spk}" for spk in speakers]
        splits[s] = Split.from_sequences(seqs, names, dim, np.float32)
        log.info("speech: %s split, %d clips, %d sequences, %d frames", s, len(idx), len(seqs),
                 len(splits[s].data))
    params = {k: (v.value if isinstance(v, SpeechMode) else v) for k, v in vars(cfg).items()
              if k not in ("source", "out", "overwrite")}
    params["sample_rates"] = sorted(set(rates))
    return SequenceSet(
        kind="speech", name=dataset_name(source), dim=dim, splits=splits, source=str(cfg.source),
        params=params, inputs=[(c.rel, sha256_file(c.path)) for c in clips],
        extra={"norm_mean": mean, "norm_std": std},
        description=f"{cfg.n_mfcc} MFCCs + deltas + delta-deltas ({dim}-d), {cfg.win_ms} ms windows, "
                    f"{cfg.hop_ms} ms hop, normalised with training statistics, mode={cfg.mode.value}")

