"""The HDF5 dataset layout: round trip, determinism, atomic writes, clear errors."""
from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

import hfrnn
from hfrnn.datasets.errors import DataError
from hfrnn.datasets.h5io import (LAYOUT_VERSION, SequenceSet, Split, read_sequence_set,
                                 write_sequence_set)


def _set(seed: int = 0) -> SequenceSet:
    rng = np.random.default_rng(seed)
    splits = {}
    for s, n in (("train", 3), ("valid", 0), ("test", 2)):
        seqs = [rng.random((int(rng.integers(1, 9)), 4)).astype(np.float32) for _ in range(n)]
        splits[s] = Split.from_sequences(seqs, [f"{s}/{i}" for i in range(n)], 4, np.float32)
    return SequenceSet(kind="speech", name="toy", dim=4, splits=splits, source="nowhere",
                       params={"a": 1, "b": None, "c": [1, 2], "d": "x"},
                       inputs=[("f1.wav", "0" * 64), ("f2.wav", "1" * 64)],
                       extra={"norm_mean": np.arange(4.0)})


def test_round_trip(tmp_path):
    ds = _set()
    p = write_sequence_set(tmp_path / "d" / "toy.h5", ds)
    back = read_sequence_set(p, kind="speech")
    assert back.params == ds.params and back.inputs == ds.inputs and back.dim == 4
    assert back.hfrnn_version == hfrnn.__version__ and back.layout_version == LAYOUT_VERSION
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(back.splits[s].data, ds.splits[s].data)
        np.testing.assert_array_equal(back.splits[s].offsets, ds.splits[s].offsets)
        assert back.splits[s].names == ds.splits[s].names
    assert len(back.splits["valid"]) == 0
    np.testing.assert_array_equal(back.extra["norm_mean"], np.arange(4.0))
    np.testing.assert_array_equal(back.splits["train"].sequence(1), ds.splits["train"].sequence(1))
    with h5py.File(p) as f:  # every parameter is also a readable attribute
        assert f["params"].attrs["a"] == 1 and f["params"].attrs["d"] == "x"
        assert list(f["inputs/sha256"].asstr()[()]) == ["0" * 64, "1" * 64]


def test_rebuild_is_byte_identical(tmp_path):
    a = write_sequence_set(tmp_path / "a.h5", _set())
    b = write_sequence_set(tmp_path / "b.h5", _set())
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_no_overwrite_without_flag_and_no_temp_left(tmp_path):
    p = write_sequence_set(tmp_path / "toy.h5", _set(0))
    before = p.read_bytes()
    with pytest.raises(DataError, match="overwrite=true"):
        write_sequence_set(p, _set(1))
    assert p.read_bytes() == before
    write_sequence_set(p, _set(1), overwrite=True)
    assert p.read_bytes() != before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["toy.h5"]


def test_failed_write_leaves_nothing(tmp_path):
    ds = _set()
    ds.splits["test"] = None  # breaks midway through writing
    with pytest.raises(Exception):
        write_sequence_set(tmp_path / "toy.h5", ds)
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="hfrnn data midi source="):
        read_sequence_set(tmp_path / "nope.h5", kind="midi")


def test_truncated_file(tmp_path):
    p = write_sequence_set(tmp_path / "toy.h5", _set())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="rebuild"):
        read_sequence_set(p)


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("hello")
    with pytest.raises(DataError):
        read_sequence_set(p)


def test_wrong_kind_and_layout(tmp_path):
    p = write_sequence_set(tmp_path / "toy.h5", _set())
    with pytest.raises(DataError, match="not 'midi'"):
        read_sequence_set(p, kind="midi")
    with h5py.File(p, "a") as f:
        f.attrs["layout_version"] = 99
    with pytest.raises(DataError, match="layout version"):
        read_sequence_set(p)
    with h5py.File(p, "a") as f:
        f.attrs["layout_version"] = LAYOUT_VERSION
        del f["test/offsets"]
    with pytest.raises(DataError):
        read_sequence_set(p)


def test_inconsistent_offsets(tmp_path):
    p = write_sequence_set(tmp_path / "toy.h5", _set())
    with h5py.File(p, "a") as f:
        off = f["train/offsets"][()]
        off[-1] += 5
        f["train/offsets"][...] = off
    with pytest.raises(DataError, match="inconsistent"):
        read_sequence_set(p)
