"""Read throughput per event-file format: one recording written once in every format, read back by read_events.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_formats.py --events 10_000_000 --repeats 3

The same sorted events (EVK4-sized 1280x720 sensor, uniform over 20 s, so EVT 3.0's 24-bit time base loops
once) are written to a temporary folder by each format's own writer, or encoded from the spec for Prophesee
RAW/DAT, as the tests do (``tests/event_files.py``; the package carries no encoders). Each file is then read
with ``read_events`` (format detected from the content, every check included) ``--repeats`` times, the formats
interleaved so they share the machine's load alike; the table gives the median, events/s and the ratio to
the reference ``.npy`` reader in the same run. Every read is compared with the events written. HDF5 files are
first read once in a child process with a deadline (``events.deadline``); their rows "no trial" read the same
file with ``read_deadline_s=inf``, to show what the trial costs. Prophesee HDF5 is not measured: its ECF codec is not
installed here.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the writers live beside the tests
from event_files import (
    EVT2_HEADER,
    EVT3_HEADER,
    dat_bytes,
    evt2_words,
    evt3_words,
    raw_bytes,
    write_aedat4,
    write_dsec,
)

from evfocus.events.formats import FORMATS, read_events
from evfocus.events.io import write_events_h5
from evfocus.events.stream import EventStream

WIDTH, HEIGHT = 1280, 720


def writers(t_us: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> dict[str, Callable[[Path], None]]:
    """Format name → a function writing the events to a file of that format."""
    columns = (t_us, x, y, p)
    stream = EventStream.from_arrays(t_us, x, y, p * 2 - 1, WIDTH, HEIGHT)
    return {
        "npy": lambda path: np.save(path, np.column_stack(columns)),
        "npz": lambda path: np.savez(path, t=t_us, x=x, y=y, p=p),
        "txt": lambda path: np.savetxt(path, np.column_stack(columns), fmt="%d", header=f"{WIDTH} {HEIGHT}",
                                       comments=""),
        "e2vid_h5": lambda path: write_events_h5(path, stream),
        "dsec_h5": lambda path: write_dsec(path, *columns, t_offset_us=0),
        "aedat4": lambda path: write_aedat4(path, *columns, WIDTH, HEIGHT, packet_events=100_000),
        "evt2": lambda path: path.write_bytes(raw_bytes(EVT2_HEADER, evt2_words(*columns), WIDTH, HEIGHT)),
        "evt3": lambda path: path.write_bytes(raw_bytes(EVT3_HEADER, evt3_words(*columns), WIDTH, HEIGHT)),
        "dat": lambda path: path.write_bytes(dat_bytes(*columns, WIDTH, HEIGHT)),
    }


HDF5_FORMATS = ("e2vid_h5", "dsec_h5")
SUFFIXES = {"npy": ".npy", "npz": ".npz", "txt": ".txt", "e2vid_h5": ".h5", "dsec_h5": ".h5", "aedat4": ".aedat4",
            "evt2": ".raw", "evt3": ".raw", "dat": ".dat"}


def busy_seconds() -> float:
    """CPU seconds all processes spent busy so far (``/proc/stat``), to tell the load others put on the machine."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration-us", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    t_us = np.sort(rng.integers(0, args.duration_us, args.events))
    x, y, p = rng.integers(0, WIDTH, args.events), rng.integers(0, HEIGHT, args.events), rng.integers(0, 2, args.events)
    with tempfile.TemporaryDirectory() as folder:
        paths, write_s = {}, {}
        for name, write in writers(t_us, x, y, p).items():
            paths[name] = Path(folder) / f"events_{name}{SUFFIXES[name]}"
            start = time.perf_counter()
            write(paths[name])
            write_s[name] = time.perf_counter() - start
        reads = {name: (name, {}) for name in paths}
        reads.update({f"{name}, no trial": (name, {"read_deadline_s": math.inf}) for name in HDF5_FORMATS})
        walls: dict[str, list[float]] = {row: [] for row in reads}
        busy, cpu, wall = busy_seconds(), time.process_time(), time.perf_counter()
        for _ in range(args.repeats):
            for row, (name, options) in reads.items():
                size = {"width": WIDTH, "height": HEIGHT} if not FORMATS[name].stores_size else {}
                start = time.perf_counter()
                events = read_events(paths[name], **size, **options)
                walls[row].append(time.perf_counter() - start)
                assert np.array_equal(events.t_us.numpy(), t_us) and np.array_equal(events.x.numpy(), x), name
                assert np.array_equal(events.y.numpy(), y) and np.array_equal(events.p.numpy(), p * 2 - 1), name
                del events
        elapsed = time.perf_counter() - wall
        other_load = (busy_seconds() - busy - (time.process_time() - cpu)) / (elapsed * os.cpu_count())
        sizes = {name: path.stat().st_size / 2**20 for name, path in paths.items()}
    npy_s = statistics.median(walls["npy"])
    print(f"{args.events:,} events, {WIDTH}x{HEIGHT}, {args.duration_us / 1e6:g} s, median of {args.repeats}; "
          f"other load {other_load:.0%}\n")
    print("| format | library | file MiB | write s | read s (median) | Mev/s | time vs .npy |")
    print("|---|---|---|---|---|---|---|")
    for row, runs in walls.items():
        name = reads[row][0]
        median = statistics.median(runs)
        library = FORMATS[name].description.rsplit("(", 1)[-1].rstrip(")")
        print(f"| {row} | {library} | {sizes[name]:.0f} | {write_s[name]:.1f} | {median:.2f} | "
              f"{args.events / median / 1e6:.1f} | {median / npy_s:.1f}x |")


if __name__ == "__main__":
    main()
