"""One sweep through a checkpoint's nets into its output folder: what ``src/aif.py`` does per input."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from evfocus.checkpoints import (
    DEFAULT_WEIGHTS,
    CheckpointError,
    StageCheckpoint,
    load_baseline,
    load_depth_head,
    load_nets,
    load_stage_checkpoint,
)
from evfocus.config import ConfigError
from evfocus.events.binning import EventRepresentationError
from evfocus.events.io import EventFileError
from evfocus.events.stream import EventStreamError
from evfocus.inference.outputs import staged_folder
from evfocus.inference.report import build_report, image_only_report, jsonable
from evfocus.inference.sweep_source import InputError, SweepSource
from evfocus.inference.video import GIF_FRAME_MS, VideoMode, position_strip, refocus_frames, slice_frames, write_gif
from evfocus.models.registry import BASELINE_STAGE
from evfocus.optics import OpticsError
from evfocus.pipeline.aif import AIFPipeline, PipelineConfig
from evfocus.pipeline.settings import pipeline_config
from evfocus.sweep import Sweep, SweepError
from evfocus.visualize import to_uint8, write_images

STAGES = ("refocus", "merge", "joint", "baseline")
# Errors that mean "this input or checkpoint is unusable": reported in one line, never a traceback.
INPUT_ERRORS = (InputError, CheckpointError, EventFileError, EventStreamError, EventRepresentationError, SweepError,
                OpticsError, ConfigError)
IMAGE_ONLY_NOTE = ("image-only baseline: the frame alone -> aif.png; it makes no depth map, focal stack, merge "
                   "weights or refocus video (no depth.png, depth.npy, depth_confidence.npy, weights.png, refocus.gif; "
                   "--grid, --max-slices, --tile and --frames do not apply)")


@dataclass
class Model:
    """The checkpoint's nets, in eval mode on the chosen device, plus what to report about them: the refocus
    net (+ merge net) of an event stage, or the network of an image-only baseline (``image_only``)."""

    checkpoint: StageCheckpoint
    refocus: nn.Module | None
    merge: nn.Module | None
    image_only: nn.Module | None = None
    depth_head: nn.Module | None = None  # the learned mix of the two depths from focus (pipeline.depth_fusion)

    @property
    def name(self) -> str:
        return self.checkpoint.cfg.model.name

    @property
    def merge_name(self) -> str:
        return "EvMergeNet" if self.merge is not None else "sobel_energy"

    def summary(self) -> str:
        """One line for the terminal: which stage and nets run."""
        if self.image_only is not None:
            return f"stage baseline, image-only {self.name}: all-in-focus image only"
        depth = "learned depth fusion" if self.depth_head is not None else "rule depth fusion"
        return f"stage {self.checkpoint.stage}, merge {self.merge_name}, {depth}"

    def describe(self) -> dict[str, Any]:
        if self.image_only is not None:
            return {"path": str(self.checkpoint.path), "stage": self.checkpoint.stage, "model": self.name,
                    "preset": self.checkpoint.cfg.model.preset, "merge": None, "note": IMAGE_ONLY_NOTE}
        note = None if self.merge is not None else "refocus-stage checkpoint: no merge net, Sobel-energy merge"
        return {"path": str(self.checkpoint.path), "stage": self.checkpoint.stage, "model": self.name,
                "merge": self.merge_name, "depth_head": self.depth_head is not None, "note": note}


def load_model(path: str | None, device: torch.device) -> Model:
    """Refocus net (+ merge net for merge/joint stages), or an image-only baseline, from a checkpoint, run folder
    or weights file; ``None``: the shipped model (``checkpoints.DEFAULT_WEIGHTS``)."""
    if path is None and not DEFAULT_WEIGHTS.is_file():
        raise CheckpointError(f"no --ckpt given and the shipped weights {DEFAULT_WEIGHTS} are missing (a checkout "
                              "of the repository has them); pass --ckpt RUN_OR_CKPT")
    checkpoint = load_stage_checkpoint(DEFAULT_WEIGHTS if path is None else path, STAGES)
    if checkpoint.stage == BASELINE_STAGE:
        return Model(checkpoint, None, None, load_baseline(checkpoint).to(device))
    refocus, merge = load_nets(checkpoint)
    depth_head = load_depth_head(checkpoint)
    return Model(checkpoint, refocus.to(device), merge.to(device) if merge is not None else None,
                 depth_head=depth_head.to(device) if depth_head is not None else None)


def pick_device(name: str | None) -> torch.device:
    """The requested device, checked now so a missing GPU fails before any work, not mid-sweep."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"--device {name!r} is not a torch device ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    return device


def with_pipeline_overrides(cfg: DictConfig, grid: int | None = None, max_slices: int | None = None,
                            tile_px: int | None = None, runtime: str | None = None,
                            search_probe: str | None = None, contrast_estimator: str | None = None,
                            anchor_sigma_fraction: float | None = None, recolour: bool | None = None,
                            focus_sharpness: float | None = None, merge_scale: int | None = None,
                            event_contrast: float | None = None) -> DictConfig:
    """The checkpoint's config with the command line's changes to its ``pipeline`` section (None: keep;
    an ``anchor_sigma_fraction`` of 0 turns the anchoring off)."""
    changed = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key, value in (("search.grid_size", grid), ("max_slices", max_slices), ("tile_px", tile_px),
                       ("runtime", runtime), ("search.probe", search_probe),
                       ("contrast_estimator", contrast_estimator), ("recolour", recolour),
                       ("focus_sharpness", focus_sharpness), ("merge_scale", merge_scale),
                       ("event_contrast", event_contrast)):
        if value is not None:
            OmegaConf.update(changed, f"pipeline.{key}", value)
    if anchor_sigma_fraction is not None:
        OmegaConf.update(changed, "pipeline.anchor_sigma_fraction", anchor_sigma_fraction or None)
    return changed


def sweep_pipeline_config(cfg: DictConfig, sweep: Sweep, device: torch.device) -> PipelineConfig:
    """Per sweep, because tolerances and event floors scale with its size and duration."""
    grid = cfg.pipeline.search.grid_size
    if grid > min(sweep.height, sweep.width):
        raise InputError(f"{sweep.name}: a {grid}x{grid} search grid does not fit its "
                         f"{sweep.height}x{sweep.width} image (use a smaller --grid)")
    return pipeline_config(cfg, sweep, device)


def process(source: SweepSource, model: Model, cfg: DictConfig, out: Path, frames: int,
            device: torch.device, video: VideoMode = "slices") -> dict[str, Any]:
    """Read one sweep, run search → stack → merge, write its outputs to ``out/<name>/``; returns its report.

    The folder appears only once all of its files are written (``outputs.staged_folder``); ``frames``
    is the refocus GIF's length (0: no GIF), ``video`` how its frames are made (``inference.video``). An
    image-only baseline writes ``aif.png`` and the report only.
    """
    if model.image_only is not None:
        return process_image_only(source, model, out, device)
    started = time.perf_counter()
    sweep = source.load()
    config = sweep_pipeline_config(cfg, sweep, device)
    seconds = {"load": time.perf_counter() - started}
    result = AIFPipeline(model.refocus, model.merge, config, model.depth_head)(sweep, device)
    seconds.update(result.seconds)

    schedule = sweep.schedule
    gif_times = torch.linspace(schedule.t_start_us, schedule.t_end_us, frames, dtype=torch.float64)
    with staged_folder(out / sweep.name) as folder:
        if frames:
            mark = time.perf_counter()
            if video == "refocus":
                images = refocus_frames(result, sweep.image, sweep.image_time_us, gif_times, config)
            else:
                images = slice_frames(result, sweep.image, sweep.image_time_us, gif_times)
            write_gif(folder / "refocus.gif", position_strip(images, gif_times, schedule))
            seconds["refocus_gif"] = time.perf_counter() - mark
        mark = time.perf_counter()
        write_images(folder, sweep, result)
        seconds["write"] = time.perf_counter() - mark
        gif = {"frames": frames, "frame_ms": GIF_FRAME_MS, "times_us": gif_times.tolist(), "video": video}
        report = build_report(sweep, source, result, config, model.describe(), gif, seconds, device)
        (folder / "report.json").write_text(json.dumps(jsonable(report), indent=1, allow_nan=False))
    return report


@torch.no_grad()
def process_image_only(source: SweepSource, model: Model, out: Path, device: torch.device) -> dict[str, Any]:
    """One sweep's frame through an image-only baseline → ``out/<name>/`` with ``aif.png`` and ``report.json``."""
    started = time.perf_counter()
    sweep = source.load()
    seconds = {"load": time.perf_counter() - started}
    mark = time.perf_counter()
    aif = model.image_only(sweep.image.to(device)[None].float())[0]
    seconds["total"] = seconds["network"] = time.perf_counter() - mark
    with staged_folder(out / sweep.name) as folder:
        mark = time.perf_counter()
        iio.imwrite(folder / "aif.png", to_uint8(aif))
        seconds["write"] = time.perf_counter() - mark
        report = image_only_report(sweep, source, aif, model.describe(), seconds, device)
        (folder / "report.json").write_text(json.dumps(jsonable(report), indent=1, allow_nan=False))
    return report
