"""Event/capture readers against hand-made files and the independent efs_dev statistics."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import shared_samples

from evfocus.events.io import (
    CaptureError,
    EventFileError,
    MissingFileError,
    list_captures,
    read_capture,
    read_events_h5,
    read_events_npy,
    write_events_h5,
)
from evfocus.events.stream import EventStream, EventStreamError
from evfocus.events.voxel import EventFocalStack
from evfocus.optics import FocusSchedule
from evfocus.sweep import SweepError

SAMPLES = shared_samples() / "efs_dev"
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


# ---------------------------------------------------------------------------------- real samples
@pytest.fixture(scope="module")
def sample_stats() -> dict:
    return json.loads((SAMPLES / "stats.json").read_text())["scenes"]


def test_list_sample_captures() -> None:
    assert list_captures(SAMPLES) == ["d00_desk", "d01_shelf"]


@pytest.mark.parametrize(("name", "sweep_end_us"), [("d00_desk", 450_000), ("d01_shelf", 900_000)])
def test_read_sample_capture(sample_stats: dict, name: str, sweep_end_us: int) -> None:
    stats = sample_stats[name]
    sweep = read_capture(SAMPLES, name)
    events = sweep.events
    assert sweep.image.shape == (3, 260, 346) and sweep.image.dtype == torch.float32
    assert (events.height, events.width) == (260, 346)
    assert len(events) == stats["n_events"]
    assert float((events.p == 1).double().mean()) == pytest.approx(stats["on_fraction"], abs=1e-9)
    assert (int(events.t_us[0]), int(events.t_us[-1])) == (stats["first_event_us"], stats["last_event_us"])
    assert sweep.schedule == FocusSchedule(0, sweep_end_us, 0.3, 5.0) and sweep.image_time_us == 0
    assert sweep.aif.shape == (3, 260, 346) and sweep.depth_m.shape == (1, 260, 346)
    assert float(sweep.depth_m.min()) == pytest.approx(stats["depth_min_m"], rel=1e-6)
    assert float(sweep.depth_m.max()) == pytest.approx(stats["depth_max_m"], rel=1e-6)
    raw = iio.imread(SAMPLES / "blurry" / f"{name}.png")  # HWC uint8 RGB
    assert torch.equal(sweep.image, torch.from_numpy(raw).permute(2, 0, 1).float() / 255)
    stack = EventFocalStack.from_events(events, 0, sweep_end_us, 32)
    assert float(stack.cumulative[-1].sum()) == stats["n_on"] - stats["n_off"]


# ---------------------------------------------------------------------------------- broken captures
META = {"width": 5, "height": 3, "sweep_start_us": 0, "sweep_end_us": 100, "focus_start_m": 0.3,
        "focus_end_m": 5.0, "focus_schedule": "linear_in_diopters", "image_time_us": 0}


def make_capture(root: Path, image: np.ndarray, events: np.ndarray = ROWS, meta: dict | None = META,
                 name: str = "c") -> Path:
    for folder in ("blurry", "events", "meta", "aif", "depth"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    iio.imwrite(root / "blurry" / f"{name}.png", image)
    np.save(root / "events" / f"{name}.npy", events)
    if meta is not None:
        (root / "meta" / f"{name}.json").write_text(json.dumps(meta))
    return root


def rgb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (3, 5, 3), dtype=np.uint8)


def test_capture_grey_rgba_and_16_bit(tmp_path: Path) -> None:
    grey = np.arange(15, dtype=np.uint8).reshape(3, 5) * 17
    sweep = read_capture(make_capture(tmp_path / "g", grey), "c")
    assert sweep.image.shape == (3, 3, 5)
    for channel in range(3):
        np.testing.assert_array_equal(sweep.image[channel].numpy(), grey / np.float32(255))
    colour = rgb()
    rgba = np.concatenate([colour, np.full((3, 5, 1), 7, np.uint8)], axis=2)
    sweep = read_capture(make_capture(tmp_path / "a", rgba), "c")
    np.testing.assert_array_equal(sweep.image.permute(1, 2, 0).numpy(), colour / np.float32(255))
    deep = np.full((3, 5), 65535, np.uint16)
    assert float(read_capture(make_capture(tmp_path / "d", deep), "c").image.min()) == 1.0


def test_capture_schedule_sources(tmp_path: Path) -> None:
    root = make_capture(tmp_path, rgb(), meta=None)
    with pytest.raises(CaptureError, match=r"meta/c\.json: not found.*schedule="):
        read_capture(root, "c")
    schedule = FocusSchedule(2, 200, 0.5, 2.0)
    sweep = read_capture(root, "c", schedule=schedule)
    assert sweep.schedule == schedule and sweep.image_time_us == 2
    with_meta = make_capture(tmp_path / "m", rgb(), meta={**META, "image_time_us": 3})
    assert read_capture(with_meta, "c").schedule == FocusSchedule(0, 100, 0.3, 5.0)
    sweep = read_capture(with_meta, "c", schedule=schedule)  # an explicit schedule wins over meta
    assert sweep.schedule == schedule and sweep.image_time_us == 3
    with pytest.raises(SweepError, match=r"c: the frame was taken at 3 µs, outside its sweep \[5, 200\] µs"):
        read_capture(with_meta, "c", schedule=FocusSchedule(5, 200, 0.5, 2.0))


@pytest.mark.parametrize(("change", "message"), [
    ({"focus_schedule": "linear_in_metres"}, "focus_schedule 'linear_in_metres' is not supported"),
    ({"sweep_end_us": None}, "'sweep_end_us' must be a whole number"),
    ({"focus_end_m": 0.1}, "bad sweep schedule"),
    ({"width": 6}, r"says 3x6 \(HxW\) but .*blurry/c\.png is 3x5"),
    ({"image_time_us": 150}, r"image_time_us 150 lies outside the sweep \[0, 100\] µs"),
])
def test_capture_bad_meta(tmp_path: Path, change: dict, message: str) -> None:
    root = make_capture(tmp_path, rgb(), meta={**META, **change})
    with pytest.raises(CaptureError, match=message) as info:
        read_capture(root, "c")
    assert "meta/c.json" in str(info.value)


@pytest.mark.parametrize("key", ["sweep_start_us", "sweep_end_us", "image_time_us", "focus_start_m", "focus_end_m"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 1e300, 10**30, True, "0.5"])
def test_capture_meta_bad_numbers_name_file_and_key(tmp_path: Path, key: str, value) -> None:
    root = make_capture(tmp_path, rgb(), meta={**META, key: value})  # json.dumps writes NaN / Infinity
    with pytest.raises(CaptureError, match=rf"meta/c\.json: '{key}' must be") as info:
        read_capture(root, "c")
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_capture_meta_missing_key_and_invalid_json(tmp_path: Path) -> None:
    root = make_capture(tmp_path, rgb(), meta={k: v for k, v in META.items() if k != "image_time_us"})
    with pytest.raises(CaptureError, match=r"c\.json: missing key\(s\) \['image_time_us'\]"):
        read_capture(root, "c")
    (root / "meta" / "c.json").write_text("{not json")
    with pytest.raises(CaptureError, match=r"c\.json: not valid JSON"):
        read_capture(root, "c")


def test_capture_size_mismatch_names_both_files(tmp_path: Path) -> None:
    events = ROWS.copy()
    events[2, 1] = 5  # x = 5 on a 5-pixel-wide image
    root = make_capture(tmp_path, rgb(), events=events)
    with pytest.raises(EventFileError, match=r"events/c\.npy does not fit the image .*blurry/c\.png"):
        read_capture(root, "c")


def test_capture_ground_truth_checks(tmp_path: Path) -> None:
    root = make_capture(tmp_path, rgb())
    iio.imwrite(root / "aif" / "c.png", np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(CaptureError, match=r"aif/c\.png.*blurry/c\.png"):
        read_capture(root, "c")
    iio.imwrite(root / "aif" / "c.png", rgb(1))
    np.save(root / "depth" / "c.npy", np.ones((5, 3), np.float32))
    with pytest.raises(CaptureError, match=r"depth/c\.npy: depth must be \(3, 5\)"):
        read_capture(root, "c")
    np.save(root / "depth" / "c.npy", -np.ones((3, 5), np.float32))
    with pytest.raises(CaptureError, match=r"depth/c\.npy: depth must be positive"):
        read_capture(root, "c")
    depth = np.full((3, 5), 2.5, np.float32)
    depth[0, 0] = np.inf
    np.save(root / "depth" / "c.npy", depth)
    sweep = read_capture(root, "c")
    assert sweep.depth_m.shape == (1, 3, 5) and float(sweep.depth_m[0, 1, 1]) == 2.5
    np.testing.assert_array_equal(sweep.aif.permute(1, 2, 0).numpy(), rgb(1) / np.float32(255))


def test_capture_corrupt_image_and_folders(tmp_path: Path) -> None:
    root = make_capture(tmp_path / "x", rgb())
    (root / "blurry" / "c.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CaptureError, match=r"blurry/c\.png: not a readable image"):
        read_capture(root, "c")
    with pytest.raises(MissingFileError, match=r"blurry/zz\.png"):
        read_capture(root, "zz")
    (root / "blurry" / "only_image.png").write_bytes(b"")
    np.save(root / "events" / "only_events.npy", ROWS)
    assert list_captures(root) == ["c"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match=r"missing sub-folder\(s\) \['blurry', 'events'\]"):
        list_captures(tmp_path / "empty")


# ---------------------------------------------------------------------------------- Sweep.meta
def test_capture_meta_records_source_files_polarity_and_json(tmp_path: Path) -> None:
    meta = {**META, "image_time_us": 3, "notes": "tiny", "simulator": {"polarity": "p=1 ON"}}
    root = make_capture(tmp_path / "cap", rgb(), meta=meta)
    iio.imwrite(root / "aif" / "c.png", rgb(1))
    np.save(root / "depth" / "c.npy", np.full((3, 5), 2.0, np.float32))
    sweep = read_capture(root, "c")
    assert sweep.meta["source"] == "capture"
    assert (sweep.meta["root"], sweep.meta["name"]) == (str(root), "c")
    assert sweep.meta["files"] == {
        "image": str(root / "blurry" / "c.png"), "events": str(root / "events" / "c.npy"),
        "meta": str(root / "meta" / "c.json"), "aif": str(root / "aif" / "c.png"),
        "depth": str(root / "depth" / "c.npy"),
    }
    assert "p=1 ON" in sweep.meta["polarity"] and sweep.meta["flip_polarity"] is False
    assert (sweep.meta["height"], sweep.meta["width"]) == (3, 5)
    assert sweep.meta["schedule_source"] == "meta"
    assert sweep.meta["capture_meta"] == meta
    json.dumps(sweep.meta)  # serialisable: goes into caches and run logs
    assert torch.equal(sweep.events.p, torch.tensor([1, -1, 1, -1], dtype=sweep.events.p.dtype))

    bare = make_capture(tmp_path / "bare", rgb(), meta=None)  # no meta, no ground truth
    schedule = FocusSchedule(0, 100, 0.3, 5.0)
    sweep = read_capture(bare, "c", schedule=schedule)
    assert sweep.meta["files"] == {"image": str(bare / "blurry" / "c.png"), "events": str(bare / "events" / "c.npy")}
    assert sweep.meta["capture_meta"] is None and sweep.meta["schedule_source"] == "argument"


def test_capture_meta_must_be_a_json_object(tmp_path: Path) -> None:
    root = make_capture(tmp_path, rgb())
    (root / "meta" / "c.json").write_text("[1, 2]")
    with pytest.raises(CaptureError, match=r"c\.json: the top level must be a JSON object"):
        read_capture(root, "c")
