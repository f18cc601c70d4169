"""Per-pixel depth cues on the development captures: which one could reach AbsRel ≤ 0.25 (issue 10 §3)?

    python benchmarks/depth_cues.py --input ../shared/samples/efs_dev ../shared/samples/efs_dev_dense \
        [--ckpt weights/evfocus-release.pt]

Per capture, depth AbsRel over every pixel with ground truth (raw, and after the pipeline's
``regularise_depth`` guided by the input frame) for:

- ``frames``: depth from focus (argmax over time of the Gaussian-averaged Sobel energy) on the true
  sweep frames, where the capture ships them (``sweep_frames/``): the upper bound of a focus measure;
- ``integration``: the same on the frame refocused by event integration at the sweep's self-calibrated
  contrast at every node of a 64-bin focal stack;
- ``net``: the same on the frame refocused by a checkpoint's refocus net at ``--net-times`` times (one
  full-image pass each: slow on a CPU);
- ``symmetry``: no refocusing and no contrast: a pixel's brightness is a function of its blur radius,
  which is V-shaped in time around its focus (the sweep is linear in diopters), so its signed cumulative
  events are mirror-symmetric about the moment of focus; the time minimising the windowed asymmetry
  ``Σ_s (C(τ+s) − C(τ−s))² / Σ_s ((C(τ+s) − C(τ))² + (C(τ−s) − C(τ))²)`` is the estimate.

A diagnosis, no part of the pipeline: it prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import kornia
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from evfocus.checkpoints import load_nets, load_stage_checkpoint
from evfocus.data.captures import list_captures, read_capture
from evfocus.events.contrast import estimate_contrast
from evfocus.events.focal_stack import EventFocalStack
from evfocus.pipeline.aif import refocus_stack
from evfocus.pipeline.depth import depth_errors, regularise_depth
from evfocus.sweep import Sweep

NODES = 64


def gaussian(values: Tensor, sigma_px: float) -> Tensor:
    """(K, H, W) blurred per plane."""
    size = 2 * math.ceil(3 * sigma_px) + 1
    return kornia.filters.gaussian_blur2d(values[:, None], (size, size), (sigma_px, sigma_px))[:, 0]


def focus_index(frames: Tensor, sigma_px: float) -> Tensor:
    """(H, W) index of the sharpest of ``frames`` (K, 1, H, W) per pixel: Sobel energy over a Gaussian."""
    energy = kornia.filters.spatial_gradient(frames).pow(2).sum(dim=2)[:, 0]
    return gaussian(energy, sigma_px).argmax(dim=0)


def symmetry_index(cumulative: Tensor, sigma_px: float, max_lag: int = 16, min_lag: int = 2) -> Tensor:
    """(H, W) node about which each pixel's signed cumulative events (K, H, W) are most mirror-symmetric."""
    count = cumulative.shape[0]
    costs = torch.full(cumulative.shape, math.inf)
    for node in range(min_lag, count - min_lag):
        lags = min(node, count - 1 - node, max_lag)
        after, before = cumulative[node + 1:node + lags + 1], cumulative[node - lags:node].flip(0)
        centre = cumulative[node]
        asymmetry = (after - before).pow(2).sum(dim=0)
        spread = ((after - centre).pow(2) + (before - centre).pow(2)).sum(dim=0)
        costs[node] = gaussian(asymmetry[None], sigma_px)[0] / gaussian(spread[None], sigma_px)[0].clamp_min(1e-6)
    return costs.argmin(dim=0)


def depth_at(sweep: Sweep, times_us: Tensor, index: Tensor) -> Tensor:
    """(1, H, W) metres: the focus distance at ``times_us[index]``."""
    return (1.0 / sweep.schedule.focus_diopter(times_us[index]).float())[None]


def true_frames(root: str, name: str) -> tuple[Tensor, Tensor] | None:
    """The capture's rendered sweep frames (K, 1, H, W) grey and their times, when it ships them."""
    folder = Path(root) / "sweep_frames" / name
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.png"))
    grey = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255)
                        for f in files])[:, None]
    meta = json.loads((Path(root) / "meta" / f"{name}.json").read_text())
    return grey, torch.linspace(meta["sweep_start_us"], meta["sweep_end_us"], len(files), dtype=torch.float64)


def cue_depths(root: str, sweep: Sweep, sigmas_px: list[float], net, net_times: int) -> dict[float, dict[str, Tensor]]:
    """Per Gaussian window, each cue's (1, H, W) depth in metres."""
    schedule = sweep.schedule
    focal_stack = EventFocalStack.from_events(sweep.events, schedule.t_start_us, schedule.t_end_us, NODES)
    node_times = torch.linspace(schedule.t_start_us, schedule.t_end_us, NODES + 1, dtype=torch.float64)
    stacks: dict[str, tuple[Tensor, Tensor]] = {}  # cue → (grey frames (K, 1, H, W), their times)
    frames = true_frames(root, sweep.name)
    if frames is not None:
        stacks["frames"] = frames
    contrast = estimate_contrast(sweep.image, focal_stack, sweep.image_time_us).contrast
    at_frame = focal_stack.segments(node_times[:1], torch.tensor([float(sweep.image_time_us)], dtype=torch.float64),
                                    1)[0, 0]
    events = focal_stack.cumulative - focal_stack.cumulative[0] - at_frame
    stacks["integration"] = (torch.log(sweep.image.mean(dim=0) + 1e-3) + contrast * events).exp()[:, None], node_times
    if net is not None:
        times = torch.linspace(schedule.t_start_us, schedule.t_end_us, net_times, dtype=torch.float64)
        refocus = net.for_sweep(sweep.image, focal_stack, float(sweep.image_time_us))
        with torch.no_grad():
            stack, _ = refocus_stack(refocus, sweep.image, sweep.image_time_us, focal_stack, times, net.num_bins)
        stacks["net"] = stack.mean(dim=1, keepdim=True), times
    depths = {}
    for sigma in sigmas_px:
        depths[sigma] = {cue: depth_at(sweep, times, focus_index(grey, sigma)) for cue, (grey, times) in stacks.items()}
        depths[sigma]["symmetry"] = depth_at(sweep, node_times, symmetry_index(focal_stack.cumulative.float(), sigma))
    return depths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", nargs="+", required=True, help="capture folders with depth ground truth")
    parser.add_argument("--ckpt", default=None, help="also depth from focus on this refocus net's frames")
    parser.add_argument("--net-times", type=int, default=32)
    parser.add_argument("--sigma", type=float, nargs="+", default=[4.0, 8.0], help="Gaussian window(s), px")
    args = parser.parse_args()
    torch.set_num_threads(2)
    net = load_nets(load_stage_checkpoint(args.ckpt))[0] if args.ckpt else None
    print("| capture | σ px | " + " | ".join(f"{cue} raw / regularised" for cue in
                                             ("frames", "integration", *(["net"] if net else []), "symmetry")) + " |")
    print("|---|---|" + "---|" * (4 if net else 3))
    for root in args.input:
        for name in list_captures(root):
            sweep = read_capture(root, name)
            truth = sweep.depth_m.float()
            valid = torch.isfinite(truth)
            for sigma, depths in cue_depths(root, sweep, args.sigma, net, args.net_times).items():
                cells = []
                for depth in depths.values():
                    regular = regularise_depth(depth, torch.ones_like(depth), sweep.image)
                    scores = (depth_errors(d, truth, valid)["abs_rel"] for d in (depth, regular))
                    cells.append(" / ".join(f"{score:.3f}" for score in scores))
                if "frames" not in depths:
                    cells.insert(0, "—")
                print(f"| {Path(root).name}/{name} | {sigma:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
