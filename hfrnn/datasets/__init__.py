"""Offline dataset builders (``hfrnn data``): raw sources to one HDF5 file per dataset.

The natural tasks (:mod:`hfrnn.tasks.natural`) read only these files; see
:mod:`hfrnn.datasets.h5io` for the layout.
"""
from hfrnn.datasets.errors import DataError

__all__ = ["DataError"]
