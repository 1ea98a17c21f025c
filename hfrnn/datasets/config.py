"""Options of the three dataset builders (``hfrnn data <kind> key=value ...``), as dataclasses.

These are plain dataclasses: the builders take them directly, and :mod:`hfrnn.data_cli` registers
them with Hydra's ConfigStore (as ``data_<kind>``) so a misspelt key or a wrong type fails with
Hydra's message before any work. ``out=None`` means ``data/<name>.h5`` with the name derived from
the source (``nottingham``, ``jsb_chorales_quarter``, ``fsdd``, ``bouncing_balls``).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional


class Framing(Enum):
    """How MIDI time becomes frames: fixed seconds (through the tempo map) or fixed beats (ticks)."""

    seconds = "seconds"
    beats = "beats"


class SpeechMode(Enum):
    """How short clips become training sequences (``specs/tasks.md``, speech features)."""

    stream = "stream"  # each speaker's clips of a split concatenated, in a fixed order
    clips = "clips"  # one sequence per clip; the task pads and masks


@dataclass
class BouncingBallsConfig:
    """The generator of Sutskever, Hinton & Taylor (2008) as used by the paper (15x15, 3 balls)."""

    out: Optional[str] = None
    overwrite: bool = False
    seed: int = 0
    res: int = 15  # frames are res x res pixels
    n_balls: int = 3
    radius: float = 1.2
    size: float = 10.0  # side of the square box
    length: int = 30  # frames per sequence
    n_train: int = 4000
    n_valid: int = 500
    n_test: int = 1000


@dataclass
class MidiConfig:
    """Piano-rolls from a folder of MIDI files, or from a piano-roll set (.json / .mat).

    ``frame_s`` applies to ``framing=seconds``, ``frame_beats`` to ``framing=beats``; neither
    applies to the piano-roll sets, whose frames are given (quarter or eighth notes).
    """

    source: Optional[str] = None
    out: Optional[str] = None
    overwrite: bool = False
    framing: Framing = Framing.seconds
    frame_s: float = 0.05
    frame_beats: float = 0.5
    pitches: int = 128  # 128 (all MIDI pitches) or 88 (piano keys, MIDI 21..108)
    drums: bool = False  # include channel index 9 (General MIDI percussion)


@dataclass
class SpeechConfig:
    """13 MFCCs + deltas + delta-deltas from a folder of ``{digit}_{speaker}_{index}.wav`` clips."""

    source: Optional[str] = None
    out: Optional[str] = None
    overwrite: bool = False
    mode: SpeechMode = SpeechMode.stream
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_mfcc: int = 13
    n_mels: int = 26
    fmin: float = 0.0
    fmax: Optional[float] = None  # None: the Nyquist frequency of each file
    preemphasis: float = 0.97
    delta_n: int = 2  # regression half-width of the delta filter
    test_max_index: int = 4  # FSDD README: indices 0..4 are the test set
    valid_max_index: int = 4  # indices test_max_index+1..valid_max_index are valid (none by default)


CONFIGS = {"bouncing_balls": BouncingBallsConfig, "midi": MidiConfig, "speech": SpeechConfig}
