"""Property-based: random and mutated MIDI bytes give a piano-roll or a DataError, nothing else."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hfrnn.datasets.config import MidiConfig
from hfrnn.datasets.errors import DataError
from hfrnn.datasets.midi import piano_roll

from .fixtures_data import off, on, tempo, write_midi

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_bytes(tmp_path) -> bytes:
    path = write_midi(tmp_path / "seed.mid", [[tempo(500_000)], [on(60), off(60, 480), on(64, 10), off(64, 240)]])
    return path.read_bytes()


def _check(tmp_path, data: bytes) -> None:
    path = tmp_path / "fuzz.mid"
    path.write_bytes(data)
    try:
        roll = piano_roll(path, MidiConfig())
    except DataError:
        return
    assert isinstance(roll, np.ndarray) and roll.ndim == 2 and roll.shape[1] == 128
    assert set(np.unique(roll)) <= {0, 1}


@SETTINGS
@given(data=st.binary(max_size=400))
def test_random_bytes(tmp_path, data):
    _check(tmp_path, data)


@SETTINGS
@given(st.data())
def test_mutated_valid_file(tmp_path, data):
    raw = bytearray(_valid_bytes(tmp_path))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    _check(tmp_path, bytes(raw[:cut]))
