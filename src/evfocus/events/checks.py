"""Checks every event-file reader shares: the error types, and columns → contract values.

A reader turns each column it read into int64 with ``integer_column`` (or ``timestamps_us``),
maps polarity with ``signed_polarity`` and range-checks coordinates with ``check_coordinates``
before ``EventStream.from_arrays`` casts them, so that no value wraps or rounds silently on the way.
Every message names the file (and dataset or column) and the problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

INT64_LIMIT = 2**63  # timestamps and coordinates become int64: |value| must stay below this
MAX_SENSOR_PX = np.iinfo(np.int32).max  # x/y are int32 in the EventStream contract
US_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1e-3}  # the time units a file may state or a caller name


class EventFileError(ValueError):
    """An event or capture file is unreadable or breaks its format (the message names the file)."""


class MissingFileError(EventFileError, FileNotFoundError):
    """A required file does not exist (also a FileNotFoundError, for callers that catch those)."""


def require_file(path: Path) -> None:
    if not path.is_file():
        raise MissingFileError(f"{path}: file not found")


@contextmanager
def library_errors(path: Path, problem: str) -> Iterator[None]:
    """Whatever a decoding library raises inside becomes an ``EventFileError`` "``path``: ``problem`` (its error)".

    Rust extensions (aedat, evt3) raise ``PanicException``, a ``BaseException``, on some broken files: those are
    turned into the same error; ``KeyboardInterrupt`` and ``SystemExit`` pass through.
    """
    try:
        yield
    except EventFileError:
        raise
    except Exception as error:
        raise EventFileError(f"{path}: {problem} ({type(error).__name__}: {error})") from error
    except BaseException as error:
        if type(error).__name__ != "PanicException":
            raise
        raise EventFileError(f"{path}: {problem} (the decoder panicked: {error})") from error


def integer_column(values: np.ndarray, where: str) -> np.ndarray:
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


def timestamps_us(ts: np.ndarray, time_unit: str | None, where: str) -> np.ndarray:
    """Timestamps → int64 µs. Without ``time_unit``, float timestamps are seconds (E2VID, ESIM) and integer
    ones µs. Floats are rounded to the nearest µs; integers convert exactly (ns round half up)."""
    unit = time_unit or ("s" if ts.dtype.kind == "f" else "us")
    if unit not in US_PER_UNIT:
        raise EventFileError(f"{where}: time_unit must be one of {', '.join(US_PER_UNIT)} or None, got {time_unit!r}")
    if ts.dtype.kind == "f" and unit != "us":
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float64 becomes inf, which integer_column names
            return integer_column(np.round(ts.astype(np.float64) * US_PER_UNIT[unit]), where)
    whole = integer_column(ts, where)
    if unit == "ns":
        quotient, remainder = np.divmod(whole, 1000)
        return quotient + (remainder >= 500)
    scale = int(US_PER_UNIT[unit])
    if whole.size and scale > 1:
        low, high = int(whole.min()), int(whole.max())  # Python ints: no wrap-around in the check itself
        if max(-low, high) >= INT64_LIMIT // scale:
            raise EventFileError(f"{where}: {unit} timestamps span [{low}, {high}], beyond the int64 range of µs")
    return whole * scale


def signed_polarity(values: np.ndarray, flip: bool, where: str) -> np.ndarray:
    """{0,1} (1 = ON) or bool → ±1; ±1 is taken as already signed. Anything else raises."""
    polarity = integer_column(values, where)
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


def check_coordinates(x: np.ndarray, y: np.ndarray, width: int, height: int, where: str) -> None:
    """Range check before the int32 cast, so huge values cannot wrap into the sensor."""
    for name, values, size in (("x", x, width), ("y", y, height)):
        if values.size and (values.min() < 0 or values.max() >= size):
            raise EventFileError(
                f"{where}: '{name}' spans [{values.min()}, {values.max()}] but the sensor is "
                f"{width}x{height} (valid {name} is 0..{size - 1})")


def sensor_size(stored: tuple[int, int] | None, width: int | None, height: int | None, what: str,
                where: str) -> tuple[int, int]:
    """(width, height): the file's own (``stored``, named ``what``), which given arguments must match, else the
    arguments, which are then required."""
    if stored is None:
        if width is None or height is None:
            raise EventFileError(f"{where}: no {what}; pass width and height")
        return width, height
    stored_width, stored_height = stored
    if not (1 <= stored_width <= MAX_SENSOR_PX and 1 <= stored_height <= MAX_SENSOR_PX):
        raise EventFileError(f"{where}: {what} says {stored_width}x{stored_height} (WxH), not a sensor size in "
                             f"1..{MAX_SENSOR_PX} pixels")
    if (width is not None and width != stored_width) or (height is not None and height != stored_height):
        raise EventFileError(f"{where}: {what} is {stored_height}x{stored_width} (HxW) but width={width}, "
                             f"height={height} were requested")
    return stored_width, stored_height
