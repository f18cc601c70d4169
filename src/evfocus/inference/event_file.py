"""``src/aif.py --input EVENTS --image FRAME``: one event file of any format, its frame and its metadata.

The metadata (``data.capture_meta``'s keys) comes from ``--meta FILE``, else a sidecar beside the event file
(``rec.json``/``.yaml``/``.yml`` or ``rec.raw.json``, …), and/or flags (``--sweep-us``, ``--focus-m``,
``--image-time-us``, ``--polarity-flip``), which win over the file's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evfocus.data.capture_meta import META_SUFFIXES, load_meta_file, parse_capture_meta
from evfocus.data.captures import read_event_file
from evfocus.inference.sweep_source import InputError, SweepSource


@dataclass(frozen=True)
class CaptureOptions:
    """How to read captures: the events' format (None: detected), and for an event-file input its frame,
    meta file and meta flags."""

    event_format: str | None = None
    image: Path | None = None
    meta_file: Path | None = None
    meta_flags: dict[str, Any] = field(default_factory=dict)

    @property
    def for_event_file(self) -> bool:
        return self.image is not None or self.meta_file is not None or bool(self.meta_flags)


def meta_flags(sweep_us: list[int] | None, focus_m: list[float] | None, image_time_us: int | None,
               polarity_flip: bool, event_response: str | None = None) -> dict[str, Any]:
    """The command line's meta keys (only those given, so a sidecar's others stand)."""
    flags: dict[str, Any] = {}
    if sweep_us is not None:
        flags["sweep_start_us"], flags["sweep_end_us"] = sweep_us
    if focus_m is not None:
        flags["focus_start_m"], flags["focus_end_m"] = focus_m
    if image_time_us is not None:
        flags["image_time_us"] = image_time_us
    if polarity_flip:
        flags["polarity_flip"] = True
    if event_response is not None:
        flags["event_response"] = event_response
    return flags


def sidecar(events: Path) -> Path | None:
    """The meta file beside ``events``: ``<stem>.json|.yaml|.yml`` or ``<name>.json|…``; two of them are refused."""
    found = sorted({candidate for suffix in META_SUFFIXES
                    for candidate in (events.with_suffix(suffix), events.with_name(events.name + suffix))
                    if candidate.is_file() and candidate != events})
    if len(found) > 1:
        raise InputError(f"{events}: several sidecar meta files {[path.name for path in found]}; keep one or "
                         "pass --meta FILE")
    return found[0] if found else None


def event_file_source(events: Path, options: CaptureOptions) -> SweepSource:
    """One event file with ``options.image`` as its frame; the meta is read and checked now, so a missing or bad
    key stops the run before any sweep is processed."""
    if options.image is None:
        raise InputError(f"--input {events}: an event file needs its frame: --image FRAME")
    if not options.image.is_file():
        raise InputError(f"--image {options.image}: no such file")
    if options.meta_file is not None and not options.meta_file.is_file():
        raise InputError(f"--meta {options.meta_file}: no such file")
    meta_file = options.meta_file or sidecar(events)
    meta = load_meta_file(meta_file) if meta_file is not None else {}
    meta.update(options.meta_flags)
    if not meta:
        raise InputError(f"{events}: no meta: put {events.with_suffix('.json').name} beside it, pass --meta FILE, "
                         "or --sweep-us START END --focus-m NEAR FAR")
    where = " + ".join(([str(meta_file)] if meta_file else []) + (["flags"] if options.meta_flags else []))
    parse_capture_meta(meta, where, lenient=True)
    return SweepSource(events.stem, str(events),
                       lambda: read_event_file(events, options.image, meta, where, meta_file, options.event_format))
