"""Event files for the format tests and benchmarks, written the way each format's own tools write them.

Where a library can write the format, it does: h5py (+ hdf5plugin's Blosc) for DSEC, dv-processing for
AEDAT 4.0, numpy for .npz/.txt. Prophesee RAW and DAT have no writer we trust (expelliarmus writes EVT 3.0
with wrong timestamps), so they are encoded here from Prophesee's published specifications:

- EVT 2.0: little-endian 32-bit words, type in bits 31..28. CD_OFF 0x0 / CD_ON 0x1: timestamp low 6 bits
  (27..22), x (21..11), y (10..0). EVT_TIME_HIGH 0x8: timestamp bits 33..6 (27..0). EXT_TRIGGER 0xA.
- EVT 3.0: little-endian 16-bit words, type in bits 15..12. EVT_ADDR_Y 0x0: y (10..0). EVT_ADDR_X 0x2:
  polarity (11), x (10..0), one event at the current time and y. VECT_BASE_X 0x3: polarity, base x.
  VECT_12 0x4 / VECT_8 0x5: a mask of valid pixels from base x, which then advances by 12 / 8.
  EVT_TIME_LOW 0x6 / EVT_TIME_HIGH 0x8: the lower / upper 12 bits of a 24-bit µs time base that loops;
  a sensor sends every TIME_HIGH step, so the encoder does too. EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED 0x7/0xF.
- DAT: ``% `` header lines, one byte event type (0x0C CD), one byte event size (8), then per event a 32-bit
  µs timestamp and a 32-bit word: x (13..0), y (27..14), polarity (31..28).
"""

from __future__ import annotations

from pathlib import Path

import dv_processing as dv
import h5py
import hdf5plugin
import numpy as np

EVT2_HEADER = b"% camera_integrator_name Prophesee\n% evt 2.0\n% format EVT2;height={height};width={width}\n% end\n"
EVT3_HEADER = b"% date 2023-03-29 16:37:46\n% evt 3.0\n% format EVT3;height={height};width={width}\n" \
              b"% geometry {width}x{height}\n% end\n"


def _ints(*columns: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(column, dtype=np.int64) for column in columns]


def _interleave(counts: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per event, ``counts[k][i]`` words of kind k in order: the word array's size and each kind's first slot."""
    per_event = np.sum(counts, axis=0)
    start = np.cumsum(per_event) - per_event
    firsts = []
    for count in counts:
        firsts.append(start)
        start = start + count
    return np.zeros(int(per_event.sum()), np.int64), firsts


def _runs(first: np.ndarray, count: np.ndarray, first_value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slots ``first[i] .. first[i] + count[i] - 1`` and values ``first_value[i] ..`` in step."""
    step = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return np.repeat(first, count) + step, np.repeat(first_value, count) + step


def evt2_words(t_us, x, y, p) -> np.ndarray:
    """EVT 2.0 words of sorted events: an EVT_TIME_HIGH before each change of the upper 28 bits, then CD words."""
    t_us, x, y, p = _ints(t_us, x, y, p)
    high = t_us >> 6
    new_high = np.r_[True, high[1:] != high[:-1]][:len(high)].astype(np.int64)
    words, (high_at, cd_at) = _interleave([new_high, np.ones_like(t_us)])
    words[high_at[new_high == 1]] = (0x8 << 28) | high[new_high == 1]
    words[cd_at] = (p << 28) | ((t_us & 63) << 22) | (x << 11) | y
    return words.astype("<u4")


def evt3_words(t_us, x, y, p) -> np.ndarray:
    """EVT 3.0 words of sorted events, one EVT_ADDR_X each: every TIME_HIGH step since the previous event
    (since 0 before the first),
    EVT_ADDR_Y when y changes, EVT_TIME_LOW when the time does."""
    t_us, x, y, p = _ints(t_us, x, y, p)
    high = t_us >> 12
    high_steps = np.diff(high, prepend=-1)  # from sensor start: TIME_HIGH 0, 1, ... up to the first event
    new_y = np.r_[True, y[1:] != y[:-1]][:len(y)].astype(np.int64)
    new_t = np.r_[True, t_us[1:] != t_us[:-1]][:len(t_us)].astype(np.int64)
    words, (high_at, y_at, low_at, x_at) = _interleave([high_steps, new_y, new_t, np.ones_like(t_us)])
    slots, values = _runs(high_at, high_steps, high - high_steps + 1)
    words[slots] = 0x8000 | (values & 0xFFF)
    words[y_at[new_y == 1]] = y[new_y == 1]
    words[low_at[new_t == 1]] = 0x6000 | (t_us[new_t == 1] & 0xFFF)
    words[x_at] = 0x2000 | (p << 11) | x
    return words.astype("<u2")


def raw_bytes(header: bytes, words: np.ndarray, width: int = 640, height: int = 480) -> bytes:
    return header.replace(b"{width}", str(width).encode()).replace(b"{height}", str(height).encode()) \
        + words.tobytes()


def dat_bytes(t_us, x, y, p, width: int | None = 640, height: int | None = 480, event_type: int = 0x0C,
              event_size: int = 8) -> bytes:
    """A DAT file; ``width``/``height`` None leaves those header lines out."""
    t_us, x, y, p = _ints(t_us, x, y, p)
    lines = ["% Data file containing CD events", "% Date 2023-03-29 16:37:46", "% Version 2"]
    lines += [] if width is None else [f"% Width {width}"]
    lines += [] if height is None else [f"% Height {height}"]
    records = np.zeros(len(t_us), [("t", "<u4"), ("data", "<u4")])
    records["t"], records["data"] = t_us, x | (y << 14) | (p << 28)
    return ("\n".join(lines) + "\n").encode() + bytes([event_type, event_size]) + records.tobytes()


def write_dsec(path: Path, t_us, x, y, p, t_offset_us: int) -> Path:
    """DSEC's events.h5 as its converter writes it: relative u4 times, Blosc-compressed columns, ms_to_idx."""
    t_us, x, y, p = _ints(t_us, x, y, p)
    relative = t_us - t_offset_us
    blosc = hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.SHUFFLE) if len(t_us) else {}
    with h5py.File(path, "w") as file:
        for name, values, dtype in (("t", relative, "<u4"), ("x", x, "<u2"), ("y", y, "<u2"), ("p", p, "u1")):
            file.create_dataset(f"events/{name}", data=values.astype(dtype), **blosc)
        last_ms = int(relative.max()) // 1000 + 1 if len(relative) else 0
        file.create_dataset("ms_to_idx", data=np.searchsorted(relative, np.arange(last_ms + 1) * 1000).astype("<u8"))
        file.create_dataset("t_offset", data=np.int64(t_offset_us))
    return path


def write_aedat4(path: Path, t_us, x, y, p, width: int, height: int, frames=(), packet_events: int = 1000) -> Path:
    """An AEDAT 4.0 file written by dv-processing: events in packets of ``packet_events``, then ``frames``
    ((t_us, pixels) pairs) when given (a DAVIS-like file; otherwise event-only, like a DVXplorer)."""
    config = dv.io.MonoCameraWriter
    make = config.DAVISConfig if len(frames) else config.EventOnlyConfig
    writer = dv.io.MonoCameraWriter(str(path), make("test-camera", (width, height)))
    t_us, x, y, p = (column.tolist() for column in _ints(t_us, x, y, p))
    for start in range(0, len(t_us), packet_events):
        store = dv.EventStore()
        for event in zip(*(column[start:start + packet_events] for column in (t_us, x, y, p)), strict=True):
            store.push_back(event[0], event[1], event[2], bool(event[3]))
        writer.writeEvents(store)
    for t_frame, pixels in frames:
        writer.writeFrame(dv.Frame(int(t_frame), pixels))
    del writer  # closes the file
    return path


PROPHESEE_CD = np.dtype([("x", "<u2"), ("y", "<u2"), ("p", "<i2"), ("t", "<i8")])


def write_prophesee_h5(path: Path, t_us, x, y, p, geometry: str | None = "640x480", ecf: bool = True) -> Path:
    """Metavision's HDF5 layout: compound ``CD/events``. With ``ecf`` the dataset declares the ECF filter
    (0x8ECF) and holds chunks written raw, as the filter's absence here leaves no other way."""
    t_us, x, y, p = _ints(t_us, x, y, p)
    table = np.zeros(len(t_us), PROPHESEE_CD)
    table["x"], table["y"], table["p"], table["t"] = x, y, p, t_us
    with h5py.File(path, "w") as file:
        if ecf:
            dataset = file.create_dataset("CD/events", shape=table.shape, dtype=PROPHESEE_CD,
                                          chunks=(max(1, len(table)),), compression=0x8ECF, allow_unknown_filter=True)
            if len(table):
                dataset.id.write_direct_chunk((0,), table.tobytes())
        else:
            file.create_dataset("CD/events", data=table)
        if geometry is not None:
            file.attrs["geometry"] = geometry
    return path
