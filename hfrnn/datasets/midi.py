"""MIDI files to binary piano-rolls (``specs/tasks.md``, MIDI piano-roll), read with mido.

A piano-roll is ``R`` ``[n_frames, P]`` (uint8 0/1) with ``R[k, p] = 1`` when pitch ``p`` sounds
at the frame time ``t_k = k * f``. Time is real time by default (``f`` = ``frame_s`` = 0.05 s),
or beats (``f`` = ``frame_beats`` quarter notes, i.e. ``f * ticks_per_beat`` ticks).

Real time goes through the tempo map: every ``set_tempo`` of every track (format 0 and 1) is
merged; a tick ``n`` is at ``sec(n) = sec(n_j) + (n - n_j) * tempo_j / (1e6 * ticks_per_beat)``
where ``n_j`` is the last tempo change at or before ``n`` (500000 us/beat before the first).

Notes: events of all tracks are merged in (tick, track, position) order; ``note_on`` with velocity
0 is a ``note_off``. Per (channel, pitch) the note-ons wait in a FIFO queue and a ``note_off``
ends the oldest one, so overlapping notes of one pitch give the union of their spans; a
``note_off`` with nothing sounding is ignored; notes still sounding at the end of the file end at
its last tick. A note on ``[s, e)`` (in frames) marks the frames ``k`` with ``s <= k < e``; a
note too short to contain a frame time marks the frame it starts in (``floor(s)``), so every note
marks at least one frame. The roll ends at the last marked frame. Channel index 9 (General MIDI
drums) is left out unless ``drums=true``; with ``pitches=88`` only MIDI 21..108 are kept (column
``p - 21``).

Anything mido cannot parse, and SMPTE or format-2 files, raise :class:`DataError`.
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from hfrnn.datasets.config import Framing, MidiConfig
from hfrnn.datasets.errors import DataError
from hfrnn.datasets.h5io import SPLITS, SequenceSet, Split, sha256_file

log = logging.getLogger(__name__)

DEFAULT_TEMPO = 500_000  # microseconds per beat (120 bpm) until the first set_tempo
DRUM_CHANNEL = 9
_TOL = 1e-6  # frames; absorbs float error in tick -> second conversion at exact frame times


@dataclass
class Notes:
    """The notes of one file in ticks: ``start``, ``end``, ``pitch``, ``channel`` ``[n]`` each."""

    start: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    channel: np.ndarray
    ticks_per_beat: int
    tempo_ticks: np.ndarray  # [k] ticks of tempo changes (first is 0)
    tempo: np.ndarray  # [k] microseconds per beat from that tick on


def read_notes(path: str | Path) -> Notes:
    """Parse a MIDI file into notes (ticks) and its tempo map."""
    try:
        mid = mido.MidiFile(path)
        tracks = [list(t) for t in mid.tracks]
    except Exception as e:  # mido raises OSError, EOFError, ValueError, KeyError, ...
        raise DataError(f"corrupt or unreadable MIDI file {path}: {type(e).__name__}: {e}") from e
    tpb = mid.ticks_per_beat
    if mid.type == 2:
        raise DataError(f"MIDI file {path} is format 2 (asynchronous tracks), which is not supported")
    if tpb <= 0:
        raise DataError(f"MIDI file {path} uses SMPTE time division ({tpb}), which is not supported")

    tempos: list[tuple[int, int]] = []
    events: list[tuple[int, int, int, bool, int, int]] = []  # tick, track, pos, on, channel, pitch
    end_tick = 0
    for k, track in enumerate(tracks):
        tick = 0
        for pos, msg in enumerate(track):
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, msg.tempo))
            elif msg.type in ("note_on", "note_off"):
                on = msg.type == "note_on" and msg.velocity > 0
                events.append((tick, k, pos, on, msg.channel, msg.note))
        end_tick = max(end_tick, tick)
    events.sort(key=lambda e: e[:3])

    sounding: dict[tuple[int, int], deque[int]] = defaultdict(deque)
    notes: list[tuple[int, int, int, int]] = []
    for tick, _, _, on, ch, p in events:
        if on:
            sounding[ch, p].append(tick)
        elif sounding[ch, p]:
            notes.append((sounding[ch, p].popleft(), tick, p, ch))
    for (ch, p), starts in sounding.items():
        notes.extend((s, end_tick, p, ch) for s in starts)

    tempos.sort(key=lambda x: x[0])  # stable: of two changes at one tick the later one wins
    t_ticks, t_vals = [0], [DEFAULT_TEMPO]
    for tick, tempo in tempos:
        if tick == t_ticks[-1]:
            t_vals[-1] = tempo
        else:
            t_ticks.append(tick)
            t_vals.append(tempo)
    a = np.array(notes, dtype=np.int64).reshape(-1, 4)
    return Notes(a[:, 0], a[:, 1], a[:, 2], a[:, 3], tpb,
                 np.array(t_ticks, dtype=np.int64), np.array(t_vals, dtype=np.float64))


def ticks_to_seconds(ticks: np.ndarray, tempo_ticks: np.ndarray, tempo: np.ndarray,
                     ticks_per_beat: int) -> np.ndarray:
    """Real time of ``ticks`` through a piecewise-constant tempo map (module docstring)."""
    sec_per_tick = tempo / (1e6 * ticks_per_beat)
    seg_start = np.concatenate([[0.0], np.cumsum(np.diff(tempo_ticks) * sec_per_tick[:-1])])
    j = np.searchsorted(tempo_ticks, ticks, side="right") - 1
    return seg_start[j] + (ticks - tempo_ticks[j]) * sec_per_tick[j]


def roll_from_spans(start: np.ndarray, end: np.ndarray, col: np.ndarray, width: int) -> np.ndarray:
    """Binary roll ``[n_frames, width]`` from note spans in frame units (module docstring rule)."""
    first = np.ceil(start - _TOL).astype(np.int64)
    stop = np.ceil(end - _TOL).astype(np.int64)
    short = stop <= first
    first = np.where(short, np.floor(start + _TOL).astype(np.int64), first)
    stop = np.where(short, first + 1, stop)
    n_frames = int(stop.max()) if len(stop) else 0
    diff = np.zeros((n_frames + 1, width), dtype=np.int32)
    np.add.at(diff, (first, col), 1)
    np.add.at(diff, (stop, col), -1)
    return (np.cumsum(diff[:-1], axis=0) > 0).astype(np.uint8)


def piano_roll(path: str | Path, cfg: MidiConfig) -> np.ndarray:
    """The piano-roll ``[n_frames, cfg.pitches]`` (uint8) of one MIDI file."""
    n = read_notes(path)
    keep = np.ones(len(n.pitch), dtype=bool) if cfg.drums else n.channel != DRUM_CHANNEL
    lo = 0 if cfg.pitches == 128 else 21
    keep &= (n.pitch >= lo) & (n.pitch < lo + cfg.pitches)
    if cfg.framing == Framing.seconds:
        to_frames = lambda t: ticks_to_seconds(t, n.tempo_ticks, n.tempo, n.ticks_per_beat) / cfg.frame_s
    else:
        to_frames = lambda t: t / (n.ticks_per_beat * cfg.frame_beats)
    return roll_from_spans(to_frames(n.start[keep]), to_frames(n.end[keep]), n.pitch[keep] - lo,
                           cfg.pitches)


def validate(cfg: MidiConfig) -> None:
    if cfg.pitches not in (88, 128):
        raise DataError(f"pitches must be 128 or 88, got {cfg.pitches}")
    if cfg.frame_s <= 0 or cfg.frame_beats <= 0:
        raise DataError("frame_s and frame_beats must be positive")


def dataset_name(source: str | Path) -> str:
    """``nottingham`` for a folder, ``jsb_chorales_quarter`` for a .json, ``<stem>_mat`` for a .mat."""
    p = Path(source)
    stem = p.stem if p.suffix.lower() in (".json", ".mat") else p.name
    name = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    return name + "_mat" if p.suffix.lower() == ".mat" else name


def build(cfg: MidiConfig) -> SequenceSet:
    """Piano-rolls from ``cfg.source``: a folder with ``train/valid/test`` MIDI files, or a
    piano-roll set (``.json`` / ``.mat``, see :mod:`hfrnn.datasets.pianoroll_sets`)."""
    validate(cfg)
    if cfg.source is None:
        raise DataError("midi: give source=<folder with train/valid/test .mid | .json | .mat>")
    src = Path(cfg.source)
    if src.is_file():
        from hfrnn.datasets.pianoroll_sets import build_set
        defaults = MidiConfig()
        if (cfg.framing, cfg.frame_s, cfg.frame_beats) != (defaults.framing, defaults.frame_s,
                                                           defaults.frame_beats):
            log.warning("%s is a piano-roll set: its frames are given; framing options are ignored", src)
        return build_set(src, cfg, dataset_name(src))
    if not src.is_dir() or not all((src / s).is_dir() for s in SPLITS):
        raise DataError(f"midi source {src} must be a folder with train/, valid/ and test/ "
                        f"subfolders of MIDI files, or a .json / .mat piano-roll set")
    splits, inputs, dropped = {}, [], 0
    for split in SPLITS:
        files = sorted(p for p in (src / split).iterdir() if p.suffix.lower() in (".mid", ".midi"))
        seqs, names = [], []
        for f in files:
            rel = f.relative_to(src).as_posix()
            inputs.append((rel, sha256_file(f)))
            roll = piano_roll(f, cfg)
            if len(roll) == 0:
                dropped += 1
                log.warning("%s has no notes in range; skipped", rel)
                continue
            seqs.append(roll)
            names.append(rel)
        splits[split] = Split.from_sequences(seqs, names, cfg.pitches, np.uint8)
        log.info("midi: %s split, %d files, %d frames", split, len(seqs), len(splits[split].data))
    params = {k: (v.value if isinstance(v, Framing) else v) for k, v in vars(cfg).items()
              if k not in ("source", "out", "overwrite")}
    params["skipped_empty_files"] = dropped
    unit = f"{cfg.frame_s} s" if cfg.framing == Framing.seconds else f"{cfg.frame_beats} beats"
    return SequenceSet(
        kind="midi", name=dataset_name(src), dim=cfg.pitches, splits=splits, source=str(cfg.source),
        params=params, inputs=inputs,
        description=f"binary piano-rolls, {cfg.pitches} pitches, one frame per {unit}")
