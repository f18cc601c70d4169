"""Speed of the event models on a sweep-like input (2 CPU threads, as the project target assumes).

Input: two textured layers (a foreground disc and a background), each Gaussian-blurred by a
sigma that shrinks to 0 at its own focus moment and grows again — what a focal sweep of a
two-depth scene looks like — as 8-bit-like grey 0–255 for DVS-Voltmeter and its linear
(gamma 2.2 decoded) version for the ideal model. 120 frames over a 1 s sweep.

    python benchmarks/bench_dvs.py --repeats 5
    python benchmarks/bench_dvs.py --repeats 7 --baseline e228598   # + the Voltmeter of that commit, same run

``--baseline REV`` loads ``src/evfocus/sim/dvs.py`` as it was at git revision REV beside the current
one and times both Voltmeters interleaved (same frames, same seeds), so the ratio holds on a machine
whose speed drifts.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from skimage import data

from evfocus.events.stream import EventStream
from evfocus.sim.dvs import DAVIS346, IdealParams, VoltmeterParams, simulate_ideal, simulate_voltmeter

NUM_FRAMES = 120
SWEEP_US = 1_000_000
MAX_SIGMA_PX = 6.0


def _texture(image, size: int) -> torch.Tensor:
    grey = torch.as_tensor(image, dtype=torch.float32)
    grey = grey.mean(-1) if grey.ndim == 3 else grey
    return torch.nn.functional.interpolate(grey[None, None] / 255.0, size=(size, size), mode="area")[0, 0]


def _blur_stack(image: torch.Tensor, sigma_px: torch.Tensor) -> torch.Tensor:
    """(F,H,W): ``image`` blurred by a Gaussian of ``sigma_px[f]`` (exact, in the Fourier domain)."""
    height, width = image.shape
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    gain = torch.exp(-2 * torch.pi**2 * sigma_px[:, None, None] ** 2 * (fy**2 + fx**2))
    return torch.fft.irfft2(torch.fft.rfft2(image) * gain, s=(height, width))


def sweep_frames(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey 0–255 frames (F,H,W) and their times (µs) of a two-layer focal sweep."""
    t = torch.linspace(0.0, 1.0, NUM_FRAMES)
    front = _blur_stack(_texture(data.camera(), size), MAX_SIGMA_PX * (t - 0.3).abs() / 0.7)
    back = _blur_stack(_texture(data.astronaut(), size), MAX_SIGMA_PX * (t - 0.7).abs() / 0.7)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2).float()
    grey = (disc * front + (1 - disc) * back).clamp(0.0, 1.0) * 255.0
    return grey, torch.linspace(0, SWEEP_US, NUM_FRAMES).round().to(torch.int64)


def time_model(run: Callable[[int], EventStream], repeats: int) -> tuple[float, float, int]:
    """Median and best wall time (s) over ``repeats`` and the event count of the last run."""
    run(0)  # warm-up (allocator, lazy init)
    seconds = []
    for seed in range(repeats):
        start = time.perf_counter()
        events = run(seed)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), min(seconds), len(events)


def module_at(revision: str) -> ModuleType:
    """``evfocus.sim.dvs`` as it was at git ``revision``, imported under its own name."""
    source = subprocess.run(["git", "show", f"{revision}:src/evfocus/sim/dvs.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "dvs_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("dvs_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["dvs_baseline"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def compare_voltmeters(baseline: ModuleType, revision: str, sizes: list[int], repeats: int,
                       sensitive: VoltmeterParams) -> None:
    """Baseline vs current Voltmeter, interleaved per seed; medians and their ratio."""
    print(f"\n| Voltmeter | size | {revision} median s | current median s | speed-up | events (base / current) |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        grey, times_us = sweep_frames(size)
        for name, params in (("DAVIS346", DAVIS346), ("k1×4", sensitive)):
            runs = {"base": baseline.simulate_voltmeter, "current": simulate_voltmeter}
            for run in runs.values():  # warm-up
                run(grey, times_us, params, torch.Generator().manual_seed(0))
            seconds: dict[str, list[float]] = {key: [] for key in runs}
            counts = {}
            for seed in range(repeats):
                for key, run in runs.items():
                    start = time.perf_counter()
                    counts[key] = len(run(grey, times_us, params, torch.Generator().manual_seed(seed)))
                    seconds[key].append(time.perf_counter() - start)
            base, current = (statistics.median(seconds[key]) for key in runs)
            print(f"| {name} | {size}×{size} | {base:.3f} | {current:.3f} | {base / current:.2f}× | "
                  f"{counts['base']} / {counts['current']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is 2)")
    parser.add_argument("--baseline", default=None, help="git revision whose Voltmeter to time beside the current")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sensitive = VoltmeterParams(4 * DAVIS346.k1, DAVIS346.k2, DAVIS346.k3, DAVIS346.k4, DAVIS346.k5,
                                DAVIS346.k6)
    print(f"{NUM_FRAMES} frames, {SWEEP_US / 1e6:g} s sweep, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}\n")
    print("| model | size | median s | best s | events | events/pixel | Mev/s |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        grey, times_us = sweep_frames(size)
        linear = (grey / 255.0) ** 2.2
        models = {
            "voltmeter DAVIS346": lambda s, g=grey, t=times_us: simulate_voltmeter(
                g, t, DAVIS346, torch.Generator().manual_seed(s)),
            "voltmeter k1×4": lambda s, g=grey, t=times_us: simulate_voltmeter(
                g, t, sensitive, torch.Generator().manual_seed(s)),
            "ideal C=0.2±0.03": lambda s, lin=linear, t=times_us: simulate_ideal(
                lin, t, IdealParams(), torch.Generator().manual_seed(s)),
        }
        for name, run in models.items():
            median_s, best_s, count = time_model(run, args.repeats)
            print(f"| {name} | {size}×{size} | {median_s:.3f} | {best_s:.3f} | {count} | "
                  f"{count / size**2:.2f} | {count / median_s / 1e6:.2f} |")
    if args.baseline:
        compare_voltmeters(module_at(args.baseline), args.baseline, args.sizes, args.repeats, sensitive)


if __name__ == "__main__":
    main()
