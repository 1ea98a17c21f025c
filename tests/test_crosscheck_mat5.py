"""Cross-check of :mod:`hfrnn.datasets.mat5` against ``scipy.io.loadmat``.

The reference is ``loadmat(path, mat_dtype=True)`` (arrays in their MATLAB class's dtype, as
hfrnn returns them, not their storage type). :func:`_assert_same` compares, recursively:

* numeric arrays: same shape, same dtype up to byte order (scipy keeps a big-endian file's
  order, hfrnn converts to native), bit-exact values (NaN, inf included); logical arrays are
  ``uint8`` in hfrnn and ``bool`` in scipy (the one documented difference), same values;
* cell arrays: object arrays of the same shape, element by element;
* char arrays: scipy's strings (``chars_as_strings``) against hfrnn's ``str`` for one row, or
  its array of row strings.

Sources: files written by ``scipy.io.savemat`` (every class hfrnn supports, cells nested and
empty, strings ASCII and not, compressed or not, 1-D arrays as rows or columns), a big-endian
file encoded here, the MATLAB-written files that scipy ships for its own tests (both byte orders,
MATLAB 5.3 to 8; skipped if that folder is not installed), and the four piano-roll sets under
``shared/data`` when present. What hfrnn does not support (structs, objects, function handles,
sparse, complex, v4 and v7.3 files) must raise :class:`DataError`, never a wrong value.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

sio = pytest.importorskip("scipy.io")
sparse = pytest.importorskip("scipy.sparse")

try:
    from fixtures_data import SHARED_DATA
except ImportError:
    from tests.fixtures_data import SHARED_DATA

from hfrnn.datasets.errors import DataError
from hfrnn.datasets.mat5 import load_mat


def _reference(path) -> dict:
    return {k: v for k, v in sio.loadmat(path, mat_dtype=True).items() if not k.startswith("__")}


def _assert_same(ours, ref, where: str = "") -> None:
    """``ours`` (hfrnn) holds what ``ref`` (scipy, ``mat_dtype=True``) holds; see the docstring."""
    assert isinstance(ref, np.ndarray), f"{where}: unexpected reference type {type(ref)}"
    if ref.dtype == object:
        assert isinstance(ours, np.ndarray) and ours.dtype == object, f"{where}: {type(ours)}"
        assert ours.shape == ref.shape, f"{where}: shape {ours.shape} != {ref.shape}"
        for i, (a, b) in enumerate(zip(ours.ravel(order="F"), ref.ravel(order="F"))):
            _assert_same(a, b, f"{where}{{{i}}}")
    elif ref.dtype.kind == "U":
        if ref.size <= 1 and ref.ndim <= 1:  # one row (or empty): hfrnn gives a plain str
            assert ours == (ref[0] if ref.size else ""), f"{where}: {ours!r} != {ref!r}"
        else:
            assert isinstance(ours, np.ndarray), f"{where}: {type(ours)}"
            np.testing.assert_array_equal(ours, ref, err_msg=where)
            assert ours.shape == ref.shape
    else:
        assert isinstance(ours, np.ndarray), f"{where}: {type(ours)}"
        want = np.dtype(np.uint8) if ref.dtype == bool else ref.dtype.newbyteorder("=")
        assert ours.dtype == want, f"{where}: dtype {ours.dtype} != {want}"
        assert ours.shape == ref.shape, f"{where}: shape {ours.shape} != {ref.shape}"
        np.testing.assert_array_equal(ours, ref, err_msg=where)


def _assert_file_same(path) -> None:
    ours, ref = load_mat(path), _reference(path)
    assert set(ours) == set(ref), (sorted(ours), sorted(ref))
    for k in ref:
        _assert_same(ours[k], ref[k], f"{Path(path).name}:{k}")


def _cell(*values, shape=None) -> np.ndarray:
    c = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):  # one by one: numpy would stack equal-shaped arrays
        c[i] = v
    return c.reshape(shape or (1, len(values)))


def _variables() -> dict:
    rng = np.random.default_rng(0)
    special = np.array([[np.nan, np.inf, -np.inf, -0.0, 5e-324, 1.7976931348623157e308]])
    v = {
        # the piano-roll layout: 1 x N cells of T_i x 88 0/1 matrices (uint8 and double)
        "traindata": _cell(*[(rng.random((n, 88)) < 0.1).astype(np.uint8) for n in (3, 1, 7)]),
        "validdata": _cell(*[(rng.random((n, 88)) < 0.1).astype(np.float64) for n in (2, 5)]),
        "d": rng.standard_normal((3, 5)), "special": special, "x": 7.0, "vec": np.arange(5.0),
        "f": rng.standard_normal((2, 3)).astype(np.float32),
        "cube": rng.integers(0, 256, (2, 3, 4)).astype(np.uint8),
        "e": np.zeros((0, 0)), "e03": np.zeros((0, 3)),
        "b": rng.random((3, 4)) < 0.5,
        "a_long_variable_name": np.eye(3),  # names of over 4 bytes are not small elements
        "str": "hello", "uni": "h\u00e9llo \u2603", "rows": np.array(["abc", "def"]), "estr": "",
        "c": _cell(rng.standard_normal((2, 2)), np.zeros((0, 0)),
                   _cell(np.uint8([[1, 2]]), "in", _cell(np.int16([[-3]]))), 3.0, "tail"),
        "c23": _cell(*[np.full((i, 2), i, np.float64) for i in range(6)], shape=(2, 3)),
        "c0": np.empty((0, 0), dtype=object),
    }
    for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        info = np.iinfo(t)
        v[f"{np.dtype(t).name}"] = np.array([[info.min, info.max], [0, 1]], dtype=t)
    return v


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("oned_as", ["row", "column"])
def test_savemat_files(tmp_path, compress, oned_as):
    p = tmp_path / "v.mat"
    sio.savemat(p, _variables(), do_compression=compress, oned_as=oned_as)
    _assert_file_same(p)
    assert load_mat(p)["str"] == "hello" and load_mat(p)["uni"] == "h\u00e9llo \u2603"


@pytest.mark.parametrize("value", [
    {"a": 1.0, "b": "x"},  # struct
    {"outer": {"inner": np.eye(2)}},  # nested struct
    _cell(np.eye(2), {"a": 1.0}),  # struct inside a cell
    np.array([[1 + 2j]]),  # complex
    sparse.csc_array(np.eye(3)),  # sparse
], ids=["struct", "nested-struct", "struct-in-cell", "complex", "sparse"])
@pytest.mark.parametrize("compress", [False, True])
def test_unsupported_classes_raise(tmp_path, value, compress):
    p = tmp_path / "u.mat"
    sio.savemat(p, {"ok": np.eye(2), "bad": value}, do_compression=compress)
    assert "bad" in sio.loadmat(p)  # a valid file, which scipy reads
    with pytest.raises(DataError, match="unsupported MAT array class"):
        load_mat(p)


def test_v4_file_raises(tmp_path):
    p = tmp_path / "v4.mat"
    sio.savemat(p, {"a": np.eye(2)}, format="4")
    with pytest.raises(DataError, match="not a level-5"):
        load_mat(p)


# --- a big-endian file, encoded here -------------------------------------------------------------
# (savemat writes native order only.) Element types and classes from the MAT-file format.

def _el(typ: int, payload: bytes, small_ok: bool = True) -> bytes:
    """One big-endian data element; payloads of up to 4 bytes as a small element."""
    if small_ok and len(payload) <= 4:
        return struct.pack(">I", len(payload) << 16 | typ) + payload.ljust(4, b"\0")
    return struct.pack(">II", typ, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _matrix(cls: int, dims: tuple[int, ...], name: str, *body: bytes) -> bytes:
    flags = _el(6, struct.pack(">II", cls, 0))
    dims_el = _el(5, struct.pack(f">{len(dims)}i", *dims))
    return _el(14, flags + dims_el + _el(1, name.encode()) + b"".join(body), small_ok=False)


def _col(a: np.ndarray, dtype: str) -> bytes:
    return np.asarray(a).astype(dtype).tobytes(order="F")


def test_big_endian_file(tmp_path):
    rng = np.random.default_rng(1)
    d = rng.standard_normal((3, 4))
    rolls = [(rng.random((n, 88)) < 0.2).astype(np.uint8) for n in (2, 5)]
    i16 = np.array([[-300, 2], [7, 32767]], np.int16)
    cells = [_matrix(6, r.shape, "", _el(2, _col(r, "u1"))) for r in rolls]  # double kept as uint8
    compressed = zlib.compress(_matrix(10, i16.shape, "zi16", _el(3, _col(i16, ">i2"))))
    body = (_matrix(6, d.shape, "d", _el(9, _col(d, ">f8")))
            + _matrix(6, (1, 1), "scalar_with_long_name", _el(9, _col([[2.5]], ">f8")))
            + _matrix(1, (1, 2), "traindata", *cells)
            + _matrix(4, (1, 3), "s", _el(4, _col([[ord(c) for c in "abc"]], ">u2")))
            + struct.pack(">II", 15, len(compressed)) + compressed)
    header = b"MATLAB 5.0 MAT-file, big-endian, written by the hfrnn tests".ljust(116) + b"\0" * 8
    p = tmp_path / "be.mat"
    p.write_bytes(header + struct.pack(">H", 0x0100) + b"MI" + body)
    ref = _reference(p)  # the encoder is right if scipy reads back what was meant ...
    np.testing.assert_array_equal(ref["d"], d)
    np.testing.assert_array_equal(ref["traindata"][0, 1], rolls[1])
    np.testing.assert_array_equal(ref["zi16"], i16)
    _assert_file_same(p)  # ... and hfrnn then reads what scipy reads
    assert load_mat(p)["traindata"][0, 0].dtype == np.float64


# --- MATLAB-written files (scipy's test data) ----------------------------------------------------

SCIPY_MAT_DATA = Path(sio.matlab.__file__).parent / "tests" / "data"
MATLAB_FILES = sorted(SCIPY_MAT_DATA.glob("*.mat")) if SCIPY_MAT_DATA.is_dir() else []
# hfrnn decodes variable names with replacement characters; scipy refuses a non-ASCII miINT8 name.
LENIENT = {"bad_miutf8_array_name.mat"}


def _unsupported(value) -> bool:
    """Whether a scipy value holds something hfrnn rejects by design."""
    if sparse.issparse(value):
        return True
    if isinstance(value, np.ndarray):
        if value.dtype.names is not None or np.iscomplexobj(value):  # structs, objects; complex
            return True
        if value.dtype == object:
            return any(_unsupported(v) for v in value.ravel())
        return False
    return True  # MatlabFunction, MatlabOpaque, ...


@pytest.mark.skipif(not MATLAB_FILES, reason="scipy's MAT-file test data not installed")
@pytest.mark.parametrize("path", MATLAB_FILES, ids=lambda p: p.name)
def test_matlab_written_files(path):
    """Same values as scipy where both read the file; DataError where hfrnn does not support it."""
    try:
        ref = {k: v for k, v in sio.loadmat(path).items() if not k.startswith("__")}
    except Exception:  # corrupt on purpose, or v7.3 (scipy needs h5py for those)
        ref = None
    try:
        version = sio.matlab.matfile_version(path)[0]
    except Exception:
        version = None
    if version != 1 or ref is None or any(_unsupported(v) for v in ref.values()):
        if path.name in LENIENT:
            load_mat(path)
            return
        with pytest.raises(DataError) as e:
            load_mat(path)
        if version == 2:
            assert "v7.3" in str(e.value)
        elif version == 0:
            assert "not a level-5" in str(e.value)
        return
    _assert_file_same(path)


# --- the real piano-roll sets --------------------------------------------------------------------

PIANO_ROLL_FILES = sorted(SHARED_DATA.glob("midi/*/*.mat"))


@pytest.mark.skipif(not PIANO_ROLL_FILES, reason="shared piano-roll .mat files not present")
@pytest.mark.parametrize("path", PIANO_ROLL_FILES, ids=lambda p: p.name)
def test_real_piano_roll_files(path):
    _assert_file_same(path)
    m = load_mat(path)
    assert set(m) == {"traindata", "validdata", "testdata"}
    for k in m:
        assert m[k].shape[0] == 1 and all(a.shape[1] == 88 for a in m[k][0])
