"""The notebooks' figures (matplotlib): method bars, score scatters, search curves, crops, depth, a sweep's parts.

Each function returns a Figure; ``save`` writes it as PNG too, so the figures can go into a paper.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless by default (tests, CI); Jupyter's inline backend still shows the figures
import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from evfocus.analysis import SweepOutcome
from evfocus.events.voxel import voxel_grid
from evfocus.pipeline.aif import AIFResult
from evfocus.pipeline.depth import normalised_diopter
from evfocus.sweep import Sweep
from evfocus.visualize import event_image


def save(figure: Figure, folder: str | Path, name: str) -> Path:
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _show(axis: plt.Axes, image: Tensor, title: str, **kwargs) -> None:
    picture = image.detach().float().cpu()
    picture = picture.permute(1, 2, 0) if picture.shape[0] == 3 else picture[0]
    axis.imshow(picture.clamp(0, 1) if picture.ndim == 3 else picture, **kwargs)
    axis.set_title(title, fontsize=9)
    axis.axis("off")


def method_bars(spread: pd.DataFrame, metric: str = "psnr") -> Figure:
    """Mean ± standard deviation over seeds of ``metric`` per method (from ``analysis.seed_spread``)."""
    figure, axis = plt.subplots(figsize=(1.2 + 0.8 * len(spread), 3))
    axis.bar(spread.index, spread[(metric, "mean")], yerr=spread[(metric, "std")].fillna(0.0), capsize=4)
    axis.set_ylabel(f"AIF {metric}")
    axis.tick_params(axis="x", rotation=30)
    return figure


def score_against(per_sweep: pd.DataFrame, x: str, y: str = "psnr") -> Figure:
    """``y`` of every test sweep against ``x`` (e.g. max_blur_radius_px, events_per_px), one colour per method."""
    figure, axis = plt.subplots(figsize=(4, 3))
    for method, rows in per_sweep.groupby("method"):
        axis.scatter(rows[x], rows[y], label=method, s=18)
    axis.set_xlabel(x)
    axis.set_ylabel(y)
    axis.legend(fontsize=8)
    return figure


def sharpness_curves(result: AIFResult, patches: list[int]) -> Figure:
    """Sharpness of each probe the golden-section search made, against time, for a few patches; the
    dashed line is the time it settled on."""
    search = result.search
    figure, axes = plt.subplots(1, len(patches), figsize=(3 * len(patches), 2.6), squeeze=False)
    found = search.times_us.flatten()
    for axis, patch in zip(axes[0], patches, strict=True):
        times, sharpness = search.probes_t_us[patch], search.probes_sharpness[patch]
        valid = ~torch.isnan(times)
        order = times[valid].argsort()
        axis.plot(times[valid][order] / 1e3, sharpness[valid][order], "o-", ms=3)
        axis.axvline(float(found[patch]) / 1e3, ls="--", c="k")
        axis.set_title(f"patch {patch}", fontsize=9)
        axis.set_xlabel("time (ms)")
    axes[0][0].set_ylabel("sharpness")
    return figure


def comparison_crops(outcome: SweepOutcome, box: tuple[int, int, int, int]) -> Figure:
    """input | each method's AIF | ground truth, cropped to ``box`` = (top, left, height, width)."""
    top, left, height, width = box
    sweep = outcome.sweep
    images = {"input": sweep.image, **{n: r.aif for n, r in outcome.results.items()}, "ground truth": sweep.aif}
    figure, axes = plt.subplots(1, len(images), figsize=(2.2 * len(images), 2.4))
    for axis, (name, image) in zip(axes, images.items(), strict=True):
        _show(axis, image[:, top:top + height, left:left + width], name)
    return figure


def depth_maps(outcome: SweepOutcome) -> Figure:
    """Each method's depth map and the true depth, in normalised diopters of the sweep (near = warm)."""
    sweep = outcome.sweep
    depths = {n: r.depth_m for n, r in outcome.results.items() if r.depth_m is not None}  # baselines: no depth
    if sweep.depth_m is not None:
        depths["ground truth"] = sweep.depth_m
    figure, axes = plt.subplots(1, len(depths), figsize=(2.4 * len(depths), 2.4), squeeze=False)
    for axis, (name, depth) in zip(axes[0], depths.items(), strict=True):
        _show(axis, normalised_diopter(depth.cpu(), sweep.schedule), name, cmap="turbo", vmin=0, vmax=1)
    return figure


def sweep_frames(sweep: Sweep) -> Figure:
    """The ground-truth frames the simulator rendered during the sweep, with their focus distances."""
    frames, times = sweep.frames, sweep.frame_times_us
    figure, axes = plt.subplots(1, len(frames), figsize=(2.2 * len(frames), 2.4), squeeze=False)
    for axis, frame, time_us in zip(axes[0], frames, times, strict=True):
        focus_m = 1.0 / float(sweep.schedule.focus_diopter(time_us.to(torch.float64)))
        _show(axis, frame, f"t={int(time_us) / 1e3:.0f} ms, focus {focus_m:.2f} m")
    return figure


def events_and_voxels(sweep: Sweep, num_bins: int) -> Figure:
    """All events of the sweep (net ON red, OFF blue) and its voxel grid, one time bin per panel."""
    grid = voxel_grid(sweep.events, num_bins, sweep.schedule.t_start_us, sweep.schedule.t_end_us)
    figure, axes = plt.subplots(1, num_bins + 1, figsize=(2.2 * (num_bins + 1), 2.4))
    _show(axes[0], event_image(grid[None])[0], f"{len(sweep.events)} events")
    limit = float(grid.abs().max().clamp_min(1.0))
    for index, axis in enumerate(axes[1:]):
        _show(axis, grid[index:index + 1], f"bin {index}", cmap="coolwarm", vmin=-limit, vmax=limit)
    return figure


def refocused_stack(result: AIFResult) -> Figure:
    """The frame refocused at each slice time the search found, then the merged all-in-focus image."""
    slices = list(result.stack)
    figure, axes = plt.subplots(1, len(slices) + 1, figsize=(2.2 * (len(slices) + 1), 2.4))
    for axis, image, time_us in zip(axes, slices, result.slice_times_us, strict=False):
        _show(axis, image, f"t={float(time_us) / 1e3:.0f} ms")
    _show(axes[-1], result.aif, "all-in-focus")
    return figure
