"""MIDI to piano-roll: tempo map, note pairing, framing rules, drums, errors, folder build."""
from __future__ import annotations

from dataclasses import replace

import mido
import numpy as np
import pytest

try:
    from fixtures_data import SHARED_DATA, make_midi_folder, off, on, tempo, write_midi
except ImportError:  # tests/ imported as a package
    from tests.fixtures_data import SHARED_DATA, make_midi_folder, off, on, tempo, write_midi

from hfrnn.datasets import midi
from hfrnn.datasets.config import Framing, MidiConfig
from hfrnn.datasets.errors import DataError
from hfrnn.datasets.h5io import read_sequence_set, write_sequence_set

CFG = MidiConfig()


def roll(tmp_path, tracks, cfg=CFG, **kw):
    return midi.piano_roll(write_midi(tmp_path / "x.mid", tracks, **kw), cfg)


def frames_on(r, pitch):
    return list(np.flatnonzero(r[:, pitch]))


def test_constant_tempo(tmp_path):
    r = roll(tmp_path, [[on(60, 0), off(60, 480)]])  # one beat at 120 bpm = 0.5 s = 10 frames
    assert r.shape == (10, 128) and r.dtype == np.uint8
    assert frames_on(r, 60) == list(range(10)) and r.sum() == 10


def test_tempo_changes_from_any_track(tmp_path):
    # Track 0 doubles the tempo at tick 960 (1.0 s); track 2 halves it again at tick 1440.
    tracks = [[tempo(250_000, 960)], [on(60, 960), off(60, 480), on(62, 0), off(62, 480)],
              [tempo(500_000, 1440)]]
    r = roll(tmp_path, tracks)
    assert frames_on(r, 60) == list(range(20, 25))  # 1.0 s .. 1.25 s
    assert frames_on(r, 62) == list(range(25, 35))  # 1.25 s .. 1.75 s at 120 bpm again


def test_tempo_map_matches_mido(tmp_path):
    rng = np.random.default_rng(0)
    t0 = [tempo(int(rng.integers(200_000, 1_000_000)), int(rng.integers(1, 500))) for _ in range(20)]
    t1 = []
    for _ in range(50):
        p = int(rng.integers(40, 80))
        t1 += [on(p, int(rng.integers(0, 300))), off(p, int(rng.integers(1, 300)))]
    path = write_midi(tmp_path / "x.mid", [t0, t1])
    notes = midi.read_notes(path)
    ours = np.sort(midi.ticks_to_seconds(notes.start, notes.tempo_ticks, notes.tempo, 480))
    t, theirs = 0.0, []
    for msg in mido.MidiFile(path):  # mido's playback times, in seconds
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            theirs.append(t)
    np.testing.assert_allclose(ours, np.sort(theirs), atol=1e-9)


def test_velocity_zero_ends_note(tmp_path):
    r = roll(tmp_path, [[on(60, 0), on(60, 240, velocity=0), on(64, 240), on(64, 240, velocity=0)]])
    assert frames_on(r, 60) == list(range(5)) and frames_on(r, 64) == list(range(10, 15))


def test_overlapping_same_pitch_is_union(tmp_path):
    r = roll(tmp_path, [[on(60, 0), on(60, 240), off(60, 240), off(60, 480)]])
    assert frames_on(r, 60) == list(range(20))


def test_repeated_note_at_same_tick(tmp_path):
    # off-then-on and on-then-off at tick 480 both leave the second note sounding to 960.
    a = roll(tmp_path, [[on(60, 0), off(60, 480), on(60, 0), off(60, 480)]])
    b = roll(tmp_path, [[on(60, 0), on(60, 480), off(60, 0), off(60, 480)]])
    assert frames_on(a, 60) == frames_on(b, 60) == list(range(20))


def test_notes_sounding_at_end(tmp_path):
    r = roll(tmp_path, [[on(60, 0), on(62, 0), off(60, 480), mido.MetaMessage("end_of_track", time=480)]])
    assert frames_on(r, 62) == list(range(20))  # until the last tick (960)
    r = roll(tmp_path, [[on(60, 0), off(60, 480), on(64, 0)]])
    assert frames_on(r, 64) == [10]  # starts at the last tick: still marks one frame


def test_short_notes_mark_one_frame(tmp_path):
    # tpb 1000 at 1 s per beat: one tick is 1 ms.
    tracks = [[tempo(1_000_000)], [on(60, 70), off(60, 20), on(61, 10), off(61, 5), on(62, 0), off(62, 1)]]
    r = roll(tmp_path, tracks, ticks_per_beat=1000)
    assert frames_on(r, 60) == [1]  # 0.070 .. 0.090 s holds no frame time: its start frame
    assert frames_on(r, 61) == [2]  # 0.100 .. 0.105 s holds frame time 0.10
    assert frames_on(r, 62) == [2]  # 0.105 .. 0.106 s
    assert r.shape[0] == 3


def test_drums_excluded_by_default(tmp_path):
    tracks = [[on(36, 0, channel=9), off(36, 480, channel=9), on(60, 0), off(60, 240)]]
    r = roll(tmp_path, tracks)
    assert r[:, 36].sum() == 0 and r.shape[0] == 15
    r = roll(tmp_path, tracks, replace(CFG, drums=True))
    assert frames_on(r, 36) == list(range(10))


def test_format_0_equals_format_1(tmp_path):
    t1 = [tempo(400_000, 0), on(60, 0), off(60, 300), on(70, 100), tempo(700_000, 50), off(70, 400)]
    a = midi.piano_roll(write_midi(tmp_path / "a.mid", [t1], type=0), CFG)
    conductor = [tempo(400_000, 0), tempo(700_000, 450)]
    notes = [on(60, 0), off(60, 300), on(70, 100), off(70, 450)]
    b = midi.piano_roll(write_midi(tmp_path / "b.mid", [conductor, notes], type=1), CFG)
    np.testing.assert_array_equal(a, b)


def test_88_keys(tmp_path):
    r = roll(tmp_path, [[on(20, 0), off(20, 480), on(21, 0), on(108, 0), off(21, 240), off(108, 0)]],
             replace(CFG, pitches=88))
    assert r.shape == (15, 88)
    assert frames_on(r, 0) == list(range(10, 15)) and frames_on(r, 87) == list(range(10, 15))


def test_beat_framing_ignores_tempo(tmp_path):
    tracks = [[tempo(300_000), on(60, 0), off(60, 480), tempo(900_000, 0), on(62, 0), off(62, 240)]]
    r = roll(tmp_path, tracks, replace(CFG, framing=Framing.beats, frame_beats=0.5))
    assert frames_on(r, 60) == [0, 1] and frames_on(r, 62) == [2]


TRUNCATED_HEADER = b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff"


@pytest.mark.parametrize("content", [b"", b"garbage" * 20, TRUNCATED_HEADER])
def test_corrupt_file_raises_data_error(tmp_path, content):
    p = tmp_path / "bad.mid"
    p.write_bytes(content)
    with pytest.raises(DataError, match="bad.mid"):
        midi.piano_roll(p, CFG)


def test_truncated_and_bad_data_bytes(tmp_path):
    good = write_midi(tmp_path / "g.mid", [[on(60, 0), off(60, 480)] * 20]).read_bytes()
    (tmp_path / "t.mid").write_bytes(good[:-15])
    (tmp_path / "d.mid").write_bytes(good.replace(bytes([0x90, 60]), bytes([0x90, 200]), 1))
    for name in ("t.mid", "d.mid", "missing.mid"):
        with pytest.raises(DataError):
            midi.piano_roll(tmp_path / name, CFG)


def test_folder_build(tmp_path):
    src = make_midi_folder(tmp_path / "toy_set")
    ds = midi.build(replace(CFG, source=str(src)))
    assert ds.name == "toy_set" and ds.kind == "midi" and ds.dim == 128
    assert [len(ds.splits[s]) for s in ("train", "valid", "test")] == [2, 2, 2]
    assert ds.splits["train"].names == ["train/tune_0.mid", "train/tune_1.mid"]
    assert len(ds.inputs) == 6 and all(len(h) == 64 for _, h in ds.inputs)
    seq = ds.splits["train"].sequence(0)
    assert seq.shape == (40, 128) and seq[:, 48].all()  # a 2 s chord note under the melody
    assert ds.params["frame_s"] == 0.05 and ds.params["framing"] == "seconds"
    p = write_sequence_set(tmp_path / "o.h5", ds)
    assert read_sequence_set(p, "midi").splits["test"].data.dtype == np.uint8


def test_folder_build_errors(tmp_path):
    with pytest.raises(DataError, match="train/, valid/ and test/"):
        midi.build(replace(CFG, source=str(tmp_path)))
    src = make_midi_folder(tmp_path / "s")
    (src / "valid" / "zz.mid").write_bytes(b"junk")
    with pytest.raises(DataError, match="zz.mid"):
        midi.build(replace(CFG, source=str(src)))
    with pytest.raises(DataError, match="pitches"):
        midi.build(replace(CFG, source=str(src), pitches=60))


def test_dataset_names():
    assert midi.dataset_name("../shared/data/midi/nottingham") == "nottingham"
    assert midi.dataset_name("a/jsb-chorales-quarter.json") == "jsb_chorales_quarter"
    assert midi.dataset_name("a/Piano_midi.mat") == "piano_midi_mat"
    assert midi.dataset_name("a/piano-midi.de/") == "piano_midi_de"


NOTTINGHAM = SHARED_DATA / "midi" / "nottingham"


@pytest.mark.skipif(not NOTTINGHAM.is_dir(), reason="shared Nottingham data not present")
def test_real_nottingham_beats_match_mat_lengths():
    """README check (c): eighth-note rolls have the .mat lengths (valid split, within a frame)."""
    from hfrnn.datasets.mat5 import load_mat
    mat_lengths = sorted(a.shape[0] for a in load_mat(NOTTINGHAM / "Nottingham.mat")["validdata"][0])
    cfg = replace(CFG, framing=Framing.beats, frame_beats=0.5)
    files = sorted((NOTTINGHAM / "valid").glob("*.mid"))
    ours = sorted(len(midi.piano_roll(f, cfg)) for f in files)
    assert len(ours) == len(mat_lengths) == 173
    assert np.abs(np.array(ours) - np.array(mat_lengths)).max() <= 1
    r = midi.piano_roll(NOTTINGHAM / "train" / "morris_simple_chords_2.mid", CFG)  # 3 tempos
    assert r.shape[1] == 128 and 36 <= np.flatnonzero(r.any(0)).min()
