"""Focal-sweep render speed on CPU: random scene → F luma frames (+ a few RGB frames).

The project target is one 256×256, 120-frame sweep *render + events* in under 1 s on 2 cores,
so the luma render should take about half of that. Scenes differ in layer count and slant,
so each size is timed over several seeds; each number is a median over repeats.

    python benchmarks/bench_render.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from evfocus.sim.render import render_focal_frames
from evfocus.sim.scene import SceneConfig, sample_scene
from evfocus.sim.textures import TextureBank


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up: caches (photos, FFT plans, OTF tables)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per scene (median taken)")
    parser.add_argument("--scenes", type=int, default=5, help="random scenes per image size")
    parser.add_argument("--frames", type=int, default=120, help="luma frames per sweep")
    parser.add_argument("--rgb-frames", type=int, default=4, help="RGB frames per sweep")
    parser.add_argument("--max-blur-radius-px", type=float, default=10.0, help="blur radius at sweep ends")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = SceneConfig()
    bank = TextureBank("train")
    near_diopter, far_diopter = 1 / config.near_m, 1 / config.far_m
    focus_diopter = torch.linspace(near_diopter, far_diopter, args.frames)
    rgb_focus = focus_diopter[torch.linspace(0, args.frames - 1, args.rgb_frames).long()]
    blur_px_per_diopter = 2 * args.max_blur_radius_px / (near_diopter - far_diopter)

    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}, "
          f"{args.frames} luma + {args.rgb_frames} RGB frames, max blur radius {args.max_blur_radius_px} px, "
          f"median of {args.repeats} repeats per scene, {args.scenes} scenes per size\n")
    print("| size | layers (per scene) | scene sampling s | luma render s (median / max over scenes) "
          "| RGB render s | luma + RGB s |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        layers, sampling, luma, rgb = [], [], [], []
        for seed in range(args.scenes):
            def draw(seed: int = seed, size: int = size):
                return sample_scene(torch.Generator().manual_seed(seed), size, size, config, bank)

            scene = draw()
            layers.append(len(scene.layers))
            sampling.append(median_seconds(draw, args.repeats))
            luma.append(median_seconds(
                lambda scene=scene: render_focal_frames(scene, focus_diopter, blur_px_per_diopter, "luma"),
                args.repeats))
            rgb.append(median_seconds(
                lambda scene=scene: render_focal_frames(scene, rgb_focus, blur_px_per_diopter, "rgb"),
                args.repeats))
        total = [a + b for a, b in zip(luma, rgb, strict=True)]
        print(f"| {size}×{size} | {', '.join(map(str, layers))} | {statistics.median(sampling):.3f} "
              f"| {statistics.median(luma):.3f} / {max(luma):.3f} | {statistics.median(rgb):.3f} "
              f"| {statistics.median(total):.3f} |")


if __name__ == "__main__":
    main()
