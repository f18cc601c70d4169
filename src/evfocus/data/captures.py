"""Capture folders → Sweep: the reference release's layout, extended with ground truth and metadata.

A capture ``<name>`` of a folder ``ROOT`` (docs/architecture.md, "Data contracts"):

- ``blurry/<name>.png``: the conventional frame (8- or 16-bit, grey or RGB(A));
- ``events/<name>.npy``: (N, 4) ``t_us, x, y, p`` with p 1 = ON (``events.io.read_events_npy``);
- ``meta/<name>.json`` (optional with an explicit schedule): sweep start/end µs, focus start/end m,
  ``focus_schedule: linear_in_diopters``, the frame's time;
- ``aif/<name>.png`` and ``depth/<name>.npy`` (optional): ground-truth all-in-focus image and depth in metres.

Every error names the file and the problem (``CaptureError``, an ``EventFileError``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from evfocus.events.io import INT64_LIMIT, EventFileError, PathLike, load_npy, read_events_npy, require_file
from evfocus.optics import FocusSchedule, OpticsError
from evfocus.sweep import Sweep

LINEAR_IN_DIOPTERS = "linear_in_diopters"
CAPTURE_POLARITY = "p=1 ON (brightness increase) -> +1, p=0 OFF -> -1; +/-1 taken as signed; not flipped"


class CaptureError(EventFileError):
    """A capture folder whose parts are missing or disagree (names the files involved)."""


def list_captures(root: PathLike) -> list[str]:
    """Names having both ``blurry/<name>.png`` and ``events/<name>.npy``, sorted.

    Names present in only one of the two folders are not captures and are skipped.
    """
    root = Path(root)
    missing = [folder for folder in ("blurry", "events") if not (root / folder).is_dir()]
    if missing:
        raise CaptureError(f"{root}: not a capture folder, missing sub-folder(s) {missing} "
                           "(expected blurry/<name>.png + events/<name>.npy)")
    images = {path.stem for path in (root / "blurry").glob("*.png")}
    return sorted(name for name in images if (root / "events" / f"{name}.npy").is_file())


def _read_image(path: Path) -> Tensor:
    """PNG → float32 (3,H,W) in [0,1]: grey is repeated to RGB, alpha is dropped."""
    require_file(path)
    try:
        pixels = iio.imread(path, plugin="pillow")  # named: a broken PNG must not be tried as DICOM
    except Exception as error:  # pillow raises several types for broken files
        raise CaptureError(f"{path}: not a readable image: {error}") from error
    if pixels.dtype not in (np.uint8, np.uint16):
        raise CaptureError(f"{path}: expected 8- or 16-bit pixels, got dtype {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise CaptureError(f"{path}: expected a grey, grey+alpha, RGB or RGBA image, "
                           f"got shape {pixels.shape}")
    colour = pixels[..., :3] if pixels.shape[2] >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    scale = float(np.iinfo(pixels.dtype).max)
    return torch.from_numpy(colour.astype(np.float32) / scale).permute(2, 0, 1).contiguous()


def _read_depth(path: Path, height: int, width: int) -> Tensor:
    """(H,W) or (1,H,W) metres → (1,H,W) float32; +inf (no surface) allowed; NaN, <= 0 and finite values
    beyond float32 (which the cast would silently turn into +inf, "no surface") not."""
    depth = load_npy(path)
    if depth.shape not in ((height, width), (1, height, width)):
        raise CaptureError(f"{path}: depth must be ({height}, {width}) like the image, got {depth.shape}")
    if depth.dtype.kind not in "fiu":
        raise CaptureError(f"{path}: depth must be numeric metres, got dtype {depth.dtype}")
    too_large = np.isfinite(depth) & (depth > np.finfo(np.float32).max)  # compared before the cast
    if np.isnan(depth).any() or (depth <= 0).any() or too_large.any():
        raise CaptureError(f"{path}: depth must be positive metres (+inf: no surface), found NaN, values <= 0 "
                           "or values beyond float32")
    return torch.from_numpy(np.array(depth, dtype=np.float32).reshape(1, height, width))


def _meta_number(meta: dict, key: str, path: Path, whole_us: bool = False) -> float:
    """``meta[key]``: a JSON number (not a bool or string), finite (Python's JSON reader accepts NaN and
    ±Infinity) and within int64, since sweep times become int64 tensors; with ``whole_us``, an integer."""
    value = meta[key]
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not abs(value) < INT64_LIMIT  # written so that NaN fails too
            or (whole_us and value != int(value))):
        kind = "a whole number of µs" if whole_us else "a finite number"
        raise CaptureError(f"{path}: '{key}' must be {kind} (|value| < 2^63), got {value!r}")
    return value


def _read_meta(path: Path, image_path: Path, height: int, width: int) -> tuple[FocusSchedule, int, dict[str, Any]]:
    """``meta/<name>.json`` → (schedule, image_time_us, the parsed JSON), checked against the image size."""
    try:
        meta = json.loads(path.read_text())
    except (ValueError, RecursionError) as error:  # bad JSON or UTF-8, a 5000-digit int, nesting beyond the stack
        raise CaptureError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(meta, dict):
        raise CaptureError(f"{path}: the top level must be a JSON object, got {type(meta).__name__}")
    required = ("sweep_start_us", "sweep_end_us", "focus_start_m", "focus_end_m", "focus_schedule",
                "image_time_us")
    missing = [key for key in required if key not in meta]
    if missing:
        raise CaptureError(f"{path}: missing key(s) {missing}")
    if meta["focus_schedule"] != LINEAR_IN_DIOPTERS:
        raise CaptureError(f"{path}: focus_schedule {meta['focus_schedule']!r} is not supported "
                           f"(only {LINEAR_IN_DIOPTERS!r})")
    size = (meta.get("height", height), meta.get("width", width))
    if size != (height, width):
        raise CaptureError(f"{path}: says {size[0]}x{size[1]} (HxW) but {image_path} is {height}x{width}")
    start_us, end_us, image_time_us = (int(_meta_number(meta, key, path, whole_us=True))
                                       for key in ("sweep_start_us", "sweep_end_us", "image_time_us"))
    near_m, far_m = (float(_meta_number(meta, key, path)) for key in ("focus_start_m", "focus_end_m"))
    try:
        schedule = FocusSchedule(start_us, end_us, near_m, far_m)
    except OpticsError as error:
        raise CaptureError(f"{path}: bad sweep schedule: {error}") from error
    if not start_us <= image_time_us <= end_us:
        raise CaptureError(f"{path}: image_time_us {image_time_us} lies outside the sweep [{start_us}, {end_us}] µs")
    return schedule, image_time_us, meta


def read_capture(root: PathLike, name: str, schedule: FocusSchedule | None = None) -> Sweep:
    """One capture of the reference layout (+ optional ground truth and meta) as a Sweep.

    Reads ``blurry/<name>.png`` and ``events/<name>.npy`` (polarity as ``read_events_npy``:
    1 = ON), plus when present ``aif/<name>.png``, ``depth/<name>.npy`` and
    ``meta/<name>.json``. The schedule comes from ``schedule`` if given (it wins over meta),
    else from meta; the frame time from meta, else the sweep start (where the reference layout
    captures the blurry frame). Without meta and without ``schedule`` this raises.

    ``Sweep.meta`` records where the sweep came from (all JSON-serialisable): ``source``
    (``"capture"``), ``root``, ``name``, ``files`` (role → path of every file read: ``image``,
    ``events`` and, when present, ``meta``, ``aif``, ``depth``), ``polarity`` (the convention
    assumed), ``flip_polarity`` (False), ``height``/``width`` (the sensor = image size),
    ``schedule_source`` (``"meta"`` or ``"argument"``) and ``capture_meta``: the parsed
    ``meta/<name>.json``, or None without one.
    """
    root = Path(root)
    image_path, events_path = root / "blurry" / f"{name}.png", root / "events" / f"{name}.npy"
    meta_path = root / "meta" / f"{name}.json"
    image = _read_image(image_path)
    height, width = image.shape[-2:]
    files = {"image": str(image_path), "events": str(events_path)}
    capture_meta: dict[str, Any] | None = None
    schedule_source = "argument" if schedule is not None else "meta"
    if meta_path.is_file():
        meta_schedule, image_time_us, capture_meta = _read_meta(meta_path, image_path, height, width)
        files["meta"] = str(meta_path)
        schedule = meta_schedule if schedule is None else schedule
    elif schedule is None:
        raise CaptureError(f"{meta_path}: not found; without meta, pass read_capture(..., schedule=...)")
    else:
        image_time_us = schedule.t_start_us
    events = read_events_npy(events_path, width, height, size_source=f"the image {image_path}")
    aif_path, depth_path = root / "aif" / f"{name}.png", root / "depth" / f"{name}.npy"
    aif = _read_image(aif_path) if aif_path.is_file() else None
    if aif is not None and aif.shape != image.shape:
        raise CaptureError(f"{aif_path} is {tuple(aif.shape)} but {image_path} is {tuple(image.shape)}")
    depth_m = _read_depth(depth_path, height, width) if depth_path.is_file() else None
    if aif is not None:
        files["aif"] = str(aif_path)
    if depth_m is not None:
        files["depth"] = str(depth_path)
    meta = {"source": "capture", "root": str(root), "name": name, "files": files,
            "polarity": CAPTURE_POLARITY, "flip_polarity": False, "height": int(height), "width": int(width),
            "schedule_source": schedule_source, "capture_meta": capture_meta}
    return Sweep(name=name, image=image, image_time_us=image_time_us, events=events, schedule=schedule,
                 aif=aif, depth_m=depth_m, meta=meta)
