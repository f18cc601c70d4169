"""DSEC-style HDF5 (``events/x, y, t, p`` + ``t_offset`` + ``ms_to_idx``, Blosc-compressed) → EventStream, via h5py.

DSEC stores ``t`` in µs relative to the scalar dataset ``t_offset`` (also µs); the stream's ``t_us``
is their sum, the sensor's own clock. Blosc chunks decode through hdf5plugin (``events.hdf5``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from evfocus.events.checks import (
    INT64_LIMIT,
    EventFileError,
    check_coordinates,
    integer_column,
    signed_polarity,
)
from evfocus.events.hdf5 import h5_columns, open_h5
from evfocus.events.stream import EventStream

DSEC_KEYS = ("events/t", "events/x", "events/y", "events/p")


def _t_offset_us(file: h5py.File, path: Path) -> int:
    """The scalar ``t_offset`` in µs; 0 when the file has none (its ``t`` are then absolute already)."""
    dataset = file.get("t_offset")
    if dataset is None:
        return 0
    if not isinstance(dataset, h5py.Dataset) or dataset.size != 1:
        raise EventFileError(f"{path}: 't_offset' must be a scalar dataset of µs")
    return int(integer_column(np.asarray(dataset[()]).reshape(1), f"{path} dataset 't_offset'")[0])


def read_events_dsec(path: str | Path, width: int, height: int, flip_polarity: bool = False) -> EventStream:
    """DSEC ``events.h5``: ``t_us = t_offset + events/t``; x, y pixels; ``p`` 0/1 with 1 = ON (bool and ±1 are
    accepted too); ``flip_polarity`` negates. The file stores no sensor size (DSEC's is 640x480): pass it.
    ``ms_to_idx`` is DSEC's index for slicing and is not needed to read the events.
    """
    path = Path(path)
    with open_h5(path) as file:
        columns = h5_columns(file, DSEC_KEYS, path)
        offset_us = _t_offset_us(file, path)
    relative_us = integer_column(columns["events/t"], f"{path} dataset 'events/t'")
    if relative_us.size:
        low, high = offset_us + int(relative_us.min()), offset_us + int(relative_us.max())
        if not -INT64_LIMIT <= low <= high < INT64_LIMIT:
            raise EventFileError(f"{path}: t_offset {offset_us} + events/t spans [{low}, {high}] µs, beyond int64")
    x = integer_column(columns["events/x"], f"{path} dataset 'events/x'")
    y = integer_column(columns["events/y"], f"{path} dataset 'events/y'")
    p = signed_polarity(columns["events/p"], flip_polarity, f"{path} dataset 'events/p'")
    check_coordinates(x, y, width, height, str(path))
    return EventStream.from_arrays(relative_us + offset_us, x, y, p, width, height, source=str(path))
