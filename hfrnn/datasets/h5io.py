"""The on-disk layout of a built dataset (HDF5, layout version 1), written atomically.

One file holds one dataset: three splits of variable-length sequences of ``D``-dimensional
frames, stored ragged (concatenated frames plus offsets) so no padding is kept on disk::

    /                      attrs: layout_version, kind, name, source, hfrnn_version, dim,
                                  params_json, inputs_sha256, description
    /params                attrs: one attribute per preprocessing parameter (human-readable copy)
    /inputs/path           [n_files] str     input files, relative to ``source``
    /inputs/sha256         [n_files] str     their SHA-256 (per-file checksums)
    /<split>/data          [N_frames, D]     frames of all sequences, concatenated
    /<split>/offsets       [n_seq + 1] int64 sequence i is data[offsets[i]:offsets[i+1]]
    /<split>/names         [n_seq] str       where each sequence came from
    /extra/<key>           arrays a builder adds (speech: the normalisation mean and std)

``<split>`` is each of ``train``, ``valid``, ``test`` (a split may hold no sequences). The
per-file checksums are datasets rather than attributes because HDF5's compact attribute storage
is limited to 64 KiB; ``inputs_sha256`` (the SHA-256 of the ``path  sha256`` listing) is the
one-attribute summary.

Rebuilding from the same inputs gives a byte-identical file: h5py does not record times, chunk
shapes are fixed here, and gzip is deterministic. A file is written under a temporary name in the
destination folder and renamed into place, so readers never see a half-written file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import hfrnn
from hfrnn.datasets.errors import DataError

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1
SPLITS = ("train", "valid", "test")
KINDS = ("bouncing_balls", "midi", "speech")
BUILD_HINT = {
    "bouncing_balls": "hfrnn data bouncing_balls",
    "midi": "hfrnn data midi source=<folder of .mid with train/valid/test | .json | .mat>",
    "speech": "hfrnn data speech source=../shared/data/speech/fsdd",
}
_ROWS_PER_CHUNK = 4096


@dataclass
class Split:
    """Ragged sequences of one split: ``data`` ``[N_frames, D]``, ``offsets`` ``[n + 1]``."""

    data: np.ndarray
    offsets: np.ndarray
    names: list[str]

    @classmethod
    def from_sequences(cls, seqs: list[np.ndarray], names: list[str], dim: int,
                       dtype: np.dtype | type) -> "Split":
        """Concatenate ``[L_i, dim]`` sequences into one ragged split."""
        if len(seqs) != len(names):
            raise ValueError("one name per sequence")
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        data = (np.concatenate(seqs, axis=0) if seqs else np.zeros((0, dim))).astype(dtype, copy=False)
        return cls(data.reshape(-1, dim), offsets, list(names))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, i: int) -> np.ndarray:
        return self.data[self.offsets[i]:self.offsets[i + 1]]


@dataclass
class SequenceSet:
    """A whole built dataset, as written to and read from one HDF5 file."""

    kind: str
    name: str
    dim: int
    splits: dict[str, Split]
    source: str
    params: dict[str, Any]
    inputs: list[tuple[str, str]] = field(default_factory=list)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    description: str = ""
    hfrnn_version: str = hfrnn.__version__
    layout_version: int = LAYOUT_VERSION


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def listing_sha256(inputs: list[tuple[str, str]]) -> str:
    """SHA-256 of the ``sha256  path`` lines (``sha256sum`` format), the inputs' one-line summary."""
    text = "".join(f"{digest}  {path}\n" for path, digest in inputs)
    return hashlib.sha256(text.encode()).hexdigest()


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Fail before any work when ``path`` exists and ``overwrite`` is off."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"{path} exists; pass overwrite=true to rebuild it")
    return path


def _attr_value(v: Any) -> Any:
    # HDF5 attributes hold scalars and strings; anything else (None, lists) is kept as JSON text.
    if isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v)


def write_sequence_set(path: str | os.PathLike, ds: SequenceSet, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``path`` via a temporary file and an atomic rename."""
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (so the rename is atomic), same suffix (so `data/*.h5` ignore rules cover it).
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    str_dt = h5py.string_dtype()
    try:
        with h5py.File(tmp, "w", libver=("earliest", "v110")) as f:
            f.attrs.update({
                "layout_version": ds.layout_version, "kind": ds.kind, "name": ds.name,
                "source": ds.source, "hfrnn_version": ds.hfrnn_version, "dim": ds.dim,
                "params_json": json.dumps(ds.params, sort_keys=True),
                "inputs_sha256": listing_sha256(ds.inputs), "description": ds.description,
            })
            p = f.create_group("params")
            for k in sorted(ds.params):
                p.attrs[k] = _attr_value(ds.params[k])
            g = f.create_group("inputs")
            g.create_dataset("path", data=np.array([a for a, _ in ds.inputs], dtype=object), dtype=str_dt)
            g.create_dataset("sha256", data=np.array([b for _, b in ds.inputs], dtype=object), dtype=str_dt)
            for split in SPLITS:
                s = ds.splits[split]
                g = f.create_group(split)
                kw: dict[str, Any] = {}
                if len(s.data):
                    kw = dict(chunks=(min(len(s.data), _ROWS_PER_CHUNK), ds.dim),
                              compression="gzip", compression_opts=4, shuffle=True)
                g.create_dataset("data", data=s.data, **kw)
                g.create_dataset("offsets", data=s.offsets.astype(np.int64))
                g.create_dataset("names", data=np.array(s.names, dtype=object), dtype=str_dt)
            g = f.create_group("extra")
            for k in sorted(ds.extra):
                g.create_dataset(k, data=ds.extra[k])
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def _strings(d: h5py.Dataset) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else str(x) for x in d[()]]


def read_sequence_set(path: str | os.PathLike, kind: str | None = None) -> SequenceSet:
    """Read a built dataset; every problem with the file becomes a :class:`DataError`.

    Args:
        path: the ``.h5`` file.
        kind: when given, the file must hold this kind of dataset.
    """
    path = Path(path)
    hint = BUILD_HINT.get(kind or "", "hfrnn data <bouncing_balls|midi|speech> ...")
    if not path.is_file():
        raise DataError(f"dataset file {path} not found; run `{hint}` first")
    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("layout_version")
            if version != LAYOUT_VERSION:
                raise DataError(f"{path} has layout version {version!r}, expected {LAYOUT_VERSION}; "
                                f"rebuild it with `{hint} overwrite=true`")
            found = str(f.attrs["kind"])
            if kind is not None and found != kind:
                raise DataError(f"{path} holds a {found!r} dataset, not {kind!r}; run `{hint}`")
            dim = int(f.attrs["dim"])
            splits = {}
            for split in SPLITS:
                g = f[split]
                s = Split(g["data"][()], g["offsets"][()].astype(np.int64), _strings(g["names"]))
                if (s.data.ndim != 2 or s.data.shape[1] != dim or s.offsets[0] != 0
                        or s.offsets[-1] != len(s.data) or np.any(np.diff(s.offsets) < 0)
                        or len(s.names) != len(s)):
                    raise DataError(f"{path}: split {split!r} is inconsistent; rebuild it with "
                                    f"`{hint} overwrite=true`")
                splits[split] = s
            inputs = list(zip(_strings(f["inputs/path"]), _strings(f["inputs/sha256"])))
            return SequenceSet(
                kind=found, name=str(f.attrs["name"]), dim=dim, splits=splits,
                source=str(f.attrs["source"]), params=json.loads(f.attrs["params_json"]),
                inputs=inputs, extra={k: v[()] for k, v in f["extra"].items()},
                description=str(f.attrs["description"]), hfrnn_version=str(f.attrs["hfrnn_version"]),
                layout_version=int(version))
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        # h5py raises OSError for truncated/non-HDF5 files and KeyError for missing members.
        raise DataError(f"cannot read dataset file {path} ({e}); rebuild it with "
                        f"`{hint} overwrite=true`") from e
