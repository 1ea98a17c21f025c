"""The one exception the dataset builders and the natural tasks raise for bad inputs.

Everything that can go wrong with data on disk (a corrupt MIDI file, a WAV with the wrong sample
width, a missing or truncated HDF5 file, a file of the wrong layout) surfaces as
:class:`DataError`, so callers (``hfrnn data``, ``hfrnn train``) can catch one type and print a
one-line message instead of a traceback from mido, wave or h5py.
"""
from __future__ import annotations


class DataError(ValueError):
    """A data source or a built dataset file is missing, malformed or inconsistent."""
