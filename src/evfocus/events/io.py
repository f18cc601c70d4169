"""Event files → EventStream (read-only formats, plus an HDF5 writer); capture folders are ``data.captures``.

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

from evfocus.events.stream import EventStream

PathLike = str | Path
H5_KEYS = ("events/ts", "events/xs", "events/ys", "events/ps")
INT64_LIMIT = 2**63  # timestamps and coordinates become int64: |value| must stay below this
MAX_SENSOR_PX = np.iinfo(np.int32).max  # x/y are int32 in the EventStream contract


class EventFileError(ValueError):
    """An event or capture file is unreadable or breaks its format (the message names the file)."""


class MissingFileError(EventFileError, FileNotFoundError):
    """A required file does not exist (also a FileNotFoundError, for callers that catch those)."""


# ---------------------------------------------------------------------------------- shared checks
def require_file(path: Path) -> None:
    if not path.is_file():
        raise MissingFileError(f"{path}: file not found")


def _integer_column(values: np.ndarray, where: str) -> np.ndarray:
    """int64 copy of an integer column; float columns must hold whole, finite numbers; all must fit int64
    (a cast would wrap uint64 >= 2^63 or floats like 1e30 silently into wrong, often negative, values)."""
    if values.dtype.kind not in "iubf":
        raise EventFileError(f"{where}: expected integers, got dtype {values.dtype}")
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise EventFileError(f"{where}: contains NaN or infinite values")
        if (values != np.round(values)).any():
            bad = values[values != np.round(values)][:3].tolist()
            raise EventFileError(f"{where}: expected whole numbers, found non-integer values such as {bad}")
    if values.size and values.dtype.kind in "uf":
        low, high = values.min().item(), values.max().item()  # Python numbers compare exactly, without casts
        if not (low >= -INT64_LIMIT and high < INT64_LIMIT):
            raise EventFileError(f"{where}: values span [{low}, {high}], beyond the int64 range [-2^63, 2^63) "
                                 "of timestamps and coordinates")
    return values.astype(np.int64)


def _signed_polarity(values: np.ndarray, flip: bool, where: str) -> np.ndarray:
    """{0,1} (1 = ON) or bool → ±1; ±1 is taken as already signed. Anything else raises."""
    polarity = _integer_column(values, where)
    if polarity.size == 0:
        return polarity.astype(np.int8)
    low, high = int(polarity.min()), int(polarity.max())
    if low >= 0 and high <= 1:
        signed = polarity * 2 - 1
    elif low >= -1 and high <= 1 and not (polarity == 0).any():
        signed = polarity
    else:
        found = np.unique(polarity).tolist()[:10]
        raise EventFileError(f"{where}: polarity must be 0/1 (OFF/ON) or -1/+1, found values {found}")
    return (-signed if flip else signed).astype(np.int8)


def _check_coordinates(x: np.ndarray, y: np.ndarray, width: int, height: int, where: str) -> None:
    """Range check before the int32 cast, so huge values cannot wrap into the sensor."""
    for name, values, size in (("x", x, width), ("y", y, height)):
        if values.size and (values.min() < 0 or values.max() >= size):
            raise EventFileError(
                f"{where}: '{name}' spans [{values.min()}, {values.max()}] but the sensor is "
                f"{width}x{height} (valid {name} is 0..{size - 1})")


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
    t_us, x, y = (_integer_column(array[:, i], f"{path} column {name}")
                  for i, name in enumerate(("t_us", "x", "y")))
    p = _signed_polarity(array[:, 3], flip_polarity, f"{path} column p")
    _check_coordinates(x, y, width, height, str(path) if size_source is None else f"{path} does not fit {size_source}")
    return EventStream.from_arrays(t_us, x, y, p, width, height, source=str(path))


# ---------------------------------------------------------------------------------- E2VID HDF5
def _h5_timestamps_us(ts: np.ndarray, time_unit: str | None, where: str) -> np.ndarray:
    unit = time_unit or ("s" if ts.dtype.kind == "f" else "us")
    if unit == "us":
        return _integer_column(ts, where)
    if unit != "s":
        raise EventFileError(f"{where}: time_unit must be 's', 'us' or None, got {time_unit!r}")
    if ts.dtype.kind not in "fiu":
        raise EventFileError(f"{where}: timestamps in seconds must be numbers, got dtype {ts.dtype}")
    return _integer_column(np.round(ts.astype(np.float64) * 1e6), where)


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
    if resolution is None:
        if width is None or height is None:
            raise EventFileError(f"{path}: no 'sensor_resolution' attribute; pass width and height")
        return width, height
    file_height, file_width = _h5_resolution(resolution, path)
    if (width is not None and width != file_width) or (height is not None and height != file_height):
        raise EventFileError(f"{path}: sensor_resolution is {file_height}x{file_width} (HxW) but "
                             f"width={width}, height={height} were requested")
    return file_width, file_height


def _h5_columns(file: h5py.File, path: Path) -> dict[str, np.ndarray]:
    columns = {}
    for key in H5_KEYS:
        dataset = file.get(key)
        if not isinstance(dataset, h5py.Dataset):
            raise EventFileError(f"{path}: missing dataset '{key}' (expected {', '.join(H5_KEYS)})")
        if dataset.ndim != 1:
            raise EventFileError(f"{path}: dataset '{key}' must be 1-D, got shape {dataset.shape}")
        columns[key] = dataset[()]
    return columns


def read_events_h5(
    path: PathLike,
    width: int | None = None,
    height: int | None = None,
    time_unit: str | None = None,
    flip_polarity: bool = False,
) -> EventStream:
    """E2VID-style HDF5: datasets ``events/ts``, ``events/xs``, ``events/ys``, ``events/ps``.

    Timestamps: float ``ts`` are seconds (rounded to the nearest µs), integer ``ts`` are µs;
    ``time_unit="s"``/``"us"`` overrides the guess. Polarity: bool or {0,1} with 1 = ON, or
    ±1 taken as signed; ``flip_polarity`` negates. Sensor size: the root attribute
    ``sensor_resolution`` (height, width), else ``width``/``height`` must be given.
    """
    path = Path(path)
    require_file(path)
    try:
        with h5py.File(path, "r") as file:
            columns = _h5_columns(file, path)
            width, height = _h5_sensor_size(file, width, height, path)
    except EventFileError:
        raise
    except Exception as error:  # h5py raises OSError, KeyError, TypeError, ... for damaged files and chunks
        raise EventFileError(f"{path}: not a readable HDF5 file ({type(error).__name__}: {error})") from error
    lengths = {key: len(values) for key, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise EventFileError(f"{path}: datasets differ in length: "
                             + ", ".join(f"'{key}' has {n}" for key, n in lengths.items()))
    t_us = _h5_timestamps_us(columns["events/ts"], time_unit, f"{path} dataset 'events/ts'")
    x = _integer_column(columns["events/xs"], f"{path} dataset 'events/xs'")
    y = _integer_column(columns["events/ys"], f"{path} dataset 'events/ys'")
    p = _signed_polarity(columns["events/ps"], flip_polarity, f"{path} dataset 'events/ps'")
    _check_coordinates(x, y, width, height, str(path))
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
