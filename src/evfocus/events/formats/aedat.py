"""iniVation AEDAT 4.0 (DAVIS, DVXplorer; DV software) → EventStream and frames, via ``aedat``.

An ``.aedat4`` file holds streams (events, frames, IMU, triggers) as compressed flatbuffer packets;
``aedat`` (Rust) decodes them. Events and frames come from the file's one stream of each kind; the
sensor size is the event stream's. Timestamps are µs in the camera's clock (DV writes Unix-epoch µs).

aedat 2.3 aborts the whole process (a Rust panic it cannot unwind) on a file whose stream description is
not UTF-8, so ``_check_description`` reads that string from the file header first and refuses such files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import aedat
import numpy as np

from evfocus.events.checks import (
    EventFileError,
    check_coordinates,
    integer_column,
    library_errors,
    require_file,
    sensor_size,
    signed_polarity,
)
from evfocus.events.stream import EventStream

AEDAT4_SIGNATURE = b"#!AER-DAT4.0\r\n"
DESCRIPTION_FIELD = 2  # IOHeader table: compression, dataTablePosition, infoNode (the XML stream description)
AEDAT_EVENT = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])  # aedat's record: t in µs


@dataclass(frozen=True)
class CameraFrame:
    """One intensity frame as stored: ``pixels`` uint8/uint16, (H, W) grey or (H, W, 3|4) RGB(A);
    times in µs on the events' clock."""

    t_us: int
    exposure_begin_us: int
    exposure_end_us: int
    pixels: np.ndarray


def _description(header: bytes) -> bytes:
    """The IOHeader flatbuffer's ``infoNode`` string (flatbuffers' binary layout: root table offset, vtable of
    field offsets, length-prefixed string)."""
    table = struct.unpack_from("<I", header, 0)[0]
    vtable = table - struct.unpack_from("<i", header, table)[0]
    vtable_size = struct.unpack_from("<H", header, vtable)[0]
    slot = 4 + 2 * DESCRIPTION_FIELD
    field = struct.unpack_from("<H", header, vtable + slot)[0] if slot + 2 <= vtable_size else 0
    if field == 0:
        return b""
    string = table + field + struct.unpack_from("<I", header, table + field)[0]
    length = struct.unpack_from("<I", header, string)[0]
    text = header[string + 4:string + 4 + length]
    if len(text) != length:
        raise struct.error("the description runs past the header")
    return text


def _check_description(path: Path) -> None:
    """Refuse what aedat cannot refuse safely: no AEDAT 4.0 signature, a header cut short, a non-UTF-8 description."""
    with path.open("rb") as file:
        signature = file.read(len(AEDAT4_SIGNATURE))
        if signature != AEDAT4_SIGNATURE:
            raise EventFileError(f"{path}: not an AEDAT 4.0 file (it starts {signature[:14]!r}; AEDAT 2/3 files "
                                 "need converting with DV first)")
        size_bytes = file.read(4)
        size = struct.unpack("<i", size_bytes)[0] if len(size_bytes) == 4 else -1
        header = file.read(size) if size > 0 else b""
    if size <= 0 or len(header) != size:
        raise EventFileError(f"{path}: truncated AEDAT 4.0 header")
    try:
        _description(header).decode("utf-8")
    except (struct.error, UnicodeDecodeError) as error:
        raise EventFileError(f"{path}: corrupt AEDAT 4.0 header ({error})") from error


def _packets(path: Path, kind: str) -> tuple[dict, list[dict]]:
    """(stream info, its packets in file order) for the file's one stream of ``kind`` ("events" or "frame");
    ({}, []) when it has none."""
    require_file(path)
    _check_description(path)
    with library_errors(path, "not a readable AEDAT 4.0 file"):
        decoder = aedat.Decoder(path)
        streams = {key: info for key, info in decoder.id_to_stream().items() if info["type"] == kind}
        if len(streams) > 1:
            raise EventFileError(f"{path}: {len(streams)} {kind} streams (ids {sorted(streams)}); one expected")
        packets = [packet for packet in decoder if kind in packet and packet["stream_id"] in streams]
    return (next(iter(streams.values())) if streams else {}), packets


def read_events_aedat4(path: str | Path, width: int | None = None, height: int | None = None,
                       flip_polarity: bool = False) -> EventStream:
    """The events of an ``.aedat4`` file. Polarity: aedat's ``on`` flag, True (ON, brightness increase) → +1;
    ``flip_polarity`` negates. Sensor size from the event stream (``width``/``height``, if given, must match).
    Events must be sorted in time, as DV writes them; unsorted files are refused (``EventStreamError``).
    """
    path = Path(path)
    info, packets = _packets(path, "events")
    if not info:
        raise EventFileError(f"{path}: no event stream")
    width, height = sensor_size((info["width"], info["height"]), width, height, "event stream", str(path))
    table = np.concatenate([packet["events"] for packet in packets]) if packets else np.zeros(0, AEDAT_EVENT)
    t_us = integer_column(table["t"], f"{path} events 't'")
    x, y = integer_column(table["x"], f"{path} events 'x'"), integer_column(table["y"], f"{path} events 'y'")
    p = signed_polarity(table["on"], flip_polarity, f"{path} events 'on'")
    check_coordinates(x, y, width, height, str(path))
    return EventStream.from_arrays(t_us, x, y, p, width, height, source=str(path))


def read_frames_aedat4(path: str | Path) -> list[CameraFrame]:
    """The frames of an ``.aedat4`` file in file order (DAVIS APS frames; [] for event-only cameras such as
    DVXplorer). Pixels as aedat gives them: the file's BGR(A) swapped to RGB(A); 8- or 16-bit."""
    path = Path(path)
    _, packets = _packets(path, "frame")
    return [CameraFrame(t_us=int(frame["t"]), exposure_begin_us=int(frame["exposure_begin_t"]),
                        exposure_end_us=int(frame["exposure_end_t"]), pixels=frame["pixels"])
            for frame in (packet["frame"] for packet in packets)]
