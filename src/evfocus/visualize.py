"""Pictures for people: event maps, colour-mapped depth and side-by-side panels (torch + matplotlib LUTs).

Shared by training (sample panels, captures' outputs), inference (``src/aif.py``'s PNGs and GIF) and notebooks.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import matplotlib
import numpy as np
import torch
from torch import Tensor

from evfocus.pipeline.aif import AIFResult
from evfocus.pipeline.depth import normalised_diopter
from evfocus.sweep import Sweep


def event_image(events: Tensor) -> Tensor:
    """Signed event bins (N,B,H,W) → RGB (N,3,H,W): net ON in red, net OFF in blue on white."""
    net = events.float().sum(dim=1, keepdim=True)
    scale = net.abs().flatten(1).quantile(0.99, dim=1).clamp_min(1.0).view(-1, 1, 1, 1)
    level = (net / scale).clamp(-1.0, 1.0)
    on, off = level.clamp_min(0.0), (-level).clamp_min(0.0)
    return torch.cat([1.0 - off, 1.0 - on - off, 1.0 - on], dim=1).clamp(0.0, 1.0)


def refocus_panel(image: Tensor, events: Tensor | None, pred: Tensor, target: Tensor) -> Tensor:
    """One row per sample: input | events | prediction | target, as a (3, N·H, 4·W) image (no events
    column for an image-only network: ``events=None``)."""
    columns = [image.float(), pred.float().clamp(0, 1), target.float()]
    if events is not None:
        columns.insert(1, event_image(events))
    rows = torch.cat(columns, dim=-1)
    return torch.cat(list(rows.cpu()), dim=-2)


def to_uint8(images: Tensor) -> np.ndarray:
    """(…, C, H, W) in [0, 1] → (…, H, W, 3) uint8 on the CPU; grey is repeated so every writer sees RGB."""
    if images.shape[-3] == 1:
        images = images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    pixels = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.movedim(-3, -1).cpu().numpy()


def colour_map(values: Tensor, name: str = "turbo") -> Tensor:
    """(1, H, W) values in [0, 1] (clamped) → (3, H, W) RGB through a matplotlib colour map."""
    lut = torch.tensor(matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3], dtype=torch.float32)
    index = (values.float().clamp(0.0, 1.0) * 255).round().long()[0]
    return lut.to(values.device)[index].permute(2, 0, 1)


def aif_panel(sweep: Sweep, result: AIFResult) -> Tensor:
    """input | AIF | ground truth | depth (turbo, near = warm) | slice index map, as one (3, H, 5·W) image."""
    image = sweep.image.float().cpu()
    truth = sweep.aif.float().cpu() if sweep.aif is not None else torch.zeros_like(image)
    depth = colour_map(normalised_diopter(result.depth_m.cpu(), sweep.schedule), "turbo")
    slices = result.slice_index.float().cpu() / max(1, len(result.slice_times_us) - 1)
    columns = [_rgb(image), _rgb(result.aif.float().cpu().clamp(0, 1)), _rgb(truth), depth,
               colour_map(slices[None], "viridis")]
    return torch.cat(columns, dim=-1)


def image_only_panel(sweep: Sweep, estimate: Tensor) -> Tensor:
    """input | estimate | ground truth, as one (3, H, 3·W) image: an image-only network's all-in-focus result."""
    image = sweep.image.float().cpu()
    truth = sweep.aif.float().cpu() if sweep.aif is not None else torch.zeros_like(image)
    return torch.cat([_rgb(image), _rgb(estimate.float().cpu().clamp(0, 1)), _rgb(truth)], dim=-1)


def _rgb(image: Tensor) -> Tensor:
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def write_images(folder: Path, sweep: Sweep, result: AIFResult) -> None:
    """aif.png, depth.png + depth.npy (metres), depth_confidence.npy and weights.png (heaviest slice per pixel)."""
    iio.imwrite(folder / "aif.png", to_uint8(result.aif))
    depth = result.depth_m.float().cpu()
    iio.imwrite(folder / "depth.png", to_uint8(colour_map(normalised_diopter(depth, sweep.schedule), "turbo")))
    np.save(folder / "depth.npy", depth[0].numpy().astype(np.float32))
    np.save(folder / "depth_confidence.npy", result.depth_confidence[0].float().cpu().numpy())
    slices = result.slice_index.float().cpu() / max(1, len(result.slice_times_us) - 1)
    iio.imwrite(folder / "weights.png", to_uint8(colour_map(slices[None], "viridis")))
