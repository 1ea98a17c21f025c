"""A minimal reader for MATLAB 5 MAT-files: numeric and char arrays, and cell arrays of them.

Enough for the Boulanger-Lewandowski piano-roll files (``traindata``/``validdata``/``testdata``:
``1 x N`` cells of ``T_i x 88`` uint8 matrices), so the project does not need scipy. The format
(MathWorks, "MAT-File Format", level 5):

* a 128-byte header: 116 bytes of text, 8 of subsystem offset, a version (2 bytes) and the
  endian indicator ``IM`` (little-endian) or ``MI`` (big-endian);
* then data elements, each an 8-byte tag ``(type: u32, nbytes: u32)`` and ``nbytes`` of data
  padded to 8 bytes; a *small* element packs ``nbytes`` (upper 16 bits) and ``type`` (lower 16)
  into the first word and its data into the second; ``miCOMPRESSED`` (15) holds one zlib-
  compressed element;
* ``miMATRIX`` (14) holds sub-elements: array flags (class in the low byte), dimensions,
  name, then the real part (numeric; stored column-major, possibly in a smaller type than the
  class) or one ``miMATRIX`` per cell (cells, column-major).

Values: a numeric array comes back as an ndarray of its class's dtype (native byte order;
MATLAB often stores a double matrix as ``miUINT8``, which is widened back); a logical array as
``uint8`` (its storage class: the flag ``0x200`` is ignored); a cell array as an object ndarray of
the cells' values, in the file's shape. A char array's data are UTF-16 code units (``miUINT16``,
MATLAB's own files) or ``miUTF8``/``miUTF16``/``miUTF32`` text (scipy writes non-ASCII text as
``miUTF8``, whose byte count is not the character count, so text is decoded before it is
shaped); a ``1 x n`` (or empty) char array comes back as a ``str``, an ``r x n`` one (``r > 1``)
as an ndarray of its ``r`` row strings, as :func:`scipy.io.loadmat` gives them.

Structs, objects, function handles, sparse and complex arrays are rejected with
:class:`DataError`, as are v4 and v7.3 (HDF5) files.

Cross-checked against ``scipy.io.loadmat(path, mat_dtype=True)`` in
``tests/test_crosscheck_mat5.py`` (scipy-written files, MATLAB-written files of both byte orders,
the four piano-roll sets). The one deliberate difference: scipy returns logical arrays as
``bool``, this reader as ``uint8`` (same values). scipy could replace this module outright
(``loadmat(path, mat_dtype=True)["traindata"][0, i]``), but it is an optional dependency.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from hfrnn.datasets.errors import DataError

MI_MATRIX, MI_COMPRESSED = 14, 15
_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
              12: "i8", 13: "u8", 16: "u1", 17: "u2", 18: "u4"}
_CLASS_DTYPES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4",
                 14: "i8", 15: "u8"}
_CELL, _CHAR = 1, 4
MI_UTF8, MI_UTF16, MI_UTF32 = 16, 17, 18


class _Reader:
    def __init__(self, buf: bytes, endian: str):
        self.buf, self.e, self.pos = buf, endian, 0

    def tag(self) -> tuple[int, int, bool]:
        """(type, nbytes, small) of the element at ``pos``; advances past the tag."""
        word, second = struct.unpack_from(self.e + "II", self.buf, self.pos)
        if word >> 16:  # small data element: data sits in the tag's second word
            self.pos += 4
            return word & 0xFFFF, word >> 16, True
        self.pos += 8
        return word, second, False

    def element(self) -> tuple[int, bytes]:
        """(type, data) of the next element, leaving ``pos`` at the following one."""
        typ, n, small = self.tag()
        data = self.buf[self.pos:self.pos + n]
        if len(data) < n:
            raise DataError("truncated MAT-file element")
        self.pos += 4 if small else (n if typ == MI_COMPRESSED else n + (-n % 8))
        return typ, data

    def numeric(self) -> np.ndarray:
        typ, data = self.element()
        if typ not in _MI_DTYPES:
            raise DataError(f"unsupported MAT data type {typ}")
        return np.frombuffer(data, dtype=np.dtype(_MI_DTYPES[typ]).newbyteorder(self.e))


def _matrix(data: bytes, endian: str) -> tuple[str, Any]:
    """Decode the body of one ``miMATRIX`` element into (name, value)."""
    if not data:  # an empty cell is written as an miMATRIX of zero bytes
        return "", np.zeros((0, 0))
    r = _Reader(data, endian)
    flags = r.numeric()
    cls, complex_ = int(flags[0]) & 0xFF, bool(int(flags[0]) & 0x800)
    dims = tuple(int(d) for d in r.numeric())
    name = r.numeric().tobytes().decode("ascii", "replace")
    if cls == _CELL:
        cells = np.empty(int(np.prod(dims)), dtype=object)
        for i in range(len(cells)):
            typ, body = r.element()
            if typ != MI_MATRIX:
                raise DataError(f"cell element of type {typ}, expected miMATRIX")
            cells[i] = _matrix(body, endian)[1]
        return name, cells.reshape(dims, order="F")
    if complex_ or (cls not in _CLASS_DTYPES and cls != _CHAR):
        raise DataError(f"unsupported MAT array class {cls} (complex={complex_})")
    if cls == _CHAR:
        return name, _chars(*r.element(), dims, endian)
    real = r.numeric()
    return name, real.astype(_CLASS_DTYPES[cls]).reshape(dims, order="F")


def _chars(typ: int, data: bytes, dims: tuple[int, ...], endian: str) -> str | np.ndarray:
    """A char array: its text (``str``) if it has at most one row, else its row strings."""
    if typ in (MI_UTF8, MI_UTF16, MI_UTF32):
        # Encoded text: n characters need not be n code units (UTF-8 uses 1-4 bytes a character).
        codec = {MI_UTF8: "utf-8", MI_UTF16: "utf-16", MI_UTF32: "utf-32"}[typ]
        if typ != MI_UTF8:
            codec += "-le" if endian == "<" else "-be"
        text = list(data.decode(codec, "replace"))
    elif typ in _MI_DTYPES:
        # Code units (miUINT16 in MATLAB's files: UTF-16, one unit a character in the BMP).
        text = [chr(int(u)) for u in np.frombuffer(data, np.dtype(_MI_DTYPES[typ]).newbyteorder(endian))]
    else:
        raise DataError(f"unsupported MAT data type {typ} for a char array")
    n = int(np.prod(dims))
    if len(text) != n:
        raise DataError(f"char array of {n} characters holds {len(text)}")
    if n == 0 or n == dims[-1]:  # empty, or one row: a plain string
        return "".join(text)
    a = np.array(text, dtype="<U1").reshape(dims, order="F")  # column-major, like numbers
    return np.array(["".join(row) for row in a.reshape(-1, dims[-1])]).reshape(dims[:-1])


def load_mat(path: str | Path) -> dict[str, Any]:
    """The variables of a level-5 MAT-file (numeric arrays, strings, object arrays of cells)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read MAT-file {path}: {e}") from e
    if len(raw) < 128 or raw[126:128] not in (b"IM", b"MI"):
        raise DataError(f"{path} is not a level-5 MAT-file (v7.3/HDF5 and v4 files are not supported)")
    endian = "<" if raw[126:128] == b"IM" else ">"
    if struct.unpack_from(endian + "H", raw, 124)[0] == 0x0200:  # v7.3 marks its HDF5 this way
        raise DataError(f"{path} is a v7.3 (HDF5) MAT-file; only level-5 files are supported")
    out: dict[str, Any] = {}
    r = _Reader(raw[128:], endian)
    try:
        while r.pos + 8 <= len(r.buf):
            typ, data = r.element()
            if typ == MI_COMPRESSED:
                inner = _Reader(zlib.decompress(data), endian)
                typ, data = inner.element()
            if typ == MI_MATRIX:
                name, value = _matrix(data, endian)
                out[name] = value
    except DataError as e:
        raise DataError(f"{path}: {e}") from e
    except (struct.error, zlib.error, ValueError) as e:
        raise DataError(f"corrupt MAT-file {path}: {e}") from e
    return out
