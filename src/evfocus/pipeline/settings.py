"""The ``pipeline`` config section + a sweep + a device → the absolute settings the pipeline runs with.

The one place where the relative settings become numbers for one sweep: tolerances scale with its
length and its events, the event floor with its patch area, unset batch sizes with the device. Every
caller builds its settings here: the test and validation of every stage, the joint stage's search on
its training crops, ``src/aif.py`` and the benchmarks.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from evfocus.models.runtime import resolve_runtime
from evfocus.pipeline.aif import PipelineConfig, PipelineMode
from evfocus.pipeline.anchor import anchor_sigma_px
from evfocus.pipeline.search import SearchConfig
from evfocus.sweep import Sweep

# Batch sizes left unset pick per device: on a CPU, big batches of network inputs run slower per
# item (benchmarks/RESULTS.md: 49x60 crops 197 ms each in calls of 64 vs 124 ms in calls of 8;
# 260x346 frames 4.49 s each in a batch of 5 vs 2.95 s alone), on a GPU they fill the device.
CPU_CROPS_PER_CALL, CPU_SLICES_PER_BATCH, GPU_SLICES_PER_BATCH = 8, 1, 8
# Unset tiles on a CPU bound the memory of large frames: at 720x1280, EvMergeNet (paper size) over 5 slices
# peaks at 12 GB whole and 4.2 GB on 512-px tiles (benchmarks/RESULTS.md). Frames up to 512 px (DAVIS346,
# the simulator's) are never tiled; a GPU has the memory, and tiles would only slow it.
CPU_TILE_PX = 512


def search_config(search: Any, num_bins: int, height: int, width: int, duration_us: float,
                  device: torch.device | str, num_events: int | None = None) -> SearchConfig:
    """``pipeline.search`` settings (``config.SearchSettings``) for an image of ``height``×``width`` whose
    sweep lasts ``duration_us`` and holds ``num_events`` events, searched on ``device``.

    ``tolerance_fraction`` of the sweep is the time-domain bracket tolerance and, in either domain, the
    separation below which found times are one slice (``SearchConfig.tolerance_us``). The event domain's
    tolerance is ``tolerance_events``, else the same fraction of the mean events per patch (which needs
    ``num_events``). Patches with fewer than ``min_events_per_px`` events per pixel keep the frame.
    """
    patches = search.grid_size**2
    tolerance_events = search.tolerance_events
    if tolerance_events is None and num_events is not None:
        tolerance_events = max(1.0, search.tolerance_fraction * num_events / patches)
    on_cpu = torch.device(device).type == "cpu"
    patch_px = height * width / patches
    return SearchConfig(
        num_bins=num_bins, grid_size=search.grid_size, margin_px=search.margin_px, domain=search.domain,
        sharpness=search.sharpness, tolerance_us=search.tolerance_fraction * duration_us,
        tolerance_events=tolerance_events, max_iters=search.max_iters,
        max_crops_per_call=search.max_crops_per_call or (CPU_CROPS_PER_CALL if on_cpu else None),
        min_events=round(search.min_events_per_px * patch_px), probe_scale=search.probe_scale,
    )


def pipeline_config(cfg: DictConfig, sweep: Sweep, device: torch.device | str = "cpu",
                    mode: PipelineMode = "batched") -> PipelineConfig:
    """The pipeline for ``sweep`` on ``device``, from an experiment config's ``pipeline`` section and the
    sizes its nets were trained with (``data.num_bins``, ``data.efs_fine_bins``)."""
    settings = cfg.pipeline
    search = search_config(settings.search, cfg.data.num_bins, sweep.height, sweep.width,
                           sweep.schedule.duration_us, device, num_events=len(sweep.events))
    on_cpu = torch.device(device).type == "cpu"
    slices_per_batch = settings.slices_per_batch or (CPU_SLICES_PER_BATCH if on_cpu else GPU_SLICES_PER_BATCH)
    return PipelineConfig(search=search, efs_fine_bins=cfg.data.efs_fine_bins, max_slices=settings.max_slices,
                          merge_window_fraction=settings.merge_window_fraction, slices_per_batch=slices_per_batch,
                          tile_px=settings.tile_px or (CPU_TILE_PX if on_cpu else None), mode=mode,
                          runtime=resolve_runtime(settings.runtime, device), search_probe=settings.search.probe,
                          contrast_estimator=settings.contrast_estimator, event_contrast=settings.event_contrast,
                          given_contrast_gain=settings.given_contrast_gain,
                          anchor_sigma_px=anchor_sigma_px(settings.anchor_sigma_fraction, sweep.height, sweep.width),
                          recolour=settings.recolour, focus_sharpness=settings.focus_sharpness,
                          merge_scale=settings.merge_scale)
