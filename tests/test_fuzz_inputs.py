"""Fuzzed files through every reader: the only exceptions that may come out are the project's own.

Random bytes, truncated valid files and random arrays (any dtype and shape, NaN/inf, huge values,
out-of-range coordinates) go through ``read_events_npy``, ``read_events_h5`` and ``read_capture``, and
files of every other format (npz, txt, DSEC and Prophesee HDF5, AEDAT 4.0, EVT 2.0/3.0 RAW, DAT), written
by their own libraries or encoded from their specs, then cut or overwritten, through ``read_events``.
A reader may refuse a file with ``EventFileError`` (and its subclasses ``CaptureError``,
``MissingFileError``) or, for events that break the contract (unsorted), ``EventStreamError``; the
message must name the file. Anything else escaping is a bug. The default run tries a fixed,
small set of examples per test; ``pytest -m slow`` runs thousands, also a fixed set (derandomized): the
HDF5 C library can loop forever on some corrupted files (HDFGroup/hdf5#1707, h5py#2088; a fresh random
draw here once spun for 20 minutes in the Prophesee HDF5 case, before ``read_events`` tried HDF5 files in
a child process with a deadline first, ``events.deadline``; such a file now fails with an ``EventFileError``
after 30 s). ``read_events_h5`` called directly (the E2VID case) has no deadline. To explore new inputs,
set the long budget's ``derandomize=False`` and run it under a watchdog (``timeout``).
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
from event_files import (
    EVT2_HEADER,
    EVT3_HEADER,
    dat_bytes,
    evt2_words,
    evt3_words,
    raw_bytes,
    write_aedat4,
    write_dsec,
    write_prophesee_h5,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from evfocus.data.captures import read_capture
from evfocus.events.formats import read_events
from evfocus.events.io import EventFileError, read_events_h5, read_events_npy
from evfocus.events.stream import EventStream, EventStreamError

# a numerical warning (an overflowing cast, NaN in a comparison) is a bad number slipping through: fail on it
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
PROJECT_ERRORS = (EventFileError, EventStreamError)
T = TypeVar("T")
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
BUDGETS = [
    pytest.param(settings(max_examples=100, deadline=None, derandomize=True, database=None,
                          suppress_health_check=HEALTH), id="quick"),
    pytest.param(settings(max_examples=3000, deadline=None, derandomize=True, database=None,
                          suppress_health_check=HEALTH), id="long",
                 marks=pytest.mark.slow),
]

# ---------------------------------------------------------------------------------- strategies
# Most files are nearly valid, with one thing spoiled, so the readers' later checks are reached too.
DTYPES = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(sizes=(16, 32, 64)),
                   hnp.boolean_dtypes(), hnp.complex_number_dtypes(), hnp.byte_string_dtypes(max_len=3))
SHAPES = st.one_of(st.tuples(st.integers(0, 8), st.sampled_from([4, 4, 4, 3, 5])),
                   hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
TABLE_DTYPES = st.sampled_from([np.int64, np.int64, np.int32, np.uint64, np.float64, np.float32, np.int16, np.uint8])
HUGE = st.sampled_from([2**31, 2**63 - 1, -(2**63), 1e19, 1e30, -1e30, float("nan"), float("inf"), float("-inf")])
SPOILERS = st.one_of(st.integers(-3, 12), HUGE)
SIZES = st.tuples(st.integers(1, 8), st.integers(1, 8))  # sensor (width, height)
SWEEP_US = 100


def cast(values: np.ndarray, dtype: object) -> np.ndarray:
    """``values`` as ``dtype``; NaN and huge values wrap as a careless writer's would (quietly)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


@st.composite
def event_tables(draw: st.DrawFn, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    """(N, 4) ``t_us, x, y, p`` on a ``size`` sensor: valid, or with one cell spoiled (out of range, huge,
    NaN/inf), in an integer or float dtype."""
    width, height = size
    count = draw(st.integers(0, 8))

    def column(values: st.SearchStrategy[int]) -> list[int]:
        return draw(st.lists(values, min_size=count, max_size=count))

    table = np.array([sorted(column(st.integers(0, SWEEP_US))), column(st.integers(0, width - 1)),
                      column(st.integers(0, height - 1)), column(st.sampled_from([0, 1]))], np.float64).T
    if count and draw(st.booleans()):
        table[draw(st.integers(0, count - 1)), draw(st.integers(0, 3))] = draw(SPOILERS)
    return cast(table.reshape(-1, 4), draw(TABLE_DTYPES))


def arrays() -> st.SearchStrategy[np.ndarray]:
    """Any dtype and shape; values from the dtype's whole range (NaN, inf, extremes included)."""
    return hnp.arrays(DTYPES, SHAPES)


def corrupted(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Mostly the valid file; else the same cut short, with a few bytes overwritten, or random bytes."""
    def cut(data: bytes) -> st.SearchStrategy[bytes]:
        return st.integers(0, max(0, len(data) - 1)).map(lambda end: data[:end])

    def overwrite(data: bytes) -> st.SearchStrategy[bytes]:
        spot = st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=8))
        return spot.map(lambda at: data[:at[0]] + at[1] + data[at[0] + len(at[1]):])

    return st.one_of(valid, valid, valid, valid.flatmap(cut), valid.flatmap(overwrite), st.binary(max_size=300))


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_files(size: tuple[int, int] = (8, 8)) -> st.SearchStrategy[bytes]:
    return corrupted(st.one_of(event_tables(size), event_tables(size), arrays()).map(npy_bytes))


def png_bytes(pixels: np.ndarray) -> bytes:
    return iio.imwrite("<bytes>", pixels, extension=".png")


def images(size: tuple[int, int]) -> st.SearchStrategy[np.ndarray]:
    """8-bit grey, grey+alpha, RGB or RGBA, or 16-bit grey (what PNG writers take); now and then a row too many."""
    width, height = size
    rows = st.sampled_from([height, height, height, height + 1])
    eight_bit = st.tuples(rows, st.sampled_from([(), (2,), (3,), (4,)])).map(lambda s: (s[0], width, *s[1]))
    return st.one_of(hnp.arrays(np.uint8, eight_bit), hnp.arrays(np.uint16, rows.map(lambda h: (h, width))))


def depth_maps(size: tuple[int, int]) -> st.SearchStrategy[np.ndarray]:
    """Metres (+inf: no surface) of the image size, or any array."""
    width, height = size
    metres = st.one_of(st.floats(0.05, 20.0), st.just(float("inf")), SPOILERS)
    shapes = st.sampled_from([(height, width), (1, height, width), (width, height)])
    return st.one_of(hnp.arrays(st.sampled_from([np.float32, np.float64]), shapes, elements=metres), arrays())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | HUGE,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=5,
)
VALID_META = {"sweep_start_us": 0, "sweep_end_us": SWEEP_US, "focus_start_m": 0.3, "focus_end_m": 5.0,
              "focus_schedule": "linear_in_diopters", "image_time_us": 0}


def meta_files() -> st.SearchStrategy[bytes]:
    """The capture's meta JSON with keys replaced, dropped or added (NaN/Infinity written as Python's JSON does)."""
    keys = st.sampled_from([*VALID_META, "width", "height"])
    changes = st.dictionaries(keys, JSON_VALUES | st.integers(-5, 2 * SWEEP_US), max_size=2)
    dropped = st.sets(st.sampled_from(list(VALID_META)), max_size=1)
    meta = st.builds(lambda change, drop: {k: v for k, v in {**VALID_META, **change}.items() if k not in drop},
                     changes, dropped)
    return corrupted(st.one_of(meta, meta, meta, JSON_VALUES).map(lambda value: json.dumps(value).encode()))


# ---------------------------------------------------------------------------------- the property
def only_project_errors(read: Callable[[], T], names: Path) -> T | None:
    """``read()``'s result, or None after a project error whose message names ``names`` (a file or folder)."""
    try:
        return read()
    except PROJECT_ERRORS as error:
        assert str(names) in str(error), f"the error does not name {names}: {error}"
        return None


def assert_events_as_in_file(events: EventStream, path: Path) -> None:
    """What was read is what the .npy holds, exactly: no value wrapped or rounded on the way."""
    table = np.load(path)
    for column, read in zip(table.T, (events.t_us, events.x, events.y), strict=False):
        assert [int(value) for value in column] == read.tolist(), f"{path}: read {read.tolist()}, file has {column}"


def fuzz(budget: settings, check: Callable[..., None], **strategies: st.SearchStrategy) -> None:
    budget(given(**strategies)(check))()


def check_npy(data: bytes, size: tuple[int, int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.npy"
        path.write_bytes(data)
        events = only_project_errors(lambda: read_events_npy(path, *size), path)
        if events is not None:
            assert_events_as_in_file(events, path)


@pytest.mark.parametrize("budget", BUDGETS)
def test_read_events_npy(budget):
    fuzz(budget, check_npy, data=npy_files(), size=SIZES)


H5_COLUMNS = ("events/ts", "events/xs", "events/ys", "events/ps")
H5_DTYPES = st.sampled_from([np.int64, np.uint64, np.int16, np.uint8, np.float64, np.float32, np.bool_, "S2"])
RESOLUTIONS = st.one_of(st.just((8, 8)), st.just((8, 8)), st.none(), st.tuples(st.integers(-2, 9), st.integers(-2, 9)),
                        st.integers(-2, 9), st.just(["3", "5"]), st.just(np.array([3.5, 5.0])),
                        st.just(np.array([[3, 5]])), HUGE)


@st.composite
def h5_columns(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """The four datasets of an event table (t in µs or seconds), each in a random dtype; now and then
    one is missing, of another length or another shape."""
    table = draw(event_tables()).astype(np.float64)
    if draw(st.booleans()):
        table[:, 0] /= 1e6  # seconds, as E2VID writes them
    columns = {key: cast(table[:, index], draw(H5_DTYPES)) for index, key in enumerate(H5_COLUMNS)}
    key, change = draw(st.sampled_from(H5_COLUMNS)), draw(st.sampled_from(["none"] * 4 + ["drop", "length", "shape"]))
    if change == "drop":
        del columns[key]
    elif change == "length":
        columns[key] = columns[key][:-1] if len(columns[key]) else cast(np.ones(1), columns[key].dtype)
    elif change == "shape":
        columns[key] = draw(arrays())
    return columns


def h5_file(columns: dict[str, np.ndarray], resolution: object, gzip: bool) -> bytes:
    """An E2VID-style HDF5 file, built in memory (``gzip``: compressed, checksummed chunks where possible)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        for key, values in columns.items():
            chunked = gzip and values.ndim > 0 and values.size > 0
            file.create_dataset(key, data=values, **({"compression": "gzip", "fletcher32": True} if chunked else {}))
        if resolution is not None:
            file.attrs["sensor_resolution"] = resolution
    return buffer.getvalue()


def check_h5(data: bytes, width: int | None, height: int | None, time_unit: str | None, flip: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.h5"
        path.write_bytes(data)
        only_project_errors(lambda: read_events_h5(path, width, height, time_unit, flip), path)


@pytest.mark.parametrize("budget", BUDGETS)
def test_read_events_h5(budget):
    files = corrupted(st.builds(h5_file, h5_columns(), RESOLUTIONS, st.booleans()))
    sizes = st.none() | st.none() | st.just(8) | st.integers(1, 9)  # with the file's own resolution: mostly None
    fuzz(budget, check_h5, data=files, width=sizes, height=sizes,
         time_unit=st.sampled_from([None, None, "s", "us", "ms"]), flip=st.booleans())


def check_capture(data: st.DataObject) -> None:
    size = data.draw(SIZES, label="sensor (width, height)")
    parts = {
        "blurry": data.draw(corrupted(images(size).map(png_bytes)), label="blurry"),
        "events": data.draw(npy_files(size), label="events"),
        "meta": data.draw(meta_files() | meta_files() | st.none(), label="meta"),
        "aif": data.draw(st.none() | corrupted(images(size).map(png_bytes)), label="aif"),
        "depth": data.draw(st.none() | corrupted(depth_maps(size).map(npy_bytes)), label="depth"),
    }
    suffixes = {"blurry": ".png", "events": ".npy", "meta": ".json", "aif": ".png", "depth": ".npy"}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for part, content in parts.items():
            if content is not None:
                (root / part).mkdir()
                (root / part / f"c{suffixes[part]}").write_bytes(content)
        sweep = only_project_errors(lambda: read_capture(root, "c"), root)
        if sweep is not None:
            assert_events_as_in_file(sweep.events, root / "events" / "c.npy")


@pytest.mark.parametrize("budget", BUDGETS)
def test_read_capture(budget):
    fuzz(budget, check_capture, data=st.data())


# ---------------------------------------------------------------------------------- every other format
FORMAT_SUFFIXES = {"npz": ".npz", "txt": ".txt", "dsec_h5": ".h5", "prophesee_h5": ".hdf5", "aedat4": ".aedat4",
                   "evt2": ".raw", "evt3": ".raw", "dat": ".dat"}
Events = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@st.composite
def sensor_events(draw: st.DrawFn, may_be_unsorted: bool = True) -> Events:
    """Integer events of an 8x8 sensor over ~1 s (3 loops of EVT 3.0's time base at most); now and then a
    pixel off the sensor, or (``may_be_unsorted``) times out of order."""
    count = draw(st.integers(0, 8))

    def column(values: st.SearchStrategy[int]) -> np.ndarray:
        return np.array(draw(st.lists(values, min_size=count, max_size=count)), np.int64)

    t_us = column(st.integers(0, 2**20) | st.integers(2**24 - 5, 3 * 2**24))
    if not (may_be_unsorted and draw(st.booleans())):
        t_us = np.sort(t_us)
    return t_us, column(st.integers(0, 9)), column(st.integers(0, 9)), column(st.integers(0, 1))


def written(write: Callable[[Path], object], suffix: str) -> bytes:
    """What a library's writer puts in a file, as bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"events{suffix}"
        write(path)
        return path.read_bytes()


def npz_bytes(table: np.ndarray, names: tuple[str, ...]) -> bytes:
    buffer = io.BytesIO()
    if len(names) == 1:
        np.savez(buffer, **{names[0]: table})
    else:
        np.savez(buffer, **dict(zip(names, table.T, strict=True)))
    return buffer.getvalue()


def txt_bytes(table: np.ndarray, size_line: bool) -> bytes:
    lines = ["8 8"] if size_line else []
    lines += [" ".join(str(value) for value in row.tolist()) for row in table]
    return "\n".join(lines).encode()


def valid_files(name: str) -> st.SearchStrategy[tuple[Events | None, bytes]]:
    """(the events, when the file holds them exactly as integers; the file's bytes) for format ``name``."""
    if name == "npz":
        names = st.sampled_from([("t", "x", "y", "p"), ("ts", "xs", "ys", "ps"), ("events",)])
        return st.builds(lambda table, keys: (None, npz_bytes(table, keys)), event_tables(), names)
    if name == "txt":
        return st.builds(lambda table, size_line: (None, txt_bytes(table, size_line)), event_tables(), st.booleans())
    writers = {
        "dsec_h5": lambda e: written(lambda path: write_dsec(path, *e, t_offset_us=int(e[0].min(initial=0))), ".h5"),
        "aedat4": lambda e: written(lambda path: write_aedat4(path, *e, width=8, height=8, packet_events=3), ".aedat4"),
        "evt2": lambda e: raw_bytes(EVT2_HEADER, evt2_words(*e), 8, 8),
        "evt3": lambda e: raw_bytes(EVT3_HEADER, evt3_words(*e), 8, 8),
        "dat": lambda e: dat_bytes(*e, 8, 8),
        "prophesee_h5": lambda e: written(lambda path: write_prophesee_h5(path, *e, "8x8", ecf=len(e[0]) % 2), ".h5"),
    }
    events = sensor_events(may_be_unsorted=name in ("evt2", "dat", "prophesee_h5"))
    return events.map(lambda e: (e, writers[name](e)))


def check_format(data: st.DataObject, name: str) -> None:
    """A file of ``name`` (mostly valid, else cut, overwritten or random) read with the format detected or named:
    only project errors, naming the file; a valid file read back exactly."""
    events, valid = data.draw(valid_files(name), label="valid file")
    content = data.draw(corrupted(st.just(valid)), label="file")
    explicit = data.draw(st.booleans(), label="format named")
    size = data.draw(st.none() | st.just((8, 8)) | SIZES, label="width, height")
    flip = data.draw(st.booleans(), label="flip_polarity")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"events{FORMAT_SUFFIXES[name]}"
        path.write_bytes(content)
        width, height = size or (None, None)
        stream = only_project_errors(lambda: read_events(path, name if explicit else None, width=width,
                                                         height=height, flip_polarity=flip), path)
    if stream is not None and events is not None and content == valid:
        read = (stream.t_us.tolist(), stream.x.tolist(), stream.y.tolist(), stream.p.tolist())
        signed = (events[3] * 2 - 1) * (-1 if flip else 1)
        assert read == tuple(column.tolist() for column in (*events[:3], signed)), f"read {read}, wrote {events}"


@pytest.mark.parametrize("name", list(FORMAT_SUFFIXES))
@pytest.mark.parametrize("budget", BUDGETS)
def test_read_events_every_format(budget, name):
    fuzz(budget, lambda data: check_format(data, name), data=st.data())


# ---------------------------------------------------------------------------------- cases the fuzzer found
def test_npy_header_that_breaks_numpys_tokenizer(tmp_path):
    path = tmp_path / "events.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00F\x00" + bytes(67) + b"'''")  # numpy raises tokenize.TokenError
    with pytest.raises(EventFileError, match=r"events\.npy: not a loadable \.npy array"):
        read_events_npy(path, 4, 4)


def test_h5_with_a_damaged_chunk(tmp_path):
    path = tmp_path / "events.h5"
    with h5py.File(path, "w") as file:
        for key in H5_COLUMNS:
            file.create_dataset(key, data=np.arange(64) % 2, compression="gzip", fletcher32=True)
        file.attrs["sensor_resolution"] = (4, 4)
        offset = file["events/xs"].id.get_chunk_info(0).byte_offset
    with path.open("r+b") as damaged:  # the chunk's checksum no longer matches: h5py raises OSError on read
        damaged.seek(offset)
        damaged.write(b"\xff" * 8)
    with pytest.raises(EventFileError, match=r"events\.h5: not a readable HDF5 file \(OSError"):
        read_events_h5(path)


def test_capture_depth_beyond_float32_is_not_read_as_no_surface(tmp_path):
    for folder in ("blurry", "events", "meta", "depth"):
        (tmp_path / folder).mkdir()
    iio.imwrite(tmp_path / "blurry" / "c.png", np.zeros((1, 1), np.uint8))
    np.save(tmp_path / "events" / "c.npy", np.zeros((0, 4), np.int64))
    (tmp_path / "meta" / "c.json").write_text(json.dumps(VALID_META))
    np.save(tmp_path / "depth" / "c.npy", np.array([[1e300]]))  # float32 would make it +inf: "no surface"
    with pytest.raises(EventFileError, match=r"depth/c\.npy: depth must be positive metres.*beyond float32"):
        read_capture(tmp_path, "c")


@pytest.mark.parametrize("content", [
    b"[" * 100_000,  # nesting deeper than Python's recursion limit
    b'{"sweep_start_us": ' + b"9" * 5000 + b"}",  # more digits than Python converts to an int
    b'{"sweep_start_us": 1e999}',  # parses as inf
    b"\xff\xfe not utf-8",
])
def test_capture_meta_extremes(tmp_path, content):
    (tmp_path / "blurry").mkdir()
    (tmp_path / "events").mkdir()
    (tmp_path / "meta").mkdir()
    iio.imwrite(tmp_path / "blurry" / "c.png", np.zeros((3, 5, 3), np.uint8))
    np.save(tmp_path / "events" / "c.npy", np.zeros((0, 4), np.int64))
    (tmp_path / "meta" / "c.json").write_bytes(content)
    with pytest.raises(EventFileError, match=r"meta/c\.json"):
        read_capture(tmp_path, "c")
