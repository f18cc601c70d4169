"""Every event-file format by name, detection by content then suffix, and ``read_events`` for all of them.

Detection reads the first bytes: the .npy magic, a zip archive (.npz), the HDF5 signature (then the
layout inside decides: ``events/xs..`` E2VID, ``events/x..`` DSEC, ``CD/events`` Prophesee), the AEDAT 4.0
signature, a Prophesee ``% `` header (its encoding line picks EVT 2.0 or 3.0; none means DAT), or lines of
2 or 4 numbers (text). Only when the content says nothing does the suffix decide (e.g. a header-less file
named ``.raw``). An explicit ``format`` skips detection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import h5py

from evfocus.events.checks import EventFileError, require_file
from evfocus.events.deadline import require_read_finishes
from evfocus.events.formats.aedat import AEDAT4_SIGNATURE, read_events_aedat4
from evfocus.events.formats.dsec import read_events_dsec
from evfocus.events.formats.prophesee import (
    RAW_ENCODINGS,
    header_encoding,
    read_events_dat,
    read_events_prophesee_h5,
    read_events_raw,
    read_header,
)
from evfocus.events.formats.text import read_events_npz, read_events_txt
from evfocus.events.hdf5 import HDF5_SIGNATURE, open_h5
from evfocus.events.io import read_events_h5, read_events_npy
from evfocus.events.stream import EventStream

HEAD_BYTES = 4096  # enough for every signature and a text file's first lines


@dataclass(frozen=True)
class EventFormat:
    """One format: its reader, what it is (and through which library), whether its files can carry the sensor
    size (else ``width``/``height`` are required) and whether its time unit is open (then ``time_unit``
    applies; the others are µs by definition)."""

    name: str
    description: str
    read: Callable[..., EventStream]
    stores_size: bool
    open_time_unit: bool


FORMATS: dict[str, EventFormat] = {spec.name: spec for spec in (
    EventFormat("npy", "reference release: (N, 4) array t_us, x, y, p (numpy)", read_events_npy,
                stores_size=False, open_time_unit=False),
    EventFormat("npz", "NumPy archive: arrays t, x, y, p or one event table (numpy)", read_events_npz,
                stores_size=False, open_time_unit=True),
    EventFormat("txt", "text, 't x y p' per line, as ESIM / DVS-Voltmeter / E2VID write (numpy)",
                read_events_txt, stores_size=True, open_time_unit=True),
    EventFormat("e2vid_h5", "E2VID/ESIM HDF5: events/xs, ys, ts, ps (h5py)", read_events_h5,
                stores_size=True, open_time_unit=True),
    EventFormat("dsec_h5", "DSEC HDF5: events/x, y, t, p + t_offset, Blosc (h5py + hdf5plugin)",
                read_events_dsec, stores_size=False, open_time_unit=False),
    EventFormat("prophesee_h5", "Prophesee HDF5: CD/events, ECF-compressed (h5py + Prophesee's ECF plugin)",
                read_events_prophesee_h5, stores_size=True, open_time_unit=False),
    EventFormat("aedat4", "iniVation AEDAT 4.0: DAVIS, DVXplorer (aedat)", read_events_aedat4,
                stores_size=True, open_time_unit=False),
    EventFormat("raw", "Prophesee RAW, EVT 2.0 or 3.0 as its header says", read_events_raw,
                stores_size=True, open_time_unit=False),
    EventFormat("evt2", "Prophesee RAW, EVT 2.0 (expelliarmus)", partial(read_events_raw, encoding="evt2"),
                stores_size=True, open_time_unit=False),
    EventFormat("evt3", "Prophesee RAW, EVT 3.0 (evt3)", partial(read_events_raw, encoding="evt3"),
                stores_size=True, open_time_unit=False),
    EventFormat("dat", "Prophesee DAT (expelliarmus)", read_events_dat, stores_size=True,
                open_time_unit=False),
)}
BY_SUFFIX = {  # when the content tells nothing
    ".npy": "npy", ".npz": "npz", ".txt": "txt", ".aedat4": "aedat4", ".raw": "raw", ".dat": "dat"}


def _known_formats() -> str:
    return "; ".join(f"{spec.name} ({spec.description})" for spec in FORMATS.values())


def _hdf5_layout(path: Path) -> str:
    """The layout's format name, once a trial read in a child process finished in time (``events.deadline``:
    libhdf5 can loop forever on damaged metadata)."""
    require_read_finishes(partial(_hdf5_layout_here, path), path)
    return _hdf5_layout_here(path)


def _hdf5_layout_here(path: Path) -> str:
    with open_h5(path) as file:
        if isinstance(file.get("CD/events"), h5py.Dataset):
            return "prophesee_h5"
        events = file.get("events")
        names = set(events) if isinstance(events, h5py.Group) else set()
        keys = sorted(file)[:10]
    if names & {"xs", "ys", "ts", "ps"}:
        return "e2vid_h5"
    if names & {"x", "y", "t", "p"}:
        return "dsec_h5"
    raise EventFileError(f"{path}: an HDF5 file of no known event layout (E2VID events/xs, ys, ts, ps; DSEC "
                         f"events/x, y, t, p; Prophesee CD/events); its top level holds {keys}")


def _is_text(head: bytes) -> bool:
    """The first line that is not blank or a ``#`` comment holds 2 (``width height``) or 4 (``t x y p``) numbers."""
    try:
        lines = head[:head.rfind(b"\n") + 1 or len(head)].decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return False
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if fields:
            try:
                [float(field) for field in fields]
            except ValueError:
                return False
            return len(fields) in (2, 4)
    return False


def _by_content(path: Path, hdf5_layout: Callable[[Path], str]) -> str | None:
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "npz"
    if head.startswith(HDF5_SIGNATURE):
        return hdf5_layout(path)
    if head.startswith(AEDAT4_SIGNATURE):
        return "aedat4"
    if head.startswith(b"#!AER-DAT"):
        raise EventFileError(f"{path}: {head.split(maxsplit=1)[0].decode('latin-1')[2:]} is not supported, only "
                             "AEDAT 4.0 (convert older recordings with DV)")
    if head.startswith(b"% "):
        encoding = header_encoding(read_header(path), path)
        if encoding is None:
            return "raw" if path.suffix.lower() == ".raw" else "dat"
        return encoding if encoding in RAW_ENCODINGS else "raw"  # the RAW reader names unsupported encodings
    return "txt" if _is_text(head) else None


def detect_format(path: str | Path) -> str:
    """The format's name (a key of ``FORMATS``): by content, else by suffix; an error listing the known formats
    when neither tells."""
    return _detect(Path(path), _hdf5_layout)


def _detect(path: Path, hdf5_layout: Callable[[Path], str]) -> str:
    require_file(path)
    name = _by_content(path, hdf5_layout) or BY_SUFFIX.get(path.suffix.lower())
    if name is None:
        raise EventFileError(f"{path}: not a known event file format by content or suffix; known: "
                             f"{_known_formats()}")
    return name


def read_events(
    path: str | Path,
    format: str | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    flip_polarity: bool = False,
    time_unit: str | None = None,
    read_deadline_s: float | None = None,
) -> EventStream:
    """Any known event file → EventStream (``t_us`` int64 sorted µs, ``x``/``y`` int32, ``p`` int8 +1 = ON).

    ``format``: a key of ``FORMATS`` (``npy``, ``npz``, ``txt``, ``e2vid_h5``, ``dsec_h5``, ``prophesee_h5``,
    ``aedat4``, ``raw``, ``evt2``, ``evt3``, ``dat``), or None to detect it (``detect_format``).
    ``width``/``height``: the sensor size; required where the file does not store it (npy, npz, DSEC, and
    files whose header lacks it), checked against it where it does. ``flip_polarity`` negates every event
    (default False: each reader's documented convention, 1/True = brightness increase → +1, stands).
    ``time_unit`` (``s``, ``ms``, ``us``, ``ns``) only for formats that leave it open (npz, txt, e2vid_h5;
    default: float timestamps are seconds, integer ones µs); the others are µs by definition.
    HDF5 files are first read in a child process stopped after ``read_deadline_s`` (None: 30 s + 1 s per MB,
    ``events.deadline``; ``float("inf")``: no trial), because libhdf5 can loop forever on some damaged files.
    Raises ``EventFileError`` (``MissingFileError`` for a missing file) naming the file and the problem,
    ``EventStreamError`` for events out of time order.
    """
    path = Path(path)
    require_file(path)
    read = partial(_read_here, path, format, width, height, flip_polarity, time_unit)
    if _is_hdf5(path):
        require_read_finishes(read, path, read_deadline_s)
    return read()


def _read_here(path: Path, format: str | None, width: int | None, height: int | None, flip_polarity: bool,
               time_unit: str | None) -> EventStream:
    """``read_events`` without the HDF5 trial (which runs this very function in its child)."""
    name = _detect(path, _hdf5_layout_here) if format is None else format.lower()
    spec = FORMATS.get(name)
    if spec is None:
        raise EventFileError(f"{path}: unknown format {format!r}; known: {_known_formats()}")
    if time_unit is not None and not spec.open_time_unit:
        raise EventFileError(f"{path}: {name} timestamps are µs by definition; time_unit applies to "
                             f"{', '.join(n for n, s in FORMATS.items() if s.open_time_unit)} only")
    if not spec.stores_size and (width is None or height is None):
        raise EventFileError(f"{path}: {name} files do not store the sensor size; pass width and height")
    options = {"time_unit": time_unit} if spec.open_time_unit else {}
    return spec.read(path, width=width, height=height, flip_polarity=flip_polarity, **options)


def _is_hdf5(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
