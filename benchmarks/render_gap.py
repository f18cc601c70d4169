"""Our renderer against ray tracing: a capture's sweep frames re-rendered from its all-in-focus image and depth.

    python benchmarks/render_gap.py --captures ../shared/samples/efs_dev [--layers 4 16 48]

efs_dev keeps the exact grey frames its event simulator saw (``sweep_frames/<name>/NNNNN.png``, round(BT.601
luma of the sRGB render)) and its thin lens (``meta/<name>.json``: ``renderer.focal_length_px``,
``renderer.aperture_radius_m``; the blur disc's diameter is 2 · f_px · a per diopter of defocus). This
re-renders every sweep frame with ``sim/render.py`` from the all-in-focus image and the depth map, the scene
cut into ``--layers`` layers evenly spaced in diopters (back to front, each with its own disc blur, as our
simulator composites occluders), and prints the median and worst per-frame PSNR against the ray-traced frame
over all pixels, over the pixels within the largest blur radius of an occlusion boundary (a depth step of more
than 10%), and over the rest. What the re-render cannot know — the surfaces hidden behind an occluder, which
a lens's aperture partly sees — falls in the boundary bands: the figure bounds how far our per-layer
compositing is from ray tracing there, it does not separate the two. docs/simulation_gap.md holds the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evfocus.colour import srgb_decode, srgb_encode
from evfocus.sim.render import render_focal_frames
from evfocus.sim.scene import Layer, Scene

BOUNDARY_LOG_STEP = math.log(1.1)  # a depth step of more than 10% between neighbours is an occlusion
BT601 = (0.299, 0.587, 0.114)


def layered_scene(aif_srgb: torch.Tensor, depth_m: torch.Tensor, num_layers: int) -> Scene:
    """The all-in-focus image (3, H, W, sRGB) and depth (1, H, W) as ``num_layers`` opaque layers evenly spaced
    in diopters, back to front; the background layer covers the whole frame (the hidden surfaces are unknown)."""
    colour = srgb_decode(aif_srgb)
    diopter = 1.0 / depth_m
    edges = torch.linspace(float(diopter.min()), float(diopter.max()), num_layers + 1)
    edges[-1] = math.inf
    layers = [Layer(colour, torch.ones_like(depth_m), depth_m)]
    for low, high in itertools.pairwise(edges[1:]):  # the farthest bin is the background
        mask = ((diopter >= low) & (diopter < high)).float()
        if bool(mask.any()):
            layers.append(Layer(colour, mask, depth_m))
    return Scene(layers)


def grey_frames(scene: Scene, focus_diopter: torch.Tensor, blur_px_per_diopter: float) -> torch.Tensor:
    """(F, H, W) in [0, 1]: the frames as efs_dev's event simulator saw them, 8-bit BT.601 luma of sRGB."""
    srgb = srgb_encode(render_focal_frames(scene, focus_diopter, blur_px_per_diopter, "rgb").clamp(0, 1))
    grey = (srgb * torch.tensor(BT601)[None, :, None, None]).sum(dim=1)
    return (grey * 255).round() / 255


def boundary_band(depth_m: torch.Tensor, radius_px: int) -> torch.Tensor:
    """(H, W) bool: pixels within ``radius_px`` of a depth step of more than 10% (an occlusion boundary)."""
    steps = kornia.filters.spatial_gradient(depth_m.log()[None], normalized=False).abs().amax(dim=(1, 2))
    step = (steps > BOUNDARY_LOG_STEP).float()
    return F.max_pool2d(step, 2 * radius_px + 1, 1, radius_px)[0] > 0


def psnr_db(error: torch.Tensor, where: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / (error[where].pow(2).mean())))


def _png(path: Path, mode: str) -> torch.Tensor:
    array = np.array(Image.open(path).convert(mode), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1) if array.ndim == 3 else torch.from_numpy(array)


def compare_capture(root: Path, name: str, num_layers: int) -> dict[str, list[float]]:
    """Per-frame PSNR (all, boundary band, elsewhere) of the re-rendered sweep against the ray-traced one."""
    meta = json.loads((root / "meta" / f"{name}.json").read_text())
    lens = meta["renderer"]
    frames_dir = root / "sweep_frames" / name
    if not frames_dir.is_dir():
        raise SystemExit(f"{frames_dir}: no sweep frames; this comparison needs a capture that keeps them (efs_dev)")
    depth_m = torch.from_numpy(np.load(root / "depth" / f"{name}.npy")).float()[None]
    scene = layered_scene(_png(root / "aif" / f"{name}.png", "RGB"), depth_m, num_layers)
    count = meta["simulator"]["n_input_frames"]
    focus_diopter = torch.linspace(1 / meta["focus_start_m"], 1 / meta["focus_end_m"], count)
    rendered = grey_frames(scene, focus_diopter, 2 * lens["focal_length_px"] * lens["aperture_radius_m"])
    band = boundary_band(depth_m, math.ceil(lens["max_coc_radius_px"]))
    everywhere = torch.ones_like(band)
    scores: dict[str, list[float]] = {"all": [], "boundary": [], "elsewhere": [],
                                      "band_share": [float(band.float().mean())]}
    for index in range(count):
        error = rendered[index] - _png(frames_dir / f"{index:05d}.png", "L")
        for key, where in (("all", everywhere), ("boundary", band), ("elsewhere", ~band)):
            scores[key].append(psnr_db(error, where))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captures", nargs="+", required=True, help="capture folders with sweep_frames/ (efs_dev)")
    parser.add_argument("--layers", type=int, nargs="+", default=[16], help="layers in diopters to cut the scene into")
    args = parser.parse_args()
    print("| capture | sweep | layers | boundary band share | PSNR all, median (worst) | boundary band | elsewhere |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.captures:
        root = Path(folder)
        for name in sorted(path.stem for path in (root / "meta").glob("*.json")):
            for num_layers in args.layers:
                scores = compare_capture(root, name, num_layers)
                cells = [f"{np.median(scores[key]):.2f} ({min(scores[key]):.2f})"
                         for key in ("all", "boundary", "elsewhere")]
                print(f"| {root.name} | {name} | {num_layers} | {scores['band_share'][0]:.2f} | " + " | ".join(cells)
                      + " |", flush=True)


if __name__ == "__main__":
    main()
