"""Tiny data fixtures for the ``test_data_*`` tests: MIDI files (mido), WAVs (wave), MAT-files.

Everything is written into temporary folders by the tests themselves; the real data under
``../shared/data`` is only read, by tests that skip when it is absent.
"""
from __future__ import annotations

import struct
import wave
import zlib
from pathlib import Path

import mido
import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_midi(path: Path, tracks: list[list[mido.Message | mido.MetaMessage]], type: int = 1,
               ticks_per_beat: int = 480) -> Path:
    """A MIDI file from per-track message lists (``time`` = delta ticks)."""
    mid = mido.MidiFile(type=type, ticks_per_beat=ticks_per_beat)
    for msgs in tracks:
        mid.tracks.append(mido.MidiTrack(msgs))
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(path)
    return path


def on(note: int, time: int = 0, channel: int = 0, velocity: int = 64) -> mido.Message:
    return mido.Message("note_on", note=note, velocity=velocity, time=time, channel=channel)


def off(note: int, time: int = 0, channel: int = 0) -> mido.Message:
    return mido.Message("note_off", note=note, velocity=0, time=time, channel=channel)


def tempo(us_per_beat: int, time: int = 0) -> mido.MetaMessage:
    return mido.MetaMessage("set_tempo", tempo=us_per_beat, time=time)


def make_midi_folder(root: Path, n_per_split: int = 2) -> Path:
    """``root/{train,valid,test}/*.mid``: short two-track tunes with a few notes each."""
    for k, split in enumerate(("train", "valid", "test")):
        for i in range(n_per_split):
            base = 60 + 2 * i + k
            melody = []
            for j in range(8):  # eighth notes at 120 bpm: 0.25 s = 5 frames of 0.05 s
                melody += [on(base + j % 3, 0), off(base + j % 3, 240)]
            write_midi(root / split / f"tune_{i}.mid",
                       [[tempo(500_000)], melody, [on(48, 0, channel=1), off(48, 1920, channel=1)]])
    return root


def write_wav(path: Path, samples: np.ndarray, sr: int = 8000, sampwidth: int = 2,
              channels: int = 1) -> Path:
    """A PCM WAV; ``samples`` are floats in [-1, 1] (written at ``sampwidth`` bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if sampwidth == 2:
        raw = (np.clip(samples, -1, 1 - 2**-15) * 32768).astype("<i2").tobytes()
    else:  # 8-bit unsigned, to test the rejection of other widths
        raw = ((np.clip(samples, -1, 1) + 1) * 127.5).astype(np.uint8).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sampwidth)
        w.setframerate(sr)
        w.writeframes(raw)
    return path


def tone(freq: float, seconds: float, sr: int = 8000, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)


def make_fsdd(root: Path, speakers: tuple[str, ...] = ("ann", "bob"), digits: int = 2,
              indices: int = 7, sr: int = 8000) -> Path:
    """``root/recordings/{digit}_{speaker}_{index}.wav``: tones that differ per clip."""
    rng = np.random.default_rng(0)
    for s, spk in enumerate(speakers):
        for d in range(digits):
            for i in range(indices):
                x = tone(300 + 200 * d + 50 * s, 0.12 + 0.01 * i, sr) + 0.01 * rng.standard_normal(
                    int((0.12 + 0.01 * i) * sr))
                write_wav(root / "recordings" / f"{d}_{spk}_{i}.wav", x, sr)
    return root


def _el(typ: int, data: bytes) -> bytes:
    if len(data) <= 4:  # small data element format
        return struct.pack("<I", (len(data) << 16) | typ) + data.ljust(4, b"\0")
    return struct.pack("<II", typ, len(data)) + data + b"\0" * (-len(data) % 8)


def _matrix(name: str, value) -> bytes:
    if isinstance(value, list):  # a 1 x n cell array
        body = (_el(6, struct.pack("<II", 1, 0)) + _el(5, struct.pack("<ii", 1, len(value)))
                + _el(1, name.encode()))
        for a in value:
            m = _matrix("", a)
            body += struct.pack("<II", 14, len(m)) + m
        return body
    a = np.asarray(value)
    # A double-class array stored as uint8, as MATLAB does for small integers.
    return (_el(6, struct.pack("<II", 6, 0)) + _el(5, struct.pack(f"<{a.ndim}i", *a.shape))
            + _el(1, name.encode()) + _el(2, a.astype(np.uint8).ravel(order="F").tobytes()))


def write_mat(path: Path, variables: dict, compress: bool = True) -> Path:
    """A level-5 MAT-file of uint8-valued double matrices and 1 x n cells of them."""
    out = b"MATLAB 5.0 MAT-file, written by the hfrnn tests".ljust(116) + b"\0" * 8
    out += struct.pack("<H", 0x0100) + b"IM"
    for name, v in variables.items():
        m = _matrix(name, v)
        el = struct.pack("<II", 14, len(m)) + m
        if compress:
            z = zlib.compress(el)
            el = struct.pack("<II", 15, len(z)) + z
        out += el
    path.write_bytes(out)
    return path
