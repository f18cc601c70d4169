"""HDF5 event files are first read in a child process with a deadline: a stuck reader becomes a named error.

libhdf5 can loop forever on some damaged files (HDFGroup/hdf5#1707); those files cannot be made on demand, so
a reader that never returns stands in for it (the child is forked, so it runs the patched reader).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from evfocus.events.checks import EventFileError
from evfocus.events.deadline import require_read_finishes
from evfocus.events.formats import FORMATS, read_events
from evfocus.events.io import write_events_h5
from evfocus.events.stream import EventStream, EventStreamError


@pytest.fixture()
def h5_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    events = EventStream.from_arrays(np.sort(rng.integers(0, 10**6, 5000)), rng.integers(0, 64, 5000),
                                     rng.integers(0, 48, 5000), rng.choice([-1, 1], 5000), 64, 48, "test")
    path = tmp_path / "events.h5"
    write_events_h5(path, events)
    return path


def _stuck(*args, **kwargs) -> EventStream:
    while True:
        time.sleep(1)


def _unsorted(path: Path, **kwargs) -> EventStream:
    return EventStream.from_arrays(np.array([5, 1]), np.zeros(2), np.zeros(2), np.ones(2), 4, 4, str(path))


def _dies(*args, **kwargs) -> EventStream:
    os._exit(3)


def test_an_hdf5_file_read_after_its_trial_equals_the_read_without(h5_file: Path) -> None:
    child = read_events(h5_file)
    here = read_events(h5_file, read_deadline_s=float("inf"))
    for name in ("t_us", "x", "y", "p"):
        assert torch.equal(getattr(child, name), getattr(here, name)) and getattr(child, name).dtype == \
            getattr(here, name).dtype
    assert (child.width, child.height, len(child)) == (64, 48, 5000)


def test_a_stuck_reader_is_stopped_at_its_deadline_and_the_file_named(h5_file: Path, monkeypatch) -> None:
    monkeypatch.setitem(FORMATS, "e2vid_h5", replace(FORMATS["e2vid_h5"], read=_stuck))
    started = time.perf_counter()
    with pytest.raises(EventFileError, match=r"events\.h5: reading did not finish within 1 s"):
        read_events(h5_file, "e2vid_h5", read_deadline_s=1.0)
    assert time.perf_counter() - started < 15


def test_errors_raised_while_reading_reach_the_caller_with_their_type_and_message(h5_file: Path, monkeypatch) -> None:
    monkeypatch.setitem(FORMATS, "e2vid_h5", replace(FORMATS["e2vid_h5"], read=_unsorted))
    with pytest.raises(EventStreamError, match=r"events\.h5"):
        read_events(h5_file, "e2vid_h5")
    truncated = h5_file.with_name("truncated.h5")
    truncated.write_bytes(h5_file.read_bytes()[:3000])
    with pytest.raises(EventFileError, match=r"truncated\.h5"):
        read_events(truncated)


def test_a_reader_that_dies_is_named(h5_file: Path, monkeypatch) -> None:
    monkeypatch.setitem(FORMATS, "e2vid_h5", replace(FORMATS["e2vid_h5"], read=_dies))
    with pytest.raises(EventFileError, match=r"events\.h5: the process reading it died \(exit code 3\)"):
        read_events(h5_file, "e2vid_h5")


def test_the_trial_needs_a_positive_deadline_and_skips_an_infinite_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="deadline_s"):
        require_read_finishes(_stuck, tmp_path / "x.h5", 0.0)
    require_read_finishes(_stuck, tmp_path / "x.h5", float("inf"))  # no child: returns at once
