"""Reading a file in a child process with a deadline, so that a reader stuck in C code fails instead of hanging.

The HDF5 C library can loop forever on some damaged files (HDFGroup/hdf5#1707, h5py#2088): no Python timeout or
signal can interrupt it, and a run would hang without a word. ``call_with_deadline`` runs the read in a forked
child; a child that misses its deadline is killed and the file named in an ``EventFileError``. Errors raised in
the child reach the caller unchanged. Where ``fork`` does not exist (Windows), and in daemonic processes, the
read runs in this process.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TypeVar

import torch

from evfocus.events.checks import EventFileError

SECONDS_BASE = 30.0
SECONDS_PER_MB = 1.0  # ~50x the time h5py needs to read and decompress a MB of events on a slow laptop disk

Result = TypeVar("Result")


def default_deadline_s(path: Path) -> float:
    """How long reading ``path`` may take before it counts as stuck: 30 s plus 1 s per MB of file."""
    return SECONDS_BASE + SECONDS_PER_MB * path.stat().st_size / 2**20


def _child(send: Connection, read: Callable[[], object], path: Path) -> None:
    torch.set_num_threads(1)  # the parent's OpenMP threads do not exist in a forked child
    try:
        outcome = ("ok", read())
    except BaseException as error:  # every failure goes back to the parent, which re-raises it
        outcome = ("error", error)
    try:
        send.send(outcome)
    except Exception as error:  # an exception or result that does not pickle: its text still reaches the parent
        send.send(("error", EventFileError(f"{path}: {type(outcome[1]).__name__}: {outcome[1]} "
                                           f"(not passed back from the reading process: {error})")))
    finally:
        send.close()


def call_with_deadline(read: Callable[[], Result], path: Path, deadline_s: float | None = None) -> Result:
    """``read()`` (which reads ``path`` and returns a picklable value) in a forked child process, killed after
    ``deadline_s`` seconds (None: ``default_deadline_s``) with an ``EventFileError`` naming the file.

    ``float("inf")``, a platform without ``fork`` or a daemonic process (a DataLoader worker, which may not
    have children) runs ``read`` here, without a deadline.
    """
    deadline_s = default_deadline_s(path) if deadline_s is None else deadline_s
    if deadline_s <= 0:
        raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
    if (deadline_s == float("inf") or "fork" not in multiprocessing.get_all_start_methods()
            or multiprocessing.current_process().daemon):
        return read()
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, read, path), daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(deadline_s):
            raise EventFileError(f"{path}: reading did not finish within {deadline_s:.0f} s and was stopped; the "
                                 "file is probably damaged (the HDF5 library can loop forever on some corrupted "
                                 "files). A sound file on a slow disk may need a longer read deadline.")
        status, value = receive.recv()
    except EOFError:
        process.join()
        raise EventFileError(f"{path}: the process reading it died (exit code {process.exitcode}) without an "
                             "answer; the file is probably damaged") from None
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receive.close()
    if status == "error":
        raise value
    return value
