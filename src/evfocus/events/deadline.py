"""A trial read in a child process with a deadline, so that a reader stuck in C code fails instead of hanging.

The HDF5 C library can loop forever on some damaged files (HDFGroup/hdf5#1707, h5py#2088): no Python timeout or
signal can interrupt it, and a run would hang without a word. ``require_read_finishes`` reads the file once in a
forked child; a child that misses its deadline is killed, and one that dies (a crash in C) is reported, each as
an ``EventFileError`` naming the file. Only then does the caller read it for real: reading twice costs less
than passing millions of events back from the child (``benchmarks/RESULTS.md``, "Event-file formats"), and a
child that finished, however it ended, means the caller's read of the same bytes finishes too; its errors are
raised there, with their own type. Where ``fork`` does not exist (Windows), and in daemonic processes, there
is no trial.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import torch

from evfocus.events.checks import EventFileError

SECONDS_BASE = 30.0
SECONDS_PER_MB = 1.0  # ~50x the time h5py needs to read and decompress a MB of events on a slow laptop disk


def default_deadline_s(path: Path) -> float:
    """How long reading ``path`` may take before it counts as stuck: 30 s plus 1 s per MB of file."""
    return SECONDS_BASE + SECONDS_PER_MB * path.stat().st_size / 2**20


def _trial(read: Callable[[], object]) -> None:
    torch.set_num_threads(1)  # the parent's OpenMP threads do not exist in a forked child
    with contextlib.suppress(BaseException):  # finishing is all the trial asks: the caller's read raises it again
        read()


def require_read_finishes(read: Callable[[], object], path: Path, deadline_s: float | None = None) -> None:
    """Run ``read()`` (which reads ``path``) in a forked child; an ``EventFileError`` naming the file when it
    has not finished after ``deadline_s`` seconds (None: ``default_deadline_s``) or died. Its result and any
    error it raised are dropped: the caller reads again, in its own process.

    ``float("inf")``, a platform without ``fork`` or a daemonic process (a DataLoader worker, which may not
    have children) skips the trial.
    """
    deadline_s = default_deadline_s(path) if deadline_s is None else deadline_s
    if deadline_s <= 0:
        raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
    if (deadline_s == float("inf") or "fork" not in multiprocessing.get_all_start_methods()
            or multiprocessing.current_process().daemon):
        return
    process = multiprocessing.get_context("fork").Process(target=_trial, args=(read,), daemon=True)
    process.start()
    process.join(deadline_s)
    if process.is_alive():
        process.kill()
        process.join()
        raise EventFileError(f"{path}: reading did not finish within {deadline_s:.0f} s and was stopped; the "
                             "file is probably damaged (the HDF5 library can loop forever on some corrupted "
                             "files). A sound file on a slow disk may need a longer read deadline.")
    if process.exitcode != 0:
        raise EventFileError(f"{path}: the process reading it died (exit code {process.exitcode}); the file is "
                             "probably damaged")
