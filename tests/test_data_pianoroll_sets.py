"""Piano-roll sets (.json, .mat) into the MIDI layout; the minimal MAT-file reader."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

try:
    from fixtures_data import SHARED_DATA, write_mat
except ImportError:
    from tests.fixtures_data import SHARED_DATA, write_mat

from hfrnn.datasets import midi
from hfrnn.datasets.config import MidiConfig
from hfrnn.datasets.errors import DataError
from hfrnn.datasets.mat5 import load_mat

CFG = MidiConfig()


def _json_set(path):
    d = {"train": [[[60, 64], [], [60.0]], [[43, 96]]], "valid": [[[21], [108, 20]]],
         "test": [[[-1, 62, 62]]]}
    path.write_text(json.dumps(d))
    return path


def test_json_set_128_and_88(tmp_path):
    p = _json_set(tmp_path / "toy-set.json")
    ds = midi.build(replace(CFG, source=str(p)))
    assert ds.name == "toy_set" and ds.dim == 128 and ds.params["framing"] == "given"
    a = ds.splits["train"].sequence(0)
    assert a.shape == (3, 128) and a[0, [60, 64]].all() and a[1].sum() == 0 and a[2, 60] == 1
    assert ds.splits["test"].sequence(0).sum() == 1  # -1 is a rest; a repeated pitch counts once
    ds88 = midi.build(replace(CFG, source=str(p), pitches=88))
    v = ds88.splits["valid"].sequence(0)
    assert v[0, 0] == 1 and v[1, 87] == 1 and v.sum() == 2
    assert ds88.params["dropped_notes_outside_range"] == 1  # pitch 20
    assert ds.inputs[0][0] == "toy-set.json"


def test_bad_json(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text(json.dumps({"train": []}))
    for name in ("a.json", "b.json"):
        with pytest.raises(DataError):
            midi.build(replace(CFG, source=str(tmp_path / name)))


@pytest.mark.parametrize("compress", [True, False])
def test_mat_reader(tmp_path, compress):
    rng = np.random.default_rng(0)
    cells = [(rng.random((n, 88)) < 0.1).astype(np.uint8) for n in (3, 1, 7)]
    p = write_mat(tmp_path / "x.mat", {"traindata": cells, "m": np.arange(6).reshape(2, 3)}, compress)
    m = load_mat(p)
    assert m["traindata"].shape == (1, 3)
    for a, b in zip(m["traindata"][0], cells):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(m["m"], np.arange(6).reshape(2, 3))  # column-major on disk


def test_mat_set(tmp_path):
    cells = {k: [np.eye(4, 88, k=i, dtype=np.uint8) for i in range(2)]
             for k in ("traindata", "validdata", "testdata")}
    p = write_mat(tmp_path / "Toy.mat", cells)
    ds = midi.build(replace(CFG, source=str(p)))
    assert ds.name == "toy_mat" and ds.dim == 128
    s = ds.splits["train"].sequence(1)
    assert s.shape == (4, 128) and list(np.flatnonzero(s[0])) == [22]  # column 1 is MIDI 22
    ds88 = midi.build(replace(CFG, source=str(p), pitches=88))
    np.testing.assert_array_equal(ds88.splits["test"].sequence(0), np.eye(4, 88, dtype=np.uint8))


def test_bad_mat(tmp_path):
    (tmp_path / "a.mat").write_bytes(b"x" * 200)
    p = write_mat(tmp_path / "b.mat", {"traindata": [np.ones((2, 88))]})
    raw = p.read_bytes()
    (tmp_path / "c.mat").write_bytes(raw[:150])
    write_mat(tmp_path / "d.mat", {"traindata": [np.ones((2, 88))], "validdata": [np.ones((2, 5))],
                                   "testdata": [np.ones((2, 88))]})
    for name in ("a.mat", "b.mat", "c.mat", "d.mat"):
        with pytest.raises(DataError):
            midi.build(replace(CFG, source=str(tmp_path / name)))


JSB = SHARED_DATA / "midi" / "jsb_chorales"


@pytest.mark.skipif(not JSB.is_dir(), reason="shared JSB data not present")
def test_real_jsb_json_equals_mat():
    a = midi.build(replace(CFG, source=str(JSB / "jsb-chorales-quarter.json"), pitches=88))
    b = midi.build(replace(CFG, source=str(JSB / "JSB_Chorales.mat"), pitches=88))
    assert a.name == "jsb_chorales_quarter" and b.name == "jsb_chorales_mat"
    assert [len(a.splits[s]) for s in ("train", "valid", "test")] == [229, 76, 77]
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(a.splits[s].data, b.splits[s].data)
        np.testing.assert_array_equal(a.splits[s].offsets, b.splits[s].offsets)
