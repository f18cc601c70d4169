"""Reference .npy and E2VID HDF5 event files → EventStream (plus an HDF5 writer); every other format is
``events.formats``, capture folders are ``data.captures``, the shared checks ``events.checks``.

Every reader converts to the contract's polarity (+1 = brightness increase) and its docstring
says which convention it assumed. Every error names the file (and key) and the problem:
a broken file must stop a run, never feed it silently wrong events. Readers raise only
``EventFileError`` (or its subclass ``MissingFileError``) for a file that is unreadable or breaks
its format, and ``EventStreamError`` for events that break the contract (unsorted times);
``tests/test_fuzz_inputs.py`` holds them to that with fuzzed files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from evfocus.events.checks import INT64_LIMIT as INT64_LIMIT  # re-exported, with the error types, for data.captures
from evfocus.events.checks import (
    MAX_SENSOR_PX,
    EventFileError,
    check_coordinates,
    integer_column,
    require_file,
    sensor_size,
    signed_polarity,
    timestamps_us,
)
from evfocus.events.checks import MissingFileError as MissingFileError
from evfocus.events.hdf5 import h5_columns, open_h5
from evfocus.events.stream import EventStream

PathLike = str | Path
H5_KEYS = ("events/ts", "events/xs", "events/ys", "events/ps")


# ---------------------------------------------------------------------------------- reference .npy
def _check_npy_not_truncated(path: Path) -> None:
    """A header promising more data than the file holds: say so before numpy allocates all of it in memory."""
    with path.open("rb") as file:
        version = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(file)
        available = path.stat().st_size - file.tell()
    promised = math.prod(shape) * dtype.itemsize
    if promised > available:
        raise EventFileError(f"{path}: truncated: its header promises {promised} bytes of data, the file holds "
                             f"{available}")


def load_npy(path: Path) -> np.ndarray:
    """Memory-map when possible; a failed map is size-checked, then retried in memory for numpy's clearer error."""
    require_file(path)
    try:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception:  # not mappable, or a broken header: size-check, then numpy's in-memory error
            _check_npy_not_truncated(path)
            array = np.load(path, allow_pickle=False)
    except EventFileError:
        raise
    except Exception as error:  # numpy raises many types for broken headers (even tokenize.TokenError)
        raise EventFileError(f"{path}: not a loadable .npy array (corrupt or truncated?): {error}") from error
    if not isinstance(array, np.ndarray):
        raise EventFileError(f"{path}: expected a single .npy array, got {type(array).__name__}")
    return array


def read_events_npy(path: PathLike, width: int, height: int, flip_polarity: bool = False,
                    size_source: str | None = None) -> EventStream:
    """Reference-release events: (N,4) integer array ``t_us, x, y, p``, sorted by time.

    Polarity: ``p == 1`` is ON (+1) and ``p == 0`` OFF (-1); a file already holding ±1 is taken
    as signed. ``flip_polarity=True`` negates everything (the reference's synthetic training
    data had flipped polarity). Float arrays are accepted when every value is a whole number.
    ``size_source`` names where ``width``/``height`` came from (e.g. a capture's image), for the
    error when an event lies off that sensor.
    """
    path = Path(path)
    array = load_npy(path)
    if array.ndim != 2 or array.shape[1] != 4:
        raise EventFileError(f"{path}: expected an (N, 4) array of t_us, x, y, p; got shape {array.shape}")
    t_us, x, y = (integer_column(array[:, i], f"{path} column {name}")
                  for i, name in enumerate(("t_us", "x", "y")))
    p = signed_polarity(array[:, 3], flip_polarity, f"{path} column p")
    check_coordinates(x, y, width, height, str(path) if size_source is None else f"{path} does not fit {size_source}")
    return EventStream.from_arrays(t_us, x, y, p, width, height, source=str(path))


# ---------------------------------------------------------------------------------- E2VID HDF5
def _h5_resolution(value: Any, path: Path) -> tuple[int, int]:
    """The ``sensor_resolution`` attribute as (height, width): two whole numbers of pixels, nothing else."""
    array = np.asarray(value)
    if (array.shape != (2,) or array.dtype.kind not in "iuf" or not np.isfinite(array).all()
            or (array != np.round(array)).any() or not 1 <= array.min() <= array.max() <= MAX_SENSOR_PX):
        raise EventFileError(f"{path}: 'sensor_resolution' must be (height, width), two whole numbers of pixels "
                             f"in 1..{MAX_SENSOR_PX}, got {value!r}")
    return int(array[0]), int(array[1])


def _h5_sensor_size(file: h5py.File, width: int | None, height: int | None, path: Path) -> tuple[int, int]:
    resolution = file.attrs.get("sensor_resolution")
    stored = None if resolution is None else _h5_resolution(resolution, path)[::-1]
    return sensor_size(stored, width, height, "sensor_resolution", str(path))


def read_events_h5(
    path: PathLike,
    width: int | None = None,
    height: int | None = None,
    time_unit: str | None = None,
    flip_polarity: bool = False,
) -> EventStream:
    """E2VID-style HDF5: datasets ``events/ts``, ``events/xs``, ``events/ys``, ``events/ps``.

    Timestamps: float ``ts`` are seconds (rounded to the nearest µs), integer ``ts`` are µs;
    ``time_unit`` (``"s"``, ``"ms"``, ``"us"``, ``"ns"``) overrides the guess. Polarity: bool or {0,1}
    with 1 = ON, or ±1 taken as signed; ``flip_polarity`` negates. Sensor size: the root attribute
    ``sensor_resolution`` (height, width), else ``width``/``height`` must be given.
    """
    path = Path(path)
    with open_h5(path) as file:
        columns = h5_columns(file, H5_KEYS, path)
        width, height = _h5_sensor_size(file, width, height, path)
    t_us = timestamps_us(columns["events/ts"], time_unit, f"{path} dataset 'events/ts'")
    x = integer_column(columns["events/xs"], f"{path} dataset 'events/xs'")
    y = integer_column(columns["events/ys"], f"{path} dataset 'events/ys'")
    p = signed_polarity(columns["events/ps"], flip_polarity, f"{path} dataset 'events/ps'")
    check_coordinates(x, y, width, height, str(path))
    return EventStream.from_arrays(t_us, x, y, p, width, height, source=str(path))


def write_events_h5(path: PathLike, events: EventStream) -> None:
    """Write an E2VID-style HDF5 that ``read_events_h5`` reads back exactly.

    ``ts`` int64 µs, ``xs``/``ys`` int32, ``ps`` int8 ±1 (+1 = ON), root attribute
    ``sensor_resolution`` = (height, width).
    """
    columns = {"events/ts": events.t_us, "events/xs": events.x, "events/ys": events.y, "events/ps": events.p}
    with h5py.File(Path(path), "w") as file:
        for key, values in columns.items():
            file.create_dataset(key, data=values.cpu().numpy())
        file.attrs["sensor_resolution"] = np.array([events.height, events.width], dtype=np.int64)
        file.attrs["num_events"] = len(events)
        file.attrs["polarity"] = "+1 = brightness increase (ON), -1 = decrease (OFF)"
