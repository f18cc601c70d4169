"""A capture's metadata: the keys, their checks and defaults, from a JSON/YAML file or a dict of flags.

One schema serves capture folders (``meta/<name>.json`` or ``.yaml``) and single event files
(``src/aif.py --input EVENTS --image FRAME`` with a sidecar or ``--sweep-us``/``--focus-m`` flags):

- ``sweep_start_us``, ``sweep_end_us`` (whole µs), ``focus_start_m``, ``focus_end_m`` (metres),
  ``focus_schedule`` (``linear_in_diopters``, the only one), ``image_time_us`` (the frame's moment):
  required, except where the caller supplies defaults (single event files: the schedule is linear in
  diopters and the frame is taken at the sweep start unless said otherwise);
- ``width``, ``height``: the frame's size, checked against the image (``data.captures``);
- ``polarity_flip`` (default **false**): negate every event. Each reader maps its format's ON to +1; a
  recording whose ON/OFF are reversed says ``true``. The reference release's *real* captures need ``true``
  (its simulator had the polarity inverted, so its code negates real events);
- ``sensor``: ``{width, height}`` of the event sensor, for formats that do not store it and for rigs whose
  frame is not on the sensor grid (default: the frame's size, or the event file's own);
- ``registration``: a 2×3 affine or 3×3 homography (nested lists) mapping frame pixels (x, y) to event-sensor
  pixels; the frame (and ground truth) are warped onto the sensor grid (``capture_geometry``), e.g. for a
  beam-splitter rig whose two cameras differ in resolution and alignment;
- ``crop``: ``[top, left, height, width]`` (or a mapping of those keys) in sensor pixels, applied to the events
  and the frame alike;
- ``event_format``: a ``events.formats.FORMATS`` name, when detection should not decide;
  ``event_time_unit``: ``s``/``ms``/``us``/``ns`` for the formats whose time unit is open (npz, txt, E2VID HDF5);
- ``event_response`` (default ``gamma``): what the event pixels respond to, ``gamma`` (the frame's stored values,
  as when events are simulated from the frames) or ``linear`` (linear light, as a photoreceptor whose frame is
  stored sRGB-encoded); the log integration and the contrast self-calibration take (``events.integration``).

Other keys are kept (``Sweep.meta["capture_meta"]``) and ignored. Every error names the file (or the flags)
and the key: ``CaptureError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evfocus.events.checks import INT64_LIMIT, MAX_SENSOR_PX, US_PER_UNIT, EventFileError
from evfocus.events.formats import FORMATS
from evfocus.events.integration import EVENT_RESPONSES
from evfocus.optics import FocusSchedule, OpticsError

LINEAR_IN_DIOPTERS = "linear_in_diopters"
META_SUFFIXES = (".json", ".yaml", ".yml")
SCHEDULE_KEYS = ("sweep_start_us", "sweep_end_us", "focus_start_m", "focus_end_m", "focus_schedule",
                 "image_time_us")


class CaptureError(EventFileError):
    """A capture whose parts are missing or disagree (names the files, and the meta key, involved)."""


@dataclass(frozen=True)
class CaptureMeta:
    """The checked metadata; sizes are (width, height), ``crop`` (top, left, height, width)."""

    schedule: FocusSchedule
    image_time_us: int
    polarity_flip: bool = False
    sensor: tuple[int, int] | None = None
    registration: list[list[float]] | None = None
    crop: tuple[int, int, int, int] | None = None
    event_format: str | None = None
    event_time_unit: str | None = None
    event_response: str = "gamma"


def load_meta_file(path: Path) -> dict[str, Any]:
    """A JSON or YAML (by suffix) mapping; YAML values must be what JSON can hold (it is recorded as JSON)."""
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    try:
        text = path.read_text()
        meta = yaml.safe_load(text) if is_yaml else json.loads(text)
        json.dumps(meta)  # YAML dates, sets or non-string keys would break the recorded meta later
    except (ValueError, RecursionError, TypeError, yaml.YAMLError) as error:  # ValueError covers bad UTF-8
        raise CaptureError(f"{path}: not valid {'YAML of plain values' if is_yaml else 'JSON'}: {error}") from error
    if not isinstance(meta, dict):
        raise CaptureError(f"{path}: the top level must be a {'mapping' if is_yaml else 'JSON object'}, "
                           f"got {type(meta).__name__}")
    return meta


def _number(meta: dict, key: str, where: str, whole: bool = False) -> float:
    """A finite number (not a bool or string) within int64, since times become int64 tensors; ``whole``: an integer."""
    value = meta[key]
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not abs(value) < INT64_LIMIT  # written so that NaN fails too
            or (whole and value != int(value))):
        kind = "a whole number of µs" if whole else "a finite number"
        raise CaptureError(f"{where}: '{key}' must be {kind} (|value| < 2^63), got {value!r}")
    return value


def _pixels(value: Any, key: str, where: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_SENSOR_PX:
        raise CaptureError(f"{where}: '{key}' must be a whole number of pixels in {low}..{MAX_SENSOR_PX}, "
                           f"got {value!r}")
    return value


def _fields(value: Any, names: tuple[str, ...], key: str, where: str) -> list[Any]:
    """``value`` as a list in ``names`` order: a list of that length or a mapping with exactly those keys."""
    if isinstance(value, dict) and set(value) == set(names):
        return [value[name] for name in names]
    if isinstance(value, list) and len(value) == len(names):
        return value
    raise CaptureError(f"{where}: '{key}' must be [{', '.join(names)}] or a mapping of those keys, got {value!r}")


def _matrix(value: Any, where: str) -> list[list[float]]:
    """A 2×3 affine or 3×3 homography of finite numbers; a homography must be invertible (checked on use)."""
    shape_ok = (isinstance(value, list) and len(value) in (2, 3)
                and all(isinstance(row, list) and len(row) == 3 for row in value))
    if not shape_ok or not all(not isinstance(v, bool) and isinstance(v, int | float) and abs(v) < 1e300
                               for row in value for v in row):  # abs(NaN) < x is False
        raise CaptureError(f"{where}: 'registration' must be a 2x3 affine or 3x3 homography of finite numbers "
                           f"(frame pixel -> sensor pixel), got {value!r}")
    return [[float(v) for v in row] for row in value]


def _choice(meta: dict, key: str, allowed: tuple[str, ...], where: str) -> str | None:
    value = meta.get(key)
    if value is not None and value not in allowed:
        raise CaptureError(f"{where}: '{key}' must be one of {list(allowed)}, got {value!r}")
    return value


def parse_capture_meta(meta: dict[str, Any], where: str, lenient: bool = False) -> CaptureMeta:
    """Check ``meta`` (from the file or flags named ``where``) and build its ``CaptureMeta``.

    ``lenient`` (single event files): ``focus_schedule`` defaults to linear in diopters and ``image_time_us``
    to the sweep start; a capture folder's meta must state both, as the reference layout does.
    """
    if lenient:
        meta = {"focus_schedule": LINEAR_IN_DIOPTERS, **meta}
        if "sweep_start_us" in meta:
            meta.setdefault("image_time_us", meta["sweep_start_us"])
    missing = [key for key in SCHEDULE_KEYS if key not in meta]
    if missing:
        raise CaptureError(f"{where}: missing key(s) {missing}")
    if meta["focus_schedule"] != LINEAR_IN_DIOPTERS:
        raise CaptureError(f"{where}: focus_schedule {meta['focus_schedule']!r} is not supported "
                           f"(only {LINEAR_IN_DIOPTERS!r})")
    start_us, end_us, image_time_us = (int(_number(meta, key, where, whole=True))
                                       for key in ("sweep_start_us", "sweep_end_us", "image_time_us"))
    near_m, far_m = (float(_number(meta, key, where)) for key in ("focus_start_m", "focus_end_m"))
    try:
        schedule = FocusSchedule(start_us, end_us, near_m, far_m)
    except OpticsError as error:
        raise CaptureError(f"{where}: bad sweep schedule: {error}") from error
    if not start_us <= image_time_us <= end_us:
        raise CaptureError(f"{where}: image_time_us {image_time_us} lies outside the sweep [{start_us}, {end_us}] µs")
    flip = meta.get("polarity_flip", False)
    if not isinstance(flip, bool):
        raise CaptureError(f"{where}: 'polarity_flip' must be true or false, got {flip!r}")
    sensor = None
    if meta.get("sensor") is not None:
        width, height = _fields(meta["sensor"], ("width", "height"), "sensor", where)
        sensor = (_pixels(width, "sensor.width", where), _pixels(height, "sensor.height", where))
    crop = None
    if meta.get("crop") is not None:
        names = ("top", "left", "height", "width")
        values = _fields(meta["crop"], names, "crop", where)
        crop = tuple(_pixels(v, f"crop.{n}", where, low=0 if n in ("top", "left") else 1)
                     for n, v in zip(names, values, strict=True))
    registration = None if meta.get("registration") is None else _matrix(meta["registration"], where)
    return CaptureMeta(
        schedule=schedule, image_time_us=image_time_us, polarity_flip=flip, sensor=sensor,
        registration=registration, crop=crop, event_format=_choice(meta, "event_format", tuple(FORMATS), where),
        event_time_unit=_choice(meta, "event_time_unit", tuple(US_PER_UNIT), where),
        event_response=_choice(meta, "event_response", EVENT_RESPONSES, where) or "gamma")
