"""Capture folders (data.captures) against hand-made folders and the independent efs_dev statistics."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from event_files import EVT3_HEADER, dat_bytes, evt3_words, raw_bytes
from samples import shared_samples

from evfocus.data.captures import CaptureError, list_captures, read_capture, read_event_file
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
    message = r"events/c\.npy: .x. spans \[0, 5\] but the sensor is 5x3.*the size of the image .*blurry/c\.png"
    with pytest.raises(EventFileError, match=message):
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
    assert sweep.event_response == "gamma"  # the default: events simulated from the stored frames
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


# ---------------------------------------------------------------------------------- other formats, meta keys
def write_events_as(root: Path, name: str, suffix: str, events: np.ndarray = ROWS) -> Path:
    """``ROWS`` rewritten as events/<name><suffix> (replacing the .npy)."""
    (root / "events" / f"{name}.npy").unlink()
    path = root / "events" / f"{name}{suffix}"
    t, x, y, p = (events[:, i].astype(np.int64) for i in range(4))
    if suffix == ".txt":
        path.write_text("5 3\n" + "\n".join(f"{a} {b} {c} {d}" for a, b, c, d in events.tolist()))
    elif suffix == ".npz":
        np.savez(path, t=t, x=x, y=y, p=p)
    elif suffix == ".raw":
        path.write_bytes(raw_bytes(EVT3_HEADER, evt3_words(t, x, y, p), 5, 3))
    elif suffix == ".dat":
        path.write_bytes(dat_bytes(t, x, y, p, 5, 3))
    return path


@pytest.mark.parametrize("suffix", [".txt", ".npz", ".raw", ".dat"])
def test_capture_events_in_other_formats_read_like_npy(tmp_path: Path, suffix: str) -> None:
    reference = read_capture(make_capture(tmp_path / "npy", rgb()), "c")
    root = make_capture(tmp_path / "other", rgb(), meta={**META, **({"event_time_unit": "us"} if suffix == ".npz"
                                                                   else {})})
    events_path = write_events_as(root, "c", suffix)
    assert list_captures(root) == ["c"]
    sweep = read_capture(root, "c")
    for column in ("t_us", "x", "y", "p"):
        assert torch.equal(getattr(sweep.events, column), getattr(reference.events, column))
    assert sweep.meta["files"]["events"] == str(events_path)
    assert sweep.meta["event_format"] == {".raw": "evt3"}.get(suffix, suffix[1:])


def test_capture_polarity_flip_and_format_override(tmp_path: Path) -> None:
    root = make_capture(tmp_path, rgb(), meta={**META, "polarity_flip": True})
    sweep = read_capture(root, "c")
    assert sweep.events.p.tolist() == [-1, 1, -1, 1] and sweep.meta["flip_polarity"] is True
    assert "negated" in sweep.meta["polarity"]
    path = write_events_as(root, "c", ".txt")
    path.rename(path.with_suffix(".events"))  # a suffix nothing knows; the content still tells
    assert read_capture(root, "c").meta["event_format"] == "txt"
    with pytest.raises(EventFileError, match=r"c\.events.*npz"):
        read_capture(root, "c", event_format="npz")
    root_yaml = make_capture(tmp_path / "y", rgb(), meta=None)
    yaml_lines = [f"{key}: {value}" for key, value in {**META, "event_format": "dat"}.items()]
    (root_yaml / "meta" / "c.yaml").write_text("\n".join(yaml_lines))
    with pytest.raises(EventFileError, match=r"events/c\.npy"):
        read_capture(root_yaml, "c")


@pytest.mark.parametrize(("change", "message"), [
    ({"polarity_flip": "yes"}, "'polarity_flip' must be true or false"),
    ({"sensor": [5]}, r"'sensor' must be \[width, height\]"),
    ({"sensor": {"width": 0, "height": 3}}, r"'sensor.width' must be a whole number of pixels"),
    ({"sensor": [6, 3]}, r"'sensor' is 3x6 \(HxW\) but .*blurry/c\.png is 3x5.*'registration'"),
    ({"crop": [0, 0, 4, 5]}, r"'crop' \[0, 0, 4, 5\] .* reaches beyond the 3x5"),
    ({"crop": {"top": 0, "left": -1, "height": 1, "width": 1}}, r"'crop.left' must be a whole number"),
    ({"registration": [[1, 0, 0]]}, r"'registration' must be a 2x3 affine or 3x3 homography"),
    ({"registration": [[1, 0, float("nan")], [0, 1, 0]]}, r"'registration' must be"),
    ({"event_format": "mp4"}, r"'event_format' must be one of \['npy'"),
    ({"event_time_unit": "fortnight"}, r"'event_time_unit' must be one of"),
    ({"event_response": "log"}, r"'event_response' must be one of \['gamma', 'linear'\], got 'log'"),
])
def test_capture_bad_new_meta_keys_name_file_and_key(tmp_path: Path, change: dict, message: str) -> None:
    root = make_capture(tmp_path, rgb(), meta={**META, **change})
    with pytest.raises(CaptureError, match=message) as info:
        read_capture(root, "c")
    assert "meta/c.json" in str(info.value)


def test_capture_crop_events_and_frame_alike(tmp_path: Path) -> None:
    root = make_capture(tmp_path, rgb(), meta={**META, "crop": [1, 2, 2, 3]})
    iio.imwrite(root / "aif" / "c.png", rgb(1))
    np.save(root / "depth" / "c.npy", np.arange(15, dtype=np.float32).reshape(3, 5) + 1)
    sweep = read_capture(root, "c")
    assert sweep.image.shape == (3, 2, 3) and (sweep.events.width, sweep.events.height) == (3, 2)
    np.testing.assert_array_equal(sweep.image.permute(1, 2, 0).numpy(), rgb()[1:3, 2:5] / np.float32(255))
    np.testing.assert_array_equal(sweep.depth_m[0].numpy(), np.arange(15).reshape(3, 5)[1:3, 2:5] + 1)
    assert sweep.aif.shape == (3, 2, 3)
    # ROWS: (t, x, y, p) = (10,0,0,1) (12,3,1,0) (12,4,2,1) (30,1,2,0); inside x 2..4, y 1..2: the 2nd and 3rd
    assert sweep.events.t_us.tolist() == [12, 12] and sweep.events.x.tolist() == [1, 2]
    assert sweep.events.y.tolist() == [0, 1] and sweep.meta["crop"] == [1, 2, 2, 3]
    assert sweep.meta["sensor"] == {"width": 5, "height": 3}


@pytest.mark.parametrize("matrix", [[[1, 0, 1], [0, 1, 0]], [[1, 0, 1], [0, 1, 0], [0, 0, 1]]])
def test_capture_registration_warps_frame_and_truth_onto_the_sensor(tmp_path: Path, matrix) -> None:
    """A frame camera one pixel left of a 6-wide sensor: frame column i is sensor column i + 1."""
    grey = (np.arange(15, dtype=np.uint8).reshape(3, 5) + 1) * 10
    root = make_capture(tmp_path, grey, meta={**META, "sensor": {"width": 6, "height": 3}, "registration": matrix})
    np.save(root / "depth" / "c.npy", np.full((3, 5), 2.0, np.float32))
    events = ROWS.copy()
    events[0, 1] = 5  # x = 5 exists on the 6-wide sensor only
    np.save(root / "events" / "c.npy", events)
    sweep = read_capture(root, "c")
    assert sweep.image.shape == (3, 3, 6) and sweep.events.width == 6
    np.testing.assert_allclose(sweep.image[0, :, 1:].numpy(), grey / 255, atol=1e-6)
    assert float(sweep.image[:, :, 0].abs().max()) == 0
    assert torch.isinf(sweep.depth_m[0, :, 0]).all() and (sweep.depth_m[0, :, 1:] == 2.0).all()
    assert sweep.meta["registration"] == [[float(v) for v in row] for row in matrix]


def test_capture_with_two_event_files_is_refused(tmp_path: Path) -> None:
    root = make_capture(tmp_path, rgb())
    (root / "events" / "c.npz").write_bytes(b"")
    with pytest.raises(CaptureError, match=r"events: 2 event files for one capture, \['c\.npy', 'c\.npz'\]"):
        read_capture(root, "c")


def test_read_event_file_with_flags_meta(tmp_path: Path) -> None:
    root = make_capture(tmp_path, rgb(), meta=None)
    meta = {"sweep_start_us": 5, "sweep_end_us": 100, "focus_start_m": 0.3, "focus_end_m": 5.0}
    sweep = read_event_file(root / "events" / "c.npy", root / "blurry" / "c.png", meta, "flags")
    assert sweep.name == "c" and sweep.image_time_us == 5 and sweep.schedule == FocusSchedule(5, 100, 0.3, 5.0)
    assert sweep.meta["files"] == {"image": str(root / "blurry" / "c.png"), "events": str(root / "events" / "c.npy")}
    with pytest.raises(CaptureError, match=r"flags: missing key\(s\) \['focus_start_m'\]"):
        read_event_file(root / "events" / "c.npy", root / "blurry" / "c.png",
                        {k: v for k, v in meta.items() if k != "focus_start_m"}, "flags")


def test_capture_event_response_reaches_the_sweep(tmp_path: Path) -> None:
    root = make_capture(tmp_path, rgb(), meta={**META, "event_response": "linear"})
    assert read_capture(root, "c").event_response == "linear"
