"""Every event-file format: written by its own library (or encoded from its spec), read back exactly.

Files come from ``event_files``: h5py/hdf5plugin (DSEC), dv-processing (AEDAT 4.0), numpy (.npy/.npz/.txt)
and Prophesee's published EVT 2.0 / EVT 3.0 / DAT layouts. Reads go through ``read_events`` with the
format detected from the content, and must return exactly what was written: values, dtypes, polarity
(+1 = ON), sensor size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from event_files import (
    EVT2_HEADER,
    EVT3_HEADER,
    dat_bytes,
    evt2_words,
    evt3_words,
    raw_bytes,
    write_aedat4,
    write_dsec,
    write_prophesee_h5,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from evfocus.events.checks import EventFileError, MissingFileError
from evfocus.events.formats import FORMATS, detect_format, read_events
from evfocus.events.formats.aedat import read_frames_aedat4
from evfocus.events.io import write_events_h5
from evfocus.events.stream import EventStream, EventStreamError

WIDTH, HEIGHT = 640, 480
Events = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # t_us, x, y, p (0/1, 1 = ON)


# ---------------------------------------------------------------------------------- writers, one per format
def write_npy(folder: Path, t, x, y, p) -> Path:
    np.save(folder / "events.npy", np.column_stack([t, x, y, p]).astype(np.int64).reshape(-1, 4))
    return folder / "events.npy"


def write_npz(folder: Path, t, x, y, p) -> Path:
    np.savez(folder / "events.npz", t=t, x=x, y=y, p=p)
    return folder / "events.npz"


def write_txt(folder: Path, t, x, y, p) -> Path:
    """E2VID's text layout: 'width height', then 't x y p' per line."""
    table = np.column_stack([t, x, y, p]).astype(np.int64).reshape(-1, 4)
    np.savetxt(folder / "events.txt", table, fmt="%d", header=f"{WIDTH} {HEIGHT}", comments="")
    return folder / "events.txt"


def write_e2vid(folder: Path, t, x, y, p) -> Path:
    events = EventStream.from_arrays(t, x, y, np.where(p == 1, 1, -1), WIDTH, HEIGHT)
    write_events_h5(folder / "events.h5", events)
    return folder / "events.h5"


def write_raw(folder: Path, header: bytes, words: np.ndarray, name: str = "events.raw") -> Path:
    (folder / name).write_bytes(raw_bytes(header, words, WIDTH, HEIGHT))
    return folder / name


WRITERS: dict[str, Callable[..., Path]] = {
    "npy": write_npy,
    "npz": write_npz,
    "txt": write_txt,
    "e2vid_h5": write_e2vid,
    "dsec_h5": lambda folder, t, *xyp: write_dsec(folder / "events.h5", t, *xyp, t_offset_us=int(t[:1].sum()) // 2),
    "aedat4": lambda folder, *events: write_aedat4(folder / "events.aedat4", *events, WIDTH, HEIGHT, packet_events=7),
    "evt2": lambda folder, *events: write_raw(folder, EVT2_HEADER, evt2_words(*events)),
    "evt3": lambda folder, *events: write_raw(folder, EVT3_HEADER, evt3_words(*events)),
    "dat": lambda folder, *events: _write_bytes(folder / "events.dat", dat_bytes(*events, WIDTH, HEIGHT)),
    "prophesee_h5": lambda folder, *events: write_prophesee_h5(folder / "events.hdf5", *events, ecf=False),
}
SIZE_ARGUMENTS = {"width": WIDTH, "height": HEIGHT}


def _write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def read_back(name: str, folder: Path, events: Events, **options) -> EventStream:
    """Write ``events`` as ``name``, check the format is detected, read them back."""
    path = WRITERS[name](folder, *events)
    assert detect_format(path) == name
    size = {} if FORMATS[name].stores_size else SIZE_ARGUMENTS
    return read_events(path, **size, **options)


def assert_events(stream: EventStream, events: Events, width: int = WIDTH, height: int = HEIGHT,
                  flip: bool = False) -> None:
    t_us, x, y, p = events
    assert (stream.width, stream.height) == (width, height)
    assert (stream.t_us.dtype, stream.x.dtype, stream.y.dtype, stream.p.dtype) == (
        torch.int64, torch.int32, torch.int32, torch.int8)
    assert stream.t_us.tolist() == [int(v) for v in t_us]
    assert stream.x.tolist() == [int(v) for v in x] and stream.y.tolist() == [int(v) for v in y]
    signed = [(1 if v else -1) * (-1 if flip else 1) for v in p]
    assert stream.p.tolist() == signed


def arrays(*columns) -> Events:
    return tuple(np.asarray(column, dtype=np.int64) for column in columns)


@st.composite
def event_lists(draw: st.DrawFn, max_t_us: int = 2**26, max_size: int = 40) -> Events:
    """Sorted events on a 640x480 sensor over up to 67 s (4 loops of EVT 3.0's 24-bit time base)."""
    count = draw(st.integers(0, max_size))

    def column(values: st.SearchStrategy[int]) -> list[int]:
        return draw(st.lists(values, min_size=count, max_size=count))

    return arrays(sorted(column(st.integers(0, max_t_us))), column(st.integers(0, WIDTH - 1)),
                  column(st.integers(0, HEIGHT - 1)), column(st.integers(0, 1)))


# ---------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", list(WRITERS))
@settings(max_examples=12, deadline=None)
@given(events=event_lists())
def test_round_trip_is_exact(name: str, events: Events) -> None:
    with tempfile.TemporaryDirectory() as folder:
        assert_events(read_back(name, Path(folder), events), events)


@pytest.mark.parametrize("name", list(WRITERS))
def test_empty_one_event_and_flipped(name: str, tmp_path: Path) -> None:
    one = arrays([123_456], [WIDTH - 1], [HEIGHT - 1], [1])
    for case, events, flip in (("empty", arrays([], [], [], []), False), ("one", one, False), ("flip", one, True)):
        (tmp_path / case).mkdir()
        assert_events(read_back(name, tmp_path / case, events, flip_polarity=flip), events, flip=flip)


def test_readers_name_the_file_when_it_is_missing(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"absent\.raw: file not found"):
        read_events(tmp_path / "absent.raw")


# ---------------------------------------------------------------------------------- .npz and .txt
@pytest.mark.parametrize("layout", ["e2vid_names", "table", "structured"])
def test_npz_layouts(tmp_path: Path, layout: str) -> None:
    t, x, y, p = events = arrays([5, 9], [1, 2], [3, 4], [0, 1])
    if layout == "e2vid_names":
        np.savez(tmp_path / "e.npz", ts=t, xs=x, ys=y, ps=p.astype(bool))
    elif layout == "table":
        np.savez(tmp_path / "e.npz", events=np.column_stack(events))
    else:
        table = np.zeros(2, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
        table["t"], table["x"], table["y"], table["p"] = events
        np.savez(tmp_path / "e.npz", table)
    assert_events(read_events(tmp_path / "e.npz", width=WIDTH, height=HEIGHT), events)


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "odd.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(EventFileError, match=r"odd\.npz: expected arrays t, x, y, p .* found \['a', 'b'\]"):
        read_events(tmp_path / "odd.npz", width=4, height=4)
    np.savez(tmp_path / "short.npz", t=np.arange(3), x=np.zeros(2), y=np.zeros(3), p=np.ones(3))
    with pytest.raises(EventFileError, match=r"short\.npz: 'x' must be 1-D with one entry per event"):
        read_events(tmp_path / "short.npz", width=4, height=4)
    with pytest.raises(EventFileError, match=r"short\.npz: npz files do not store the sensor size"):
        read_events(tmp_path / "short.npz")


def test_txt_seconds_signed_polarity_comments_and_units(tmp_path: Path) -> None:
    """ESIM writes seconds with 9 decimals and 0/1 polarity; DVS-Voltmeter-style files hold µs integers, some ±1."""
    path = tmp_path / "esim.txt"
    path.write_text("# t x y p\n0.000000501 3 2 1\n0.000001499 0 0 0  # trailing comment\n\n1.250000000 1 1 1\n")
    esim = arrays([1, 1, 1_250_000], [3, 0, 1], [2, 0, 1], [1, 0, 1])
    assert_events(read_events(path, width=4, height=3), esim, width=4, height=3)
    path.write_text("10 3 2 -1\n20 0 0 1\n")
    assert_events(read_events(path, width=4, height=3), arrays([10, 20], [3, 0], [2, 0], [0, 1]), width=4, height=3)
    assert read_events(path, width=4, height=3, time_unit="ms").t_us.tolist() == [10_000, 20_000]
    assert read_events(path, width=4, height=3, time_unit="ns").t_us.tolist() == [0, 0]
    path.write_text("1700000000123456789 1 1 1\n")  # ns since 1970: beyond float64's exact integers, still exact
    assert read_events(path, width=4, height=3, time_unit="ns").t_us.tolist() == [1_700_000_000_123_457]


@pytest.mark.parametrize(("content", "message"), [
    ("1 2 3\n", r"line 1: expected 't x y p'"),
    ("4 x\n1 2 3 1\n", r"line 1: a two-field first line must be 'width height'"),
    ("4 3\n1 2 3 1\n", r"'y' spans \[3, 3\] but the sensor is 4x3"),
    ("1 1 1 1\n2.5 1 1 1\n", r"not 't x y p' text \(ValueError.*'2\.5'"),
    ("1 1 1 2\n", r"polarity must be 0/1 \(OFF/ON\) or -1/\+1, found values \[2\]"),
    ("5 1 1 1\n3 1 1 1\n", r"timestamps are not sorted"),
])
def test_txt_errors_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises((EventFileError, EventStreamError), match=message) as info:
        read_events(path, format="txt", width=4, height=3 if "4 3" not in content else None)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------- DSEC
def test_dsec_offset_blosc_and_missing_parts(tmp_path: Path) -> None:
    events = arrays([7_000_000, 7_000_010, 9_500_000], [1, 2, 3], [0, 1, 2], [1, 0, 1])
    path = write_dsec(tmp_path / "events.h5", *events, t_offset_us=6_999_000)
    with h5py.File(path) as file:
        assert file["events/t"].id.get_create_plist().get_filter(0)[0] == 32001  # Blosc, via hdf5plugin
        assert file["events/t"][0] == 1000
    assert_events(read_events(path, width=WIDTH, height=HEIGHT), events)
    with h5py.File(path, "a") as file:
        del file["t_offset"]
    assert read_events(path, width=WIDTH, height=HEIGHT).t_us.tolist() == [1000, 1010, 2_501_000]
    with h5py.File(path, "a") as file:
        file["t_offset"] = np.int64(2**63 - 1000)
        del file["events/p"]
    with pytest.raises(EventFileError, match=r"events\.h5: missing dataset 'events/p'"):
        read_events(path, width=WIDTH, height=HEIGHT)
    with h5py.File(path, "a") as file:
        file["events/p"] = np.ones(3, np.uint8)
    with pytest.raises(EventFileError, match=r"t_offset 9223372036854774808 \+ events/t spans .* beyond int64"):
        read_events(path, width=WIDTH, height=HEIGHT)


# ---------------------------------------------------------------------------------- AEDAT 4.0
def test_aedat4_frames_and_events_from_one_davis_file(tmp_path: Path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    bgr = np.zeros((3, 4, 3), np.uint8)
    bgr[..., 0] = 200  # blue, in OpenCV's channel order
    events = arrays([100, 150, 150], [0, 3, 1], [2, 0, 1], [1, 0, 1])
    path = write_aedat4(tmp_path / "davis.aedat4", *events, width=4, height=3, frames=[(90, grey), (160, bgr)])
    assert_events(read_events(path), events, width=4, height=3)
    frames = read_frames_aedat4(path)
    assert [frame.t_us for frame in frames] == [90, 160]
    np.testing.assert_array_equal(frames[0].pixels, grey)
    np.testing.assert_array_equal(frames[1].pixels, bgr[..., ::-1])  # aedat gives RGB
    only_events = write_aedat4(tmp_path / "dvxplorer.aedat4", *events, width=4, height=3)
    assert read_frames_aedat4(only_events) == []
    with pytest.raises(EventFileError, match=r"dvxplorer\.aedat4: event stream is 3x4 \(HxW\) but width=5"):
        read_events(only_events, width=5)


def test_aedat4_broken_headers_are_errors_not_crashes(tmp_path: Path) -> None:
    """aedat aborts the process on a stream description that is not UTF-8; the reader must refuse it first."""
    path = write_aedat4(tmp_path / "e.aedat4", *arrays([1], [0], [0], [1]), width=4, height=3)
    data = bytearray(path.read_bytes())
    at = data.index(b'<dv version="2.0">') + 5
    data[at] = 0xC5  # a lone UTF-8 lead byte inside the XML
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=r"e\.aedat4: corrupt AEDAT 4.0 header"):
        read_events(path)
    path.write_bytes(bytes(data[:30]))
    with pytest.raises(EventFileError, match=r"e\.aedat4: truncated AEDAT 4.0 header"):
        read_events(path)
    path.write_bytes(b"#!AER-DAT3.1\r\n" + bytes(100))
    with pytest.raises(EventFileError, match=r"AER-DAT3\.1 is not supported, only AEDAT 4\.0"):
        read_events(path)


# ---------------------------------------------------------------------------------- Prophesee RAW
def test_evt3_vectorised_events_and_skipped_words(tmp_path: Path) -> None:
    """One word sequence as the spec describes it: a VECT_12 and a VECT_8 after VECT_BASE_X, single events,
    and trigger / OTHERS / CONTINUED_4 words that carry no CD event."""
    words = np.array([
        0x8001,  # EVT_TIME_HIGH 1
        0x0005,  # EVT_ADDR_Y 5
        0x6010,  # EVT_TIME_LOW 0x010: t = 1 << 12 | 0x010 = 4112 µs
        0x3000 | 1 << 11 | 100,  # VECT_BASE_X 100, polarity ON
        0x4000 | 0b1000_0000_0101,  # VECT_12: x = 100, 102, 111; base becomes 112
        0x5000 | 0b1000_0001,  # VECT_8: x = 112, 119; base becomes 120
        0x2000 | 7,  # EVT_ADDR_X 7, OFF
        0xA000 | 2 << 8 | 1,  # EXT_TRIGGER
        0xE123, 0x7005,  # OTHERS, CONTINUED_4
        0x6011, 0x2000 | 1 << 11 | 9,  # 4113 µs: x = 9, ON
    ], "<u2")
    path = write_raw(tmp_path, EVT3_HEADER, words)
    expected = arrays([4112] * 6 + [4113], [100, 102, 111, 112, 119, 7, 9], [5] * 7, [1, 1, 1, 1, 1, 0, 1])
    assert_events(read_events(path), expected)


def test_evt3_time_base_loops_are_counted(tmp_path: Path) -> None:
    """The 24-bit time base loops every 2^24 µs; the decoder restarts at 0 and the reader adds the loops back."""
    loop = 2**24
    events = arrays([loop - 2, loop - 1, loop, loop + 4096, 3 * loop + 5, 3 * loop + 5], [1, 2, 3, 4, 5, 6],
                    [0] * 6, [1, 0, 1, 0, 1, 1])
    assert_events(read_events(write_raw(tmp_path, EVT3_HEADER, evt3_words(*events))), events)
    sparse = np.array([0x8FFF, 0x0000, 0x6FFE, 0x2001, 0x8000, 0x6003, 0x2002], "<u2")  # TIME_HIGH 0xFFF → 0x000
    assert read_events(write_raw(tmp_path, EVT3_HEADER, sparse)).t_us.tolist() == [loop - 2, loop + 3]


def test_evt2_time_high_bits_and_triggers(tmp_path: Path) -> None:
    events = arrays([0, 63, 64, 2**33 + 5], [0, 2047 % WIDTH, 5, 6], [0, 1, HEIGHT - 1, 7], [0, 1, 1, 0])
    words = evt2_words(*events)
    trigger = np.array([0xA << 28 | 5 << 22 | 1], "<u4")
    path = write_raw(tmp_path, EVT2_HEADER, np.concatenate([words[:3], trigger, words[3:]]))
    assert_events(read_events(path), events)
    unsorted = arrays([10, 5], [0, 0], [0, 0], [1, 1])
    with pytest.raises(EventStreamError, match=r"events\.raw: timestamps are not sorted"):
        read_events(write_raw(tmp_path, EVT2_HEADER, evt2_words(*unsorted)))


def test_raw_encoding_comes_from_the_header(tmp_path: Path) -> None:
    events = arrays([1, 2], [1, 2], [3, 4], [1, 0])
    evt3_file = write_raw(tmp_path, EVT3_HEADER, evt3_words(*events), "three.raw")
    with pytest.raises(EventFileError, match=r"three\.raw: the header says the data is EVT3, not EVT2"):
        read_events(evt3_file, format="evt2")
    bare = write_raw(tmp_path, b"% date 2024-01-01\n% end\n", evt3_words(*events), "bare.raw")
    with pytest.raises(EventFileError, match=r"bare\.raw: the header names no encoding.*evt2 or evt3"):
        read_events(bare, width=WIDTH, height=HEIGHT)
    assert_events(read_events(bare, format="evt3", width=WIDTH, height=HEIGHT), events)
    with pytest.raises(EventFileError, match=r"bare\.raw: no sensor size in the header; pass width and height"):
        read_events(bare, format="evt3")
    newer = write_raw(tmp_path, b"% evt 2.1\n% end\n", np.zeros(4, "<u4"), "evt21.raw")
    with pytest.raises(EventFileError, match=r"evt21\.raw: EVT21 data is not supported"):
        read_events(newer)
    both = write_raw(tmp_path, b"% evt 3.0\n% format EVT2\n% end\n", np.zeros(4, "<u4"), "both.raw")
    with pytest.raises(EventFileError, match=r"both\.raw: the header names two encodings"):
        read_events(both)


def test_raw_content_is_detected_whatever_the_name(tmp_path: Path) -> None:
    events = arrays([1, 2], [1, 2], [3, 4], [1, 0])
    for name, header, words in (("evt3", EVT3_HEADER, evt3_words(*events)), ("evt2", EVT2_HEADER, evt2_words(*events))):
        path = write_raw(tmp_path, header, words, f"recording_{name}.bin")  # expelliarmus wants *.raw: read a copy
        assert detect_format(path) == name
        assert_events(read_events(path), events)


@pytest.mark.parametrize(("events", "first_word"), [
    (arrays([0x25 << 6, 0x25 << 6], [1, 2], [3, 4], [1, 0]), 0),  # TIME_HIGH 0x25 starts with "%"
    (arrays([1, 2], [1, 2], [0x25, 4], [1, 0]), 1),  # no TIME_HIGH first: the CD word's low byte is y = 0x25
])
def test_evt2_data_starting_with_a_percent_sign(tmp_path: Path, events: Events, first_word: int) -> None:
    """expelliarmus takes such data for a header line: it would swallow the events, or hang without a newline."""
    words = evt2_words(*events)[first_word:]
    assert words.tobytes()[:1] == b"%" and b"\n" not in words.tobytes()
    assert_events(read_events(write_raw(tmp_path, EVT2_HEADER, words)), events)


@pytest.mark.parametrize(("cut", "message"), [
    (1, r"truncated: EVT 2\.0 data is 32-bit words"),
    (4, None),  # a whole word less: just one event less
])
def test_raw_truncated(tmp_path: Path, cut: int, message: str | None) -> None:
    events = arrays([1, 2, 3], [1, 2, 3], [3, 4, 5], [1, 0, 1])
    path = write_raw(tmp_path, EVT2_HEADER, evt2_words(*events))
    path.write_bytes(path.read_bytes()[:-cut])
    if message is None:
        assert len(read_events(path)) == 2
    else:
        with pytest.raises(EventFileError, match=message):
            read_events(path)
    odd = write_raw(tmp_path, EVT3_HEADER, evt3_words(*events), "odd.raw")
    odd.write_bytes(odd.read_bytes()[:-1])
    with pytest.raises(EventFileError, match=r"odd\.raw: truncated: EVT 3\.0 data is 16-bit words"):
        read_events(odd)
    (tmp_path / "cut.raw").write_bytes(b"% evt 3.0\n% form")
    with pytest.raises(EventFileError, match=r"cut\.raw: the header's last line has no end"):
        read_events(tmp_path / "cut.raw")


# ---------------------------------------------------------------------------------- Prophesee DAT and HDF5
def test_dat_with_and_without_size_fields(tmp_path: Path) -> None:
    events = arrays([5, 6, 2**32 - 1], [0, 16383 % WIDTH, 9], [7, 0, HEIGHT - 1], [1, 0, 1])
    path = tmp_path / "with.dat"
    path.write_bytes(dat_bytes(*events, width=WIDTH, height=HEIGHT))
    assert_events(read_events(path), events)
    with pytest.raises(EventFileError, match=r"with\.dat: sensor size in the header is 480x640 \(HxW\) but width=10"):
        read_events(path, width=10)
    path = tmp_path / "without.dat"
    path.write_bytes(dat_bytes(*events, width=None, height=None))
    with pytest.raises(EventFileError, match=r"without\.dat: no sensor size in the header; pass width and height"):
        read_events(path)
    assert_events(read_events(path, width=WIDTH, height=HEIGHT), events)
    atis = tmp_path / "atis.dat"  # ATIS-era files say event type 0x00
    atis.write_bytes(dat_bytes(*events, event_type=0x00))
    assert_events(read_events(atis), events)


def test_dat_timestamps_continue_past_the_32_bit_wrap(tmp_path: Path) -> None:
    path = tmp_path / "long.dat"
    path.write_bytes(dat_bytes([2**32 - 5, 2**32 + 3], [1, 2], [3, 4], [1, 0]))  # the file holds 4294967291, 3
    assert read_events(path).t_us.tolist() == [2**32 - 5, 2**32 + 3]
    path.write_bytes(dat_bytes([10, 4], [1, 2], [3, 4], [1, 0]))  # not a wrap: a step back
    with pytest.raises(EventStreamError, match=r"long\.dat: timestamps are not sorted: event 1 has t=4 µs after t=10"):
        read_events(path)


@pytest.mark.parametrize(("content", "message"), [
    (dat_bytes([1], [1], [1], [1], event_size=16), r"holds events of type 0x0C, 16 bytes each"),
    (dat_bytes([1], [1], [1], [1], event_type=0x0E), r"holds events of type 0x0E"),
    (dat_bytes([1], [1], [1], [1])[:-3], r"truncated: 5 bytes of events"),
    (b"% Version 2\n", r"truncated: no event type and size after the header"),
    (dat_bytes([1], [1], [WIDTH], [1]), r"'y' spans \[640, 640\] but the sensor is 640x480"),
])
def test_dat_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.dat"
    path.write_bytes(content)
    with pytest.raises(EventFileError, match=message) as info:
        read_events(path)
    assert str(path) in str(info.value)


def test_prophesee_hdf5_needs_the_ecf_codec(tmp_path: Path) -> None:
    path = write_prophesee_h5(tmp_path / "evk4.hdf5", *arrays([1, 2], [1, 2], [3, 4], [1, 0]))
    assert detect_format(path) == "prophesee_h5"
    with pytest.raises(EventFileError, match=r"evk4\.hdf5: a Prophesee HDF5 event file; it needs Prophesee's ECF codec "
                                             r"\(HDF5 filter 0x8ECF\).*hdf5_ecf.*HDF5_PLUGIN_PATH"):
        read_events(path)
    plain = write_prophesee_h5(tmp_path / "plain.hdf5", *arrays([1, 2], [1, 2], [3, 4], [1, 0]), geometry=None,
                               ecf=False)
    with pytest.raises(EventFileError, match=r"plain\.hdf5: no geometry attribute; pass width and height"):
        read_events(plain)
    assert len(read_events(plain, width=3, height=5)) == 2


# ---------------------------------------------------------------------------------- detection and options
def test_detection_by_content_then_suffix(tmp_path: Path) -> None:
    events = arrays([1], [1], [1], [1])
    for name in ("npy", "npz", "txt", "e2vid_h5", "dsec_h5", "aedat4", "dat"):
        folder = tmp_path / name
        folder.mkdir()
        path = WRITERS[name](folder, *events)
        renamed = path.rename(folder / "no_suffix")
        assert detect_format(renamed) == name
    junk = tmp_path / "events.dat"
    junk.write_bytes(bytes(range(256)))  # a header-less DAT would look like this: only the suffix tells
    assert detect_format(junk) == "dat"
    with pytest.raises(EventFileError, match=r"events\.dat: no '% ' header"):
        read_events(junk)
    unknown = tmp_path / "events.bin"
    unknown.write_bytes(bytes(range(256)))
    with pytest.raises(EventFileError, match=r"events\.bin: not a known event file format.*npy \(.*evt3 \("):
        read_events(unknown)
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file["images/0"] = np.zeros(3)
    with pytest.raises(EventFileError, match=r"other\.h5: an HDF5 file of no known event layout.*\['images'\]"):
        read_events(tmp_path / "other.h5")


def test_explicit_format_and_option_checks(tmp_path: Path) -> None:
    path = write_txt(tmp_path, *arrays([1], [1], [1], [1])).rename(tmp_path / "events.dat")
    assert_events(read_events(path, format="txt"), arrays([1], [1], [1], [1]))
    with pytest.raises(EventFileError, match=r"events\.dat: unknown format 'csv'; known: npy"):
        read_events(path, format="csv")
    aedat = WRITERS["aedat4"](tmp_path, *arrays([1], [1], [1], [1]))
    with pytest.raises(EventFileError, match=r"aedat4 timestamps are µs by definition; time_unit applies to npz, txt, "
                                             r"e2vid_h5 only"):
        read_events(aedat, time_unit="s")
    with pytest.raises(EventFileError, match=r"time_unit must be one of s, ms, us, ns or None, got 'min'"):
        read_events(path, format="txt", time_unit="min")
