"""Voxel-grid speed vs an np.add.at E2VID reference, plus event focal stack build/query cost.

    python benchmarks/bench_voxel.py --events 10_000_000 --repeats 5

Both voxel grids run in the same process on the same events; the speed ratio (project target:
>= 10x on CPU) is the headline, absolute seconds depend on machine load. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.stream import EventStream
from evfocus.events.voxel import voxel_grid

WIDTH, HEIGHT = 346, 260


def reference_voxel(
    t_us: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, num_bins: int
) -> np.ndarray:
    """E2VID's voxel grid as published: float64 times, float32 grid, np.add.at, out-of-range
    neighbours dropped."""
    grid = np.zeros(num_bins * HEIGHT * WIDTH, np.float32)
    span = float(t_us[-1] - t_us[0]) or 1.0
    tau = (num_bins - 1) * (t_us - t_us[0]) / span
    left = tau.astype(np.int64)
    frac = tau - left
    polarity = p.astype(np.float64)
    for bins, weight in ((left, polarity * (1.0 - frac)), (left + 1, polarity * frac)):
        valid = bins < num_bins
        np.add.at(grid, x[valid] + y[valid] * WIDTH + bins[valid] * HEIGHT * WIDTH, weight[valid])
    return grid.reshape(num_bins, HEIGHT, WIDTH)


def timed(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float, object]]:
    """Median and best wall seconds per run, the runs interleaved so that they share the load of
    a shared machine alike; the best run is the least disturbed one."""
    walls: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            walls[name].append(time.perf_counter() - start)
    return {name: (statistics.median(w), min(w), results[name]) for name, w in walls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bins", type=int, default=16)
    parser.add_argument("--fine-bins", type=int, default=480)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--duration-us", type=int, default=4_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)

    rng = np.random.default_rng(args.seed)
    t_us = np.sort(rng.integers(0, args.duration_us + 1, args.events))
    x = rng.integers(0, WIDTH, args.events)
    y = rng.integers(0, HEIGHT, args.events)
    p = rng.choice(np.array([-1, 1]), args.events)
    events = EventStream.from_arrays(t_us, x, y, p, WIDTH, HEIGHT, source="bench")

    t0 = torch.from_numpy(rng.uniform(0, args.duration_us, args.queries))
    t1 = torch.from_numpy(rng.uniform(0, args.duration_us, args.queries))
    stack = EventFocalStack.from_events(events, 0, args.duration_us, args.fine_bins)
    timings = timed({
        "ours": lambda: voxel_grid(events, args.bins),
        "ref": lambda: reference_voxel(t_us, x, y, p, args.bins),
        "build": lambda: EventFocalStack.from_events(events, 0, args.duration_us, args.fine_bins),
        "full": lambda: stack.segments(t0, t1, args.bins),
        "patch": lambda: stack.segments(t0, t1, args.bins, window=(100, 150, 32, 32)),
    }, args.repeats)
    (ours_s, ours_best, ours), (ref_s, ref_best, ref) = timings["ours"], timings["ref"]
    build_s, build_best, _ = timings["build"]
    (full_s, full_best, _), (patch_s, patch_best, _) = timings["full"], timings["patch"]
    max_diff = float(np.abs(ours.numpy() - ref).max())

    n = args.events
    print(f"{n:,} events, {WIDTH}x{HEIGHT}, B={args.bins}, 2 threads, median of {args.repeats}\n")
    print("| step | median s | best s | events/s (median) | note |")
    print("|---|---|---|---|---|")
    print(f"| np.add.at E2VID reference | {ref_s:.3f} | {ref_best:.3f} | {n / ref_s:.3g} | |")
    print(f"| evfocus voxel_grid | {ours_s:.3f} | {ours_best:.3f} | {n / ours_s:.3g} | "
          f"{ref_s / ours_s:.1f}x faster (median), {ref_best / ours_best:.1f}x (best); "
          f"max abs diff {max_diff:.2e} |")
    print(f"| EventFocalStack.from_events K={args.fine_bins} | {build_s:.3f} | {build_best:.3f} | "
          f"{n / build_s:.3g} | {stack.cumulative.numel() * 4 / 2**20:.0f} MiB |")
    print(f"| {args.queries} segments, full frame, B={args.bins} | {full_s:.3f} | {full_best:.3f} | | |")
    print(f"| {args.queries} segments, 32x32 window, B={args.bins} | {patch_s:.4f} | {patch_best:.4f} | | |")


if __name__ == "__main__":
    main()
