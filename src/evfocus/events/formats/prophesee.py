"""Prophesee recordings (EVK4 and others; Metavision) → EventStream: RAW, DAT and HDF5.

RAW (EVT 2.0 through expelliarmus, EVT 3.0 through evt3) and DAT (expelliarmus) files open with an ASCII
header of ``% key value`` lines, ending at ``% end`` or at the first line that does not start with "% ".
It names the RAW encoding (``% evt 3.0`` or ``% format EVT3;height=720;width=1280``) and usually the sensor
size (``format``'s height/width, ``% geometry 1280x720``, DAT's ``% Width``/``% Height``). The encoding is
taken from the header, never guessed: EVT 2.0 words read as EVT 3.0 decode into plausible garbage.
Timestamps are µs; polarity 1 = ON (brightness increase) → +1, 0 → -1, in every Prophesee format.

Why two libraries: expelliarmus 1.1 decodes EVT 2.0 and DAT exactly but EVT 3.0 wrongly (it adds a step of
the time base whenever the low time bits wrap, on top of the EVT_TIME_HIGH words that already carry it;
its issue #19). evt3 0.4 decodes EVT 3.0 exactly but within one loop of the 24-bit time base: after
2^24 µs (16.8 s) its timestamps restart at 0 unless the TIME_HIGH words step from 0xFFF straight to 0x000.
The reader counts the loops itself from the TIME_HIGH words (any value below the previous one starts a
loop), feeds the decoder one loop at a time and keeps only the 24-bit time base of what it returns.
Times before the first TIME_HIGH are taken to lie in the first loop, as a recording from sensor start does.

Prophesee HDF5 (``CD/events``) is compressed with ECF, an HDF5 filter hdf5plugin does not ship:
without it a clear error says where to get it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import evt3
import h5py
import numpy as np
from expelliarmus import Wizard

from evfocus.events.checks import (
    EventFileError,
    check_coordinates,
    integer_column,
    library_errors,
    require_file,
    sensor_size,
    signed_polarity,
)
from evfocus.events.hdf5 import open_h5
from evfocus.events.stream import EventStream, EventStreamError

HEADER_LIMIT = 1 << 20  # headers are a few hundred bytes: never read a whole recording looking for the end
RAW_ENCODINGS = ("evt2", "evt3")
EVT_VERSIONS = {"2.0": "evt2", "2.1": "evt21", "3.0": "evt3"}  # `% evt X` → the name `% format` uses
EVT3_TIME_HIGH = 0x8  # word type of EVT 3.0's upper 12 time bits
EVT3_LOOP_US = 1 << 24  # EVT 3.0's time base wraps after 24 bits of µs
DAT_EVENT_TYPES = (0x00, 0x0C)  # 2D events (ATIS) and CD events (Metavision), both 8 bytes
DAT_EVENT_BYTES = 8
DAT_WRAP_US = 1 << 32  # DAT timestamps are 32-bit µs
EVT2_SAFE_START = b"% evt 2.0\n% end\n" + (0x8 << 28).to_bytes(4, "little")  # header, then EVT_TIME_HIGH 0
ECF_FILTER = 0x8ECF  # Prophesee's HDF5 filter id (36559)
ECF_HELP = ("it needs Prophesee's ECF codec (HDF5 filter 0x8ECF), which hdf5plugin does not include: install the "
            "hdf5_ecf plugin (github.com/prophesee-ai/hdf5_ecf; also part of OpenEB and the Metavision SDK) and set "
            "HDF5_PLUGIN_PATH to its folder, or convert the recording to RAW with Metavision")


@dataclass(frozen=True)
class PropheseeHeader:
    """The ``% key value`` lines that open a RAW or DAT file (keys lower-cased) and where its data starts."""

    fields: dict[str, str]
    data_offset: int


def read_header(path: Path) -> PropheseeHeader:
    """Lines ``% key value`` up to ``% end`` or the first other line (Prophesee's RAW and DAT header rule)."""
    require_file(path)
    with path.open("rb") as file:
        head = file.read(HEADER_LIMIT)
    fields, offset = {}, 0
    while head.startswith(b"% ", offset):
        end = head.find(b"\n", offset)
        if end < 0:
            raise EventFileError(f"{path}: the header's last line has no end (truncated file?)")
        key, _, value = head[offset + 2:end].decode("latin-1").strip().partition(" ")
        offset = end + 1
        if key == "end":
            break
        fields[key.lower()] = value.strip()
    return PropheseeHeader(fields, offset)


def header_encoding(header: PropheseeHeader, path: Path) -> str | None:
    """The RAW encoding the header names (``evt2``, ``evt3``, or another, e.g. ``evt21``); None if it names none."""
    named = set()
    if "evt" in header.fields:
        named.add(EVT_VERSIONS.get(header.fields["evt"], f"evt {header.fields['evt']}"))
    if "format" in header.fields:
        named.add(header.fields["format"].split(";")[0].strip().lower())
    if len(named) > 1:
        raise EventFileError(f"{path}: the header names two encodings, {sorted(named)}")
    return named.pop() if named else None


def _pixels(text: str, what: str, path: Path) -> int:
    try:
        return int(text)
    except ValueError:
        raise EventFileError(f"{path}: {what} {text!r} is not a whole number of pixels") from None


def _size_from_geometry(text: str, path: Path) -> tuple[int, int]:
    """``"1280x720"`` → (1280, 720)."""
    width, _, height = text.lower().partition("x")
    return _pixels(width, "geometry width", path), _pixels(height, "geometry height", path)


def _geometry_attribute(value: object, path: Path) -> tuple[int, int]:
    if isinstance(value, bytes | np.bytes_):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        raise EventFileError(f"{path}: the 'geometry' attribute must be a 'WxH' string, got {value!r}")
    return _size_from_geometry(value, path)


def _header_size(header: PropheseeHeader, path: Path) -> tuple[int, int] | None:
    """(width, height) from ``% format ...;height=H;width=W``, ``% geometry WxH`` or DAT's ``% Width``/``% Height``."""
    params = dict(item.strip().partition("=")[::2] for item in header.fields.get("format", "").split(";")[1:])
    for source in (params, header.fields):
        if "width" in source and "height" in source:
            return _pixels(source["width"], "header width", path), _pixels(source["height"], "header height", path)
    if "geometry" in header.fields:
        return _size_from_geometry(header.fields["geometry"], path)
    return None


def _stream(t_us: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int, height: int,
            flip_polarity: bool, path: Path) -> EventStream:
    """Decoded columns (p 0/1, 1 = ON) → EventStream, coordinates checked against the sensor."""
    t_us, x, y = (integer_column(values, f"{path} events '{name}'")
                  for values, name in ((t_us, "t"), (x, "x"), (y, "y")))
    p = signed_polarity(p, flip_polarity, f"{path} events 'p'")
    check_coordinates(x, y, width, height, str(path))
    return EventStream.from_arrays(t_us, x, y, p, width, height, source=str(path))


def _run_expelliarmus(readable: Path, encoding: str, path: Path) -> np.ndarray:
    with library_errors(path, f"expelliarmus could not read the {encoding.upper()} data"):
        table = Wizard(encoding=encoding, fpath=readable).read()
    if table is None:  # expelliarmus prints its own error and returns None
        raise EventFileError(f"{path}: expelliarmus could not decode the {encoding.upper()} data (corrupt file?)")
    return table


def _expelliarmus(path: Path, encoding: str, data_offset: int) -> np.ndarray:
    """expelliarmus's structured array (t i64 µs, x/y i16, p u8) of a RAW EVT 2.0 or DAT file with data.

    expelliarmus reads only files named ``*.raw`` / ``*.dat``, and takes every line starting with "%" for header,
    even after ``% end``: EVT 2.0 data whose first byte is "%" (0x25: a TIME_HIGH or y value ending in 0x25)
    makes it swallow events or, with no newline after, loop forever. Such files are read from a temporary
    copy, named as it wants and, for data starting with "%", opened by ``% evt 2.0`` and an EVT_TIME_HIGH 0
    word, where the decoder's time starts anyway.
    """
    suffix = ".dat" if encoding == "dat" else ".raw"
    with path.open("rb") as source:
        source.seek(data_offset)
        starts_like_header = source.read(1) == b"%"
    if path.suffix.lower() == suffix and not starts_like_header:
        return _run_expelliarmus(path, encoding, path)
    with tempfile.TemporaryDirectory() as folder, path.open("rb") as source:
        readable = Path(folder) / f"events{suffix}"
        with readable.open("wb") as target:
            target.write(EVT2_SAFE_START if starts_like_header else source.read(data_offset))
            source.seek(data_offset)
            shutil.copyfileobj(source, target)
        return _run_expelliarmus(readable, encoding, path)


def _decode_evt2(path: Path, data_offset: int, data_bytes: int) -> tuple[np.ndarray, ...]:
    if data_bytes % 4:
        raise EventFileError(f"{path}: truncated: EVT 2.0 data is 32-bit words, {data_bytes} bytes is not whole words")
    if data_bytes == 0:
        return (np.zeros(0, np.int64),) * 4
    table = _expelliarmus(path, "evt2", data_offset)
    return table["t"], table["x"], table["y"], table["p"]


def _decode_evt3(path: Path, data: bytes) -> tuple[np.ndarray, ...]:
    """evt3's events, one loop of the 24-bit time base at a time, each loop adding 2^24 µs."""
    if len(data) % 2:
        raise EventFileError(f"{path}: truncated: EVT 3.0 data is 16-bit words, {len(data)} bytes is not whole words")
    words = np.frombuffer(data, "<u2")
    time_high_at = np.flatnonzero(words >> 12 == EVT3_TIME_HIGH)
    time_high = words[time_high_at] & 0xFFF
    loop_starts = time_high_at[1:][time_high[1:] < time_high[:-1]]
    bounds = [0, *(2 * loop_starts).tolist(), len(data)]
    decoder, parts = evt3.Decoder(), []
    with library_errors(path, "evt3 could not decode the EVT 3.0 data"):
        for loop, (start, end) in enumerate(pairwise(bounds)):
            events = decoder.feed(data[start:end])
            time_base_us = events.timestamp.astype(np.int64) % EVT3_LOOP_US  # whatever loops evt3 counted itself
            parts.append((time_base_us + loop * EVT3_LOOP_US, events.x, events.y, events.polarity))
        decoder.finish()  # raises on a word cut short at the end
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def read_events_raw(path: str | Path, width: int | None = None, height: int | None = None,
                    flip_polarity: bool = False, encoding: str | None = None) -> EventStream:
    """Prophesee RAW (``.raw``): EVT 2.0 (expelliarmus) or EVT 3.0 (evt3, vectorised events included; time-base
    loops counted). ``encoding`` ("evt2"/"evt3") is for files whose header names none; a header naming another
    is an error. Polarity 1 = ON → +1; ``flip_polarity`` negates. Sensor size from the header, else
    ``width``/``height``. Trigger and other non-CD words are skipped. Unsorted events are refused.
    """
    path = Path(path)
    header = read_header(path)
    named = header_encoding(header, path)
    if encoding is not None and named is not None and named != encoding:
        raise EventFileError(f"{path}: the header says the data is {named.upper()}, not {encoding.upper()}")
    encoding = encoding or named
    if encoding is None:
        raise EventFileError(f"{path}: the header names no encoding (no '% evt' or '% format' line); "
                             "say which: evt2 or evt3")
    if encoding not in RAW_ENCODINGS:
        raise EventFileError(f"{path}: {encoding.upper()} data is not supported (only EVT 2.0 and EVT 3.0)")
    width, height = sensor_size(_header_size(header, path), width, height, "sensor size in the header", str(path))
    if encoding == "evt2":
        columns = _decode_evt2(path, header.data_offset, path.stat().st_size - header.data_offset)
    else:
        with path.open("rb") as file:
            file.seek(header.data_offset)
            columns = _decode_evt3(path, file.read())
    return _stream(*columns, width, height, flip_polarity, path)


def read_events_dat(path: str | Path, width: int | None = None, height: int | None = None,
                    flip_polarity: bool = False) -> EventStream:
    """Prophesee DAT (``.dat``, through expelliarmus): header, then one byte event type (CD) and one byte event
    size (8), then 32-bit µs timestamps and 32-bit x (14 bits) / y (14 bits) / p (4 bits) words. Polarity
    1 = ON → +1; ``flip_polarity`` negates. Sensor size from ``% Width``/``% Height`` (or ``% geometry``), else
    ``width``/``height``. Timestamps are 32-bit in the file; expelliarmus continues them past each wrap
    (71.6 min), and a step back in time is refused as unsorted.
    """
    path = Path(path)
    header = read_header(path)
    if not header.fields:
        raise EventFileError(f"{path}: no '% ' header: not a DAT file, or an old header-less one expelliarmus "
                             "cannot read")
    data_bytes = path.stat().st_size - header.data_offset - 2
    with path.open("rb") as file:
        file.seek(header.data_offset)
        kind = file.read(2)
    if len(kind) < 2:
        raise EventFileError(f"{path}: truncated: no event type and size after the header")
    if kind[0] not in DAT_EVENT_TYPES or kind[1] != DAT_EVENT_BYTES:
        raise EventFileError(f"{path}: holds events of type 0x{kind[0]:02X}, {kind[1]} bytes each; only CD events "
                             f"(type 0x00 or 0x0C, {DAT_EVENT_BYTES} bytes) are supported")
    if data_bytes % DAT_EVENT_BYTES:
        raise EventFileError(f"{path}: truncated: {data_bytes} bytes of events is not whole {DAT_EVENT_BYTES}-byte "
                             "events")
    width, height = sensor_size(_header_size(header, path), width, height, "sensor size in the header", str(path))
    if data_bytes == 0:
        return EventStream.empty(width, height, source=str(path))
    table = _expelliarmus(path, "dat", header.data_offset)
    _refuse_steps_back(table["t"], path)
    return _stream(table["t"], table["x"], table["y"], table["p"], width, height, flip_polarity, path)


def _refuse_steps_back(t_us: np.ndarray, path: Path) -> None:
    """expelliarmus takes any decrease of DAT's 32-bit timestamps for a wrap and adds 2^32 µs. A true wrap steps
    just past 2^32; a step back in time comes out as a jump of nearly 2^32 µs (71.6 min): refuse that."""
    disguised = np.flatnonzero((np.diff(t_us >> 32) > 0) & (np.diff(t_us) >= DAT_WRAP_US // 2))
    if disguised.size:
        after = int(disguised[0]) + 1
        raise EventStreamError(f"{path}: timestamps are not sorted: event {after} has t={t_us[after] % DAT_WRAP_US} "
                               f"µs after t={t_us[after - 1] % DAT_WRAP_US} µs")


def _require_codec(dataset: h5py.Dataset, path: Path) -> None:
    """Refuse an ECF-compressed dataset when no ECF filter is installed, before h5py's cryptic filter error."""
    plist = dataset.id.get_create_plist()
    filters = {plist.get_filter(index)[0] for index in range(plist.get_nfilters())}
    if ECF_FILTER in filters and not h5py.h5z.filter_avail(ECF_FILTER):
        raise EventFileError(f"{path}: a Prophesee HDF5 event file; {ECF_HELP}")


def read_events_prophesee_h5(path: str | Path, width: int | None = None, height: int | None = None,
                             flip_polarity: bool = False) -> EventStream:
    """Prophesee (Metavision) HDF5: compound dataset ``CD/events`` (x, y u16; p i16 0/1, 1 = ON → +1; t i64 µs),
    ECF-compressed. Reads when an ECF filter is installed (or the dataset is not ECF-compressed); otherwise the
    error says where to get one. Sensor size from the root attribute ``geometry`` ("WxH"), else
    ``width``/``height``. ``flip_polarity`` negates.
    """
    path = Path(path)
    with open_h5(path) as file:
        dataset = file.get("CD/events")
        if not isinstance(dataset, h5py.Dataset):
            raise EventFileError(f"{path}: missing dataset 'CD/events' (a Prophesee HDF5 event file has one)")
        _require_codec(dataset, path)
        fields = dataset.dtype.names or ()
        if dataset.ndim != 1 or not {"x", "y", "p", "t"} <= set(fields):
            raise EventFileError(f"{path}: 'CD/events' must be a 1-D table of x, y, p, t; got shape "
                                 f"{dataset.shape}, fields {list(fields)}")
        table = dataset[()]
        geometry = file.attrs.get("geometry")
    stored = None if geometry is None else _geometry_attribute(geometry, path)
    width, height = sensor_size(stored, width, height, "geometry attribute", str(path))
    return _stream(table["t"], table["x"], table["y"], table["p"], width, height, flip_polarity, path)
