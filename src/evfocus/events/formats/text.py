"""NumPy archives (``.npz``) and text files (``t x y p`` per line, as ESIM and DVS-Voltmeter write) → EventStream.

Neither stores a time unit, so both follow one rule (``checks.timestamps_us``): float timestamps are
seconds, integer ones µs, unless ``time_unit`` says otherwise. Polarity: 0/1 (1 = ON), bool, or ±1
taken as signed. Neither format stores the sensor size by convention: ``width``/``height`` are needed,
except for a text file whose first line is ``width height`` (E2VID's text layout).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from evfocus.events.checks import (
    EventFileError,
    check_coordinates,
    integer_column,
    library_errors,
    require_file,
    sensor_size,
    signed_polarity,
    timestamps_us,
)
from evfocus.events.stream import EventStream

NPZ_NAMES = (("t", "x", "y", "p"), ("ts", "xs", "ys", "ps"))  # ours, and E2VID's
INTEGER_UNITS = ("us", "ns")  # text timestamps in these units are parsed as int64, so large values stay exact


def _stream(columns: list[np.ndarray], names: tuple[str, ...], width: int, height: int, flip_polarity: bool,
            time_unit: str | None, path: Path) -> EventStream:
    """Four 1-D columns ``t, x, y, p`` (called ``names`` in the file) → EventStream, every value checked."""
    for name, column in zip(names, columns, strict=True):
        if column.ndim != 1 or len(column) != len(columns[0]):
            raise EventFileError(f"{path}: '{name}' must be 1-D with one entry per event, got shape {column.shape} "
                                 f"beside {len(columns[0])} timestamps")
    where = [f"{path} '{name}'" for name in names]
    t_us = timestamps_us(columns[0], time_unit, where[0])
    x, y = integer_column(columns[1], where[1]), integer_column(columns[2], where[2])
    p = signed_polarity(columns[3], flip_polarity, where[3])
    check_coordinates(x, y, width, height, str(path))
    return EventStream.from_arrays(t_us, x, y, p, width, height, source=str(path))


# ---------------------------------------------------------------------------------- .npz
def _npz_columns(arrays: dict[str, np.ndarray], path: Path) -> tuple[list[np.ndarray], tuple[str, ...]]:
    for names in NPZ_NAMES:
        if set(names) <= set(arrays):
            return [arrays[name] for name in names], names
    if len(arrays) == 1:
        (name, table), = arrays.items()
        if table.dtype.names is not None and set(NPZ_NAMES[0]) <= set(table.dtype.names):
            return [table[field] for field in NPZ_NAMES[0]], tuple(f"{name}.{field}" for field in NPZ_NAMES[0])
        if table.ndim == 2 and table.shape[1] == 4:
            return list(table.T), tuple(f"{name}[:, {i}]" for i in range(4))
    raise EventFileError(f"{path}: expected arrays t, x, y, p (or ts, xs, ys, ps), or one (N, 4) or structured "
                         f"t/x/y/p array; found {sorted(arrays)}")


def read_events_npz(path: str | Path, width: int, height: int, flip_polarity: bool = False,
                    time_unit: str | None = None) -> EventStream:
    """``.npz`` archive: arrays ``t, x, y, p`` (or E2VID's ``ts, xs, ys, ps``), or a single array that is
    either structured with fields ``t, x, y, p`` (tonic, expelliarmus) or (N, 4) columns ``t, x, y, p``.

    Time: float seconds, integer µs, unless ``time_unit`` (``s``, ``ms``, ``us``, ``ns``). Polarity: 0/1 with
    1 = ON, bool, or ±1 taken as signed; ``flip_polarity`` negates. Pickled objects are refused.
    """
    path = Path(path)
    require_file(path)
    with library_errors(path, "not a readable .npz archive"):
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise EventFileError(f"{path}: holds a single array, not an .npz archive")
        with archive:
            arrays = {name: archive[name] for name in archive.files}
    columns, names = _npz_columns(arrays, path)
    return _stream(columns, names, width, height, flip_polarity, time_unit, path)


# ---------------------------------------------------------------------------------- .txt
def _text_layout(path: Path) -> tuple[tuple[int, int] | None, int, list[str] | None]:
    """(``width height`` from a first line of two numbers or None, lines to skip before the events, the first
    event line's fields or None when there are no events). ``#`` starts a comment."""
    size, skip = None, 0
    with library_errors(path, "not a readable text file"), path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if size is None and len(fields) == 2:
                try:
                    size, skip = (int(fields[0]), int(fields[1])), number
                except ValueError:
                    raise EventFileError(f"{path} line {number}: a two-field first line must be 'width height', "
                                         f"got {line.strip()!r}") from None
                continue
            if len(fields) != 4:
                raise EventFileError(f"{path} line {number}: expected 't x y p', got {line.strip()[:80]!r}")
            return size, skip, fields
    return size, skip, None


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_events_txt(path: str | Path, width: int | None = None, height: int | None = None,
                    flip_polarity: bool = False, time_unit: str | None = None) -> EventStream:
    """Text, one event per line: ``t x y p`` separated by blanks; ``#`` comments; an optional first line
    ``width height`` (E2VID) gives the sensor size, else ``width``/``height`` must be given.

    Time: a float first timestamp (``0.000125``, as ESIM writes seconds) means seconds, an integer one µs,
    unless ``time_unit`` (``s``, ``ms``, ``us``, ``ns``; ``us``/``ns`` are parsed as exact integers). Polarity:
    0/1 with 1 = ON, or ±1 taken as signed; ``flip_polarity`` negates.
    """
    path = Path(path)
    require_file(path)
    stored, skip, first = _text_layout(path)
    width, height = sensor_size(stored, width, height, "'width height' first line", str(path))
    if first is None:
        return EventStream.empty(width, height, source=str(path))
    exact = time_unit in INTEGER_UNITS or (time_unit is None and _is_integer(first[0]))
    dtype = np.dtype([("t", np.int64 if exact else np.float64), ("x", float), ("y", float), ("p", float)])
    with library_errors(path, "not 't x y p' text"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data": comment-only tails are fine
        table = np.loadtxt(path, dtype=dtype, comments="#", skiprows=skip, ndmin=1, encoding="utf-8")
    return _stream([table[name] for name in "txyp"], ("t", "x", "y", "p"), width, height, flip_polarity,
                   time_unit, path)
