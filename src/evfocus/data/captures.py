"""Capture folders and single event files → Sweep: the reference release's layout, extended.

A capture ``<name>`` of a folder ``ROOT`` (docs/architecture.md, "Data contracts"):

- ``blurry/<name>.png``: the conventional frame (8- or 16-bit, grey or RGB(A));
- ``events/<name>.<ext>``: the events in any format ``events.formats.read_events`` reads, detected by content
  (then suffix; meta ``event_format`` or the caller's ``event_format`` decide instead): the reference's (N, 4)
  ``.npy``, .npz, .txt, E2VID/DSEC/Prophesee HDF5, AEDAT 4.0, Prophesee RAW/DAT;
- ``meta/<name>.json`` (or ``.yaml``; optional with an explicit schedule): the keys of ``capture_meta``:
  sweep start/end µs, focus start/end m, ``focus_schedule: linear_in_diopters``, the frame's time, and optionally
  ``polarity_flip``, ``sensor``, ``registration``, ``crop``, ``event_format``, ``event_time_unit``, ``event_response``;
- ``aif/<name>.png`` and ``depth/<name>.npy`` (optional): ground-truth all-in-focus image and depth in metres,
  on the frame's grid (registered and cropped with it).

``read_event_file`` reads the same from one event file, a frame and a meta mapping (``src/aif.py --image``).
Every error names the file (and meta key) and the problem (``CaptureError``, an ``EventFileError``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from evfocus.data.capture_geometry import crop_events, crop_image, warp_to_sensor
from evfocus.data.capture_meta import META_SUFFIXES, CaptureError, CaptureMeta, load_meta_file, parse_capture_meta
from evfocus.events.formats import detect_format, read_events
from evfocus.events.io import EventFileError, MissingFileError, PathLike, load_npy, require_file
from evfocus.events.stream import EventStream
from evfocus.optics import FocusSchedule
from evfocus.sweep import Sweep

__all__ = ["CaptureError", "list_captures", "read_capture", "read_event_file"]
POLARITY = "p=1 ON (brightness increase) -> +1, p=0 OFF -> -1 (each format's ON -> +1); +/-1 taken as signed"


@dataclass(frozen=True)
class CaptureFiles:
    """The files of one capture; ``meta``, ``aif`` and ``depth`` are None where absent."""

    image: Path
    events: Path
    meta: Path | None = None
    aif: Path | None = None
    depth: Path | None = None


def _by_stem(folder: Path, name: str) -> list[Path]:
    """Files of ``folder`` named ``<name>.<one suffix>``."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.stem == name and path.suffix and path.is_file())


def list_captures(root: PathLike) -> list[str]:
    """Names having both ``blurry/<name>.png`` and an ``events/<name>.<ext>`` file, sorted.

    Names present in only one of the two folders are not captures and are skipped.
    """
    root = Path(root)
    missing = [folder for folder in ("blurry", "events") if not (root / folder).is_dir()]
    if missing:
        raise CaptureError(f"{root}: not a capture folder, missing sub-folder(s) {missing} "
                           "(expected blurry/<name>.png + events/<name>.<ext>)")
    images = {path.stem for path in (root / "blurry").glob("*.png")}
    events = {path.stem for path in (root / "events").iterdir() if path.suffix and path.is_file()}
    return sorted(images & events)


def _one(candidates: list[Path], what: str) -> Path | None:
    if len(candidates) > 1:
        raise CaptureError(f"{candidates[0].parent}: {len(candidates)} {what} files for one capture, "
                           f"{[path.name for path in candidates]}: keep one")
    return candidates[0] if candidates else None


def capture_files(root: PathLike, name: str) -> CaptureFiles:
    """The files of capture ``name`` of folder ``root``; the frame and one event file must exist."""
    root = Path(root)
    image = root / "blurry" / f"{name}.png"
    require_file(image)
    events = _one(_by_stem(root / "events", name), "event")
    if events is None:
        raise MissingFileError(f"{root / 'events' / name}.<ext>: no event file for {image}")
    metas = [path for path in _by_stem(root / "meta", name) if path.suffix.lower() in META_SUFFIXES]
    aif, depth = root / "aif" / f"{name}.png", root / "depth" / f"{name}.npy"
    return CaptureFiles(image, events, _one(metas, "meta"), aif if aif.is_file() else None,
                        depth if depth.is_file() else None)


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


def _check_frame_size(meta: dict[str, Any], where: str, image_path: Path, height: int, width: int) -> None:
    """The optional ``width``/``height`` keys describe the frame: a mismatch means the wrong files were paired."""
    size = (meta.get("height", height), meta.get("width", width))
    if size != (height, width):
        raise CaptureError(f"{where}: says {size[0]}x{size[1]} (HxW) but {image_path} is {height}x{width}")


def _read_events(path: Path, meta: CaptureMeta, where: str, event_format: str | None,
                 size: tuple[int, int] | None, size_source: str) -> tuple[EventStream, str]:
    """The events and their format's name; errors other than a missing file say where the sensor size came from."""
    name = event_format or meta.event_format or detect_format(path)
    width, height = size or (None, None)
    try:
        events = read_events(path, name, width=width, height=height, flip_polarity=meta.polarity_flip,
                             time_unit=meta.event_time_unit)
    except MissingFileError:
        raise
    except EventFileError as error:
        raise CaptureError(f"{error} [the capture's sensor: {size_source}; meta {where}]") from error
    return events, name


def _sensor_size(meta: CaptureMeta, where: str, image_path: Path, height: int, width: int
                 ) -> tuple[tuple[int, int] | None, str]:
    """(width, height) the events must have, or None (the event file says), and where that came from."""
    if meta.sensor is not None:
        if meta.registration is None and meta.sensor != (width, height):
            raise CaptureError(f"{where}: 'sensor' is {meta.sensor[1]}x{meta.sensor[0]} (HxW) but {image_path} is "
                               f"{height}x{width}; a frame off the sensor grid needs 'registration'")
        return meta.sensor, f"{meta.sensor[0]}x{meta.sensor[1]} (WxH) from 'sensor' in {where}"
    if meta.registration is None:
        return (width, height), f"{width}x{height} (WxH), the size of the image {image_path}"
    return None, f"the event file's own size (with 'registration' and no 'sensor' in {where})"


def _assemble(name: str, files: CaptureFiles, image: Tensor, meta: CaptureMeta, raw_meta: dict[str, Any] | None,
              where: str, schedule_source: str, root: Path, event_format: str | None) -> Sweep:
    """Events read, frame and ground truth registered onto the sensor grid, all cropped alike: the Sweep."""
    height, width = image.shape[-2:]
    _check_frame_size(raw_meta or {}, where, files.image, height, width)
    size, size_source = _sensor_size(meta, where, files.image, height, width)
    events, format_name = _read_events(files.events, meta, where, event_format, size, size_source)
    aif = _read_image(files.aif) if files.aif is not None else None
    if aif is not None and aif.shape != image.shape:
        raise CaptureError(f"{files.aif} is {tuple(aif.shape)} but {files.image} is {tuple(image.shape)}")
    depth_m = _read_depth(files.depth, height, width) if files.depth is not None else None
    if meta.registration is not None:
        sensor = (events.width, events.height)
        image, aif, depth_m = (None if grid is None else warp_to_sensor(grid, meta.registration, sensor, is_depth)
                               for grid, is_depth in ((image, False), (aif, False), (depth_m, True)))
    sensor = {"width": events.width, "height": events.height}
    if meta.crop is not None:
        top, left, crop_height, crop_width = meta.crop
        if top + crop_height > events.height or left + crop_width > events.width:
            raise CaptureError(f"{where}: 'crop' {list(meta.crop)} (top, left, height, width) reaches beyond the "
                               f"{events.height}x{events.width} (HxW) sensor")
        events = crop_events(events, meta.crop)
        image, aif, depth_m = (None if grid is None else crop_image(grid, meta.crop) for grid in (image, aif, depth_m))
    files_read = {role: str(path) for role, path in vars(files).items() if path is not None}
    flip = "negated (meta 'polarity_flip': true)" if meta.polarity_flip else "not flipped"
    info = {"source": "capture", "root": str(root), "name": name, "files": files_read,
            "polarity": f"{POLARITY}; {flip}", "flip_polarity": meta.polarity_flip, "event_format": format_name,
            "height": int(image.shape[-2]), "width": int(image.shape[-1]),
            "sensor": sensor,
            "crop": None if meta.crop is None else list(meta.crop), "registration": meta.registration,
            "schedule_source": schedule_source, "event_response": meta.event_response, "capture_meta": raw_meta}
    return Sweep(name=name, image=image, image_time_us=meta.image_time_us, events=events, schedule=meta.schedule,
                 aif=aif, depth_m=depth_m, meta=info)


def read_capture(root: PathLike, name: str, schedule: FocusSchedule | None = None,
                 event_format: str | None = None) -> Sweep:
    """One capture of a folder (``capture_files``) as a Sweep.

    The schedule comes from ``schedule`` if given (it wins over meta), else from meta; the frame time from
    meta, else the sweep start (where the reference layout captures the blurry frame). Without meta and
    without ``schedule`` this raises. ``event_format`` names the events' format (it wins over meta's).

    ``Sweep.meta`` records where the sweep came from (all JSON-serialisable): ``source`` (``"capture"``),
    ``root``, ``name``, ``files`` (role → path of every file read: ``image``, ``events`` and, when present,
    ``meta``, ``aif``, ``depth``), ``polarity`` (the convention assumed), ``flip_polarity``, ``event_format``,
    ``height``/``width`` (the sweep's, after registration and crop), ``sensor``, ``crop``, ``registration``,
    ``schedule_source`` (``"meta"`` or ``"argument"``) and ``capture_meta``: the parsed meta file, or None.
    """
    root = Path(root)
    files = capture_files(root, name)
    image = _read_image(files.image)
    if files.meta is not None:
        raw_meta = load_meta_file(files.meta)
        meta = parse_capture_meta(raw_meta, str(files.meta))
        meta = meta if schedule is None else replace(meta, schedule=schedule)
    elif schedule is None:
        raise CaptureError(f"{root / 'meta' / name}.json: not found; without meta, pass "
                           "read_capture(..., schedule=...)")
    else:
        raw_meta, meta = None, CaptureMeta(schedule, schedule.t_start_us)
    where = str(files.meta or root / "meta" / f"{name}.json")
    return _assemble(name, files, image, meta, raw_meta, where, "meta" if schedule is None else "argument", root,
                     event_format)


def read_event_file(events: PathLike, image: PathLike, meta: dict[str, Any], where: str,
                    meta_file: Path | None = None, event_format: str | None = None) -> Sweep:
    """One event file + its frame + meta (read from ``meta_file`` and/or flags; ``where`` names them for errors)
    as a Sweep named after the event file. The meta is ``capture_meta``'s, leniently: the schedule defaults to
    linear in diopters and the frame's time to the sweep start."""
    events, image = Path(events), Path(image)
    require_file(events)
    frame = _read_image(image)
    parsed = parse_capture_meta(meta, where, lenient=True)
    files = CaptureFiles(image, events, meta_file)
    return _assemble(events.stem, files, frame, parsed, meta, where, "meta", events.parent, event_format)
