"""Event-file readers against hand-made files (capture folders: tests/test_captures.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evfocus.events.io import EventFileError, MissingFileError, read_events_h5, read_events_npy, write_events_h5
from evfocus.events.stream import EventStream, EventStreamError

ROWS = np.array([[10, 0, 0, 1], [12, 3, 1, 0], [12, 4, 2, 1], [30, 1, 2, 0]], dtype=np.int32)


def save_npy(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path


# ---------------------------------------------------------------------------------- .npy
def test_npy_zero_one_polarity(tmp_path: Path) -> None:
    events = read_events_npy(save_npy(tmp_path / "e.npy", ROWS), width=5, height=3)
    assert events.t_us.tolist() == [10, 12, 12, 30] and events.t_us.dtype == torch.int64
    assert events.x.tolist() == [0, 3, 4, 1] and events.y.tolist() == [0, 1, 2, 2]
    assert events.p.tolist() == [1, -1, 1, -1]
    assert (events.width, events.height, events.source) == (5, 3, str(tmp_path / "e.npy"))
    flipped = read_events_npy(tmp_path / "e.npy", width=5, height=3, flip_polarity=True)
    assert flipped.p.tolist() == [-1, 1, -1, 1]


def test_npy_signed_and_float_accepted(tmp_path: Path) -> None:
    signed = ROWS.copy()
    signed[:, 3] = [1, -1, 1, -1]
    assert read_events_npy(save_npy(tmp_path / "s.npy", signed), 5, 3).p.tolist() == [1, -1, 1, -1]
    as_float = read_events_npy(save_npy(tmp_path / "f.npy", ROWS.astype(np.float64)), 5, 3)
    assert as_float.t_us.tolist() == [10, 12, 12, 30] and as_float.p.tolist() == [1, -1, 1, -1]
    empty = read_events_npy(save_npy(tmp_path / "empty.npy", np.zeros((0, 4), np.int64)), 5, 3)
    assert len(empty) == 0


def test_npy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nope\.npy"):
        read_events_npy(tmp_path / "nope.npy", 5, 3)
    with pytest.raises(FileNotFoundError):
        read_events_npy(tmp_path / "nope.npy", 5, 3)


def test_npy_truncated_and_junk(tmp_path: Path) -> None:
    path = save_npy(tmp_path / "t.npy", np.tile(ROWS, (50, 1)))
    path.write_bytes(path.read_bytes()[:-37])
    with pytest.raises(EventFileError, match=r"t\.npy.*truncated"):
        read_events_npy(path, 5, 3)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"definitely not numpy")
    with pytest.raises(EventFileError, match=r"junk\.npy"):
        read_events_npy(junk, 5, 3)
    archive = tmp_path / "archive.npy"
    with archive.open("wb") as handle:
        np.savez(handle, events=ROWS)
    with pytest.raises(EventFileError, match=r"archive\.npy: expected a single \.npy array"):
        read_events_npy(archive, 5, 3)


@pytest.mark.parametrize(("array", "message"), [
    (ROWS[:, :3], r"\(N, 4\).*got shape \(4, 3\)"),
    (ROWS[:, 0], r"\(N, 4\).*got shape \(4,\)"),
    (ROWS.astype(np.float32) + np.float32(0.5), "non-integer"),
    (np.where(np.arange(4)[:, None] == 3, 2, ROWS), r"polarity.*\[0, 1, 2\]"),
    (np.column_stack([ROWS[:, :3], [1, 0, -1, 1]]), r"polarity.*\[-1, 0, 1\]"),
    (np.column_stack([ROWS[:, 0], [0, 5, 1, 2], ROWS[:, 2:]]), r"'x' spans \[0, 5\].*0\.\.4"),
    (np.column_stack([ROWS[:, :2], [0, 1, 2, -1], ROWS[:, 3]]), r"'y' spans \[-1, 2\]"),
    (np.column_stack([ROWS[:, 0], [0, 2**33, 1, 2], ROWS[:, 2:]]).astype(np.int64), r"'x' spans"),
    (np.array([["a", "b", "c", "d"]]), "expected integers"),
])
def test_npy_bad_content(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = save_npy(tmp_path / "bad.npy", array)
    with pytest.raises(EventFileError, match=message) as info:
        read_events_npy(path, 5, 3)
    assert str(path) in str(info.value)


def test_npy_unsorted_names_file(tmp_path: Path) -> None:
    path = save_npy(tmp_path / "unsorted.npy", ROWS[::-1].copy())
    with pytest.raises(EventStreamError, match=rf"{tmp_path}/unsorted\.npy.*not sorted"):
        read_events_npy(path, 5, 3)


@pytest.mark.parametrize(("t_us", "message"), [
    (np.array([1, 2, 2**63, 2**64 - 1], np.uint64), r"t_us.*beyond the int64 range"),
    (np.array([1.0, 2.0, 1e30, 1e30]), r"t_us.*beyond the int64 range"),
    (np.array([1.0, 2.0, -1e19, 3.0]), r"t_us.*beyond the int64 range"),
])
def test_npy_timestamps_beyond_int64_name_the_file(tmp_path: Path, t_us: np.ndarray, message: str) -> None:
    columns = [t_us, *(ROWS[:, i].astype(t_us.dtype) for i in (1, 2, 3))]
    path = save_npy(tmp_path / "huge.npy", np.column_stack(columns))
    with pytest.raises(EventFileError, match=message) as info:
        read_events_npy(path, 5, 3)
    assert str(path) in str(info.value)


def test_npy_header_larger_than_the_file_is_truncated_not_a_memory_error(tmp_path: Path) -> None:
    path = tmp_path / "claims_more.npy"
    with path.open("wb") as file:  # a header promising 32 GB of events, then 64 bytes
        np.lib.format.write_array_header_1_0(file, {"descr": "<i8", "fortran_order": False, "shape": (10**9, 4)})
        file.write(bytes(64))
    with pytest.raises(EventFileError, match=r"claims_more\.npy.*truncated"):
        read_events_npy(path, 5, 3)


# ---------------------------------------------------------------------------------- HDF5
def write_raw_h5(path: Path, columns: dict[str, np.ndarray], resolution=(3, 5)) -> Path:
    with h5py.File(path, "w") as file:
        for key, values in columns.items():
            file.create_dataset(key, data=values)
        if resolution is not None:
            file.attrs["sensor_resolution"] = resolution
    return path


E2VID_COLUMNS = {"events/ts": np.array([0.5, 0.5000015, 1.25]), "events/xs": np.array([0, 4, 2], np.int16),
                 "events/ys": np.array([2, 0, 1], np.int16), "events/ps": np.array([1, 0, 1], np.uint8)}


def test_h5_seconds_and_zero_one(tmp_path: Path) -> None:
    events = read_events_h5(write_raw_h5(tmp_path / "e.h5", E2VID_COLUMNS))
    assert events.t_us.tolist() == [500_000, 500_002, 1_250_000]  # 0.5000015 s rounds to 500002 µs
    assert events.p.tolist() == [1, -1, 1] and (events.width, events.height) == (5, 3)
    assert events.x.tolist() == [0, 4, 2] and events.y.tolist() == [2, 0, 1]


def test_h5_bool_polarity_integer_microseconds(tmp_path: Path) -> None:
    columns = {**E2VID_COLUMNS, "events/ts": np.array([7, 9, 11], np.int64),
               "events/ps": np.array([False, True, False])}
    events = read_events_h5(write_raw_h5(tmp_path / "e.h5", columns, resolution=None), width=5, height=3)
    assert events.t_us.tolist() == [7, 9, 11] and events.p.tolist() == [-1, 1, -1]
    float_us = {**columns, "events/ts": np.array([7.0, 9.0, 11.0])}
    events = read_events_h5(write_raw_h5(tmp_path / "f.h5", float_us), time_unit="us")
    assert events.t_us.tolist() == [7, 9, 11]


def test_h5_errors(tmp_path: Path) -> None:
    without_ps = {key: value for key, value in E2VID_COLUMNS.items() if key != "events/ps"}
    with pytest.raises(EventFileError, match=r"missing\.h5: missing dataset 'events/ps'"):
        read_events_h5(write_raw_h5(tmp_path / "missing.h5", without_ps))
    short = {**E2VID_COLUMNS, "events/ys": np.array([0, 1], np.int16)}
    with pytest.raises(EventFileError, match=r"'events/xs' has 3, 'events/ys' has 2"):
        read_events_h5(write_raw_h5(tmp_path / "short.h5", short))
    with pytest.raises(EventFileError, match=r"sensor_resolution.*pass width and height"):
        read_events_h5(write_raw_h5(tmp_path / "nores.h5", E2VID_COLUMNS, resolution=None))
    with pytest.raises(EventFileError, match=r"sensor_resolution is 3x5.*width=6"):
        read_events_h5(write_raw_h5(tmp_path / "res.h5", E2VID_COLUMNS), width=6, height=3)
    not_h5 = tmp_path / "n.h5"
    not_h5.write_bytes(b"plain text, not HDF5")
    with pytest.raises(EventFileError, match=r"n\.h5: not a readable HDF5"):
        read_events_h5(not_h5)
    with pytest.raises(MissingFileError):
        read_events_h5(tmp_path / "absent.h5")


@pytest.mark.parametrize("resolution", [np.int64(5), ["3", "5"], np.array([b"3", b"5"]), "3x5",
                                        np.array([3, 5, 1]), np.array([3.5, 5.0]), np.array([-3, 5]),
                                        np.array([0, 5]), np.array([2**40, 5]), np.array([[3, 5]])])
def test_h5_bad_sensor_resolution_is_an_event_file_error(tmp_path: Path, resolution) -> None:
    path = write_raw_h5(tmp_path / "res.h5", E2VID_COLUMNS, resolution=resolution)
    with pytest.raises(EventFileError, match=r"res\.h5: 'sensor_resolution' must be"):
        read_events_h5(path)


@pytest.mark.parametrize(("ts", "time_unit"), [
    (np.array([0.5, 1e20, 1e20]), None),  # seconds: 1e26 µs
    (np.array([1, 2**63, 2**64 - 1], np.uint64), None),
    (np.array([1.0, 2.0, 1e30]), "us"),
])
def test_h5_timestamps_beyond_int64_name_the_file(tmp_path: Path, ts: np.ndarray, time_unit: str | None) -> None:
    path = write_raw_h5(tmp_path / "huge.h5", {**E2VID_COLUMNS, "events/ts": ts})
    with pytest.raises(EventFileError, match=r"huge\.h5 dataset 'events/ts'.*beyond the int64 range"):
        read_events_h5(path, time_unit=time_unit)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 639), st.integers(0, 479),
                          st.sampled_from([-1, 1])), max_size=40))
def test_h5_round_trip(rows: list[tuple[int, int, int, int]]) -> None:
    rows = sorted(rows)
    columns = np.array(rows, np.int64).reshape(-1, 4).T
    events = EventStream.from_arrays(*columns, width=640, height=480, source="rt")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rt.h5"
        write_events_h5(path, events)
        back = read_events_h5(path)
    assert (back.width, back.height) == (640, 480)
    for name in ("t_us", "x", "y", "p"):
        assert torch.equal(getattr(back, name), getattr(events, name)), name
