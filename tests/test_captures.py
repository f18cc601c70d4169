"""Capture folders (data.captures) against hand-made folders and the independent efs_dev statistics."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from samples import shared_samples

from evfocus.data.captures import CaptureError, list_captures, read_capture
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.io import EventFileError, MissingFileError
from evfocus.optics import FocusSchedule
from evfocus.sweep import SweepError

SAMPLES = shared_samples() / "efs_dev"
ROWS = np.array([[10, 0, 0, 1], [12, 3, 1, 0], [12, 4, 2, 1], [30, 1, 2, 0]], dtype=np.int32)


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
