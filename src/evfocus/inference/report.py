"""``report.json``: everything needed to trust or reproduce one sweep's outputs, as strict JSON."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from evfocus.image_scores import image_quality
from evfocus.inference.sweep_source import SweepSource
from evfocus.pipeline.aif import AIFResult, PipelineConfig
from evfocus.pipeline.depth import depth_errors, depth_scores
from evfocus.sweep import Sweep


def image_metrics(sweep: Sweep, aif: Tensor) -> dict[str, Any]:
    """AIF and input-frame PSNR/SSIM (``image_scores.image_quality``) when the ground truth exists, else {}."""
    if sweep.aif is None:
        return {}
    target = sweep.aif.cpu()
    return {"aif": image_quality(aif.cpu(), target), "input": image_quality(sweep.image.cpu(), target)}


def quality_metrics(sweep: Sweep, result: AIFResult) -> dict[str, Any] | None:
    """``image_metrics`` and depth errors, when truth exists."""
    metrics = image_metrics(sweep, result.aif)
    if sweep.depth_m is not None:
        truth = sweep.depth_m.float().cpu()
        valid = torch.isfinite(truth)  # +inf marks pixels with no surface
        if bool(valid.any()):
            metrics["depth"] = depth_scores(result.depth_m.float().cpu(), result.depth_confidence.cpu(), truth)
            metrics["patch_depth"] = depth_errors(result.patch_depth_m.float().cpu(), truth, valid)
            metrics["depth_valid_fraction"] = float(valid.float().mean())
    return metrics or None


def source_info(sweep: Sweep, source: SweepSource) -> dict[str, Any]:
    """Where the sweep came from: files and polarity convention of a capture, or the simulator draw."""
    meta = sweep.meta
    if meta.get("source") == "capture":
        return {"kind": "capture", "root": meta["root"], "files": meta["files"], "polarity": meta["polarity"],
                "schedule_source": meta["schedule_source"]}
    return {"kind": "sim", "description": source.description, **meta}


def build_report(sweep: Sweep, source: SweepSource, result: AIFResult, config: PipelineConfig,
                 checkpoint: dict[str, Any], gif: dict[str, Any], seconds: dict[str, float],
                 device: torch.device) -> dict[str, Any]:
    """The report's content as plain values (``checkpoint`` and ``gif`` describe the model and the video)."""
    schedule = sweep.schedule
    search = result.search
    grid = config.search.grid_size
    return {
        "name": sweep.name,
        "source": source_info(sweep, source),
        "image_size": {"height": sweep.height, "width": sweep.width, "channels": int(sweep.image.shape[0])},
        "events": _event_summary(sweep),
        "sweep": {"t_start_us": schedule.t_start_us, "t_end_us": schedule.t_end_us,
                  "duration_us": schedule.duration_us, "near_m": schedule.near_m, "far_m": schedule.far_m},
        "image_time_us": int(sweep.image_time_us),
        "slice_times_us": result.slice_times_us.tolist(),
        "slice_focus_m": schedule.focus_m(result.slice_times_us.double().cpu()).tolist(),
        "patch_grid": {"grid_size": grid, "boxes_top_left_height_width": search.patch_boxes.tolist()},
        "patch_focus_times_us": search.times_us.reshape(grid, grid).tolist(),
        "low_event_patches": search.low_event_mask.reshape(grid, grid).tolist(),
        "num_low_event_patches": int(search.low_event_mask.sum()),
        "num_refocus_calls": result.num_refocus_calls,
        "search_refocus_calls": search.num_refocus_calls,
        "contrast": result.contrast,
        "search_contrast": result.search_contrast,
        "seconds": seconds,
        "checkpoint": checkpoint,
        "device": str(device),
        "pipeline": dataclasses.asdict(config),
        "refocus_gif": gif,
        "metrics": quality_metrics(sweep, result),
    }


def image_only_report(sweep: Sweep, source: SweepSource, aif: Tensor, checkpoint: dict[str, Any],
                      seconds: dict[str, float], device: torch.device) -> dict[str, Any]:
    """The report of an image-only baseline: the sweep and the model as ``build_report`` has them, the
    files written and the AIF scores; none of the search, stack or depth fields (it makes none)."""
    return {
        "name": sweep.name,
        "source": source_info(sweep, source),
        "image_size": {"height": sweep.height, "width": sweep.width, "channels": int(sweep.image.shape[0])},
        "events": _event_summary(sweep),  # read, not used: the baseline sees the frame alone
        "image_time_us": int(sweep.image_time_us),
        "outputs": ["aif.png", "report.json"],
        "seconds": seconds,
        "checkpoint": checkpoint,
        "device": str(device),
        "metrics": image_metrics(sweep, aif) or None,
    }


def _event_summary(sweep: Sweep) -> dict[str, Any]:
    events = sweep.events
    num_on = int((events.p > 0).sum())
    return {"count": len(events), "on": num_on, "off": len(events) - num_on, "response": sweep.event_response,
            "first_us": int(events.t_us[0]) if len(events) else None,
            "last_us": int(events.t_us[-1]) if len(events) else None}


def jsonable(value: Any) -> Any:
    """Non-finite floats → None, so the report is strict JSON any reader accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def summary_line(report: dict[str, Any]) -> str:
    """One line per sweep for the terminal: size, events, slices, calls, seconds and, with truth, scores."""
    size = report["image_size"]
    line = f"{report['name']}: {size['height']}x{size['width']}, {report['events']['count']} events, "
    if "slice_times_us" in report:
        line += (f"{len(report['slice_times_us'])} slices, {report['num_refocus_calls']} refocus calls, "
                 f"{report['seconds']['total']:.2f} s pipeline")
    else:
        line += f"image only ({report['checkpoint']['model']}), {report['seconds']['total']:.2f} s network"
    metrics = report["metrics"] or {}
    if "aif" in metrics:
        line += f", AIF PSNR {metrics['aif']['psnr']:.2f} dB (input {metrics['input']['psnr']:.2f})"
    if "depth" in metrics:
        line += f", depth abs_rel {metrics['depth']['abs_rel']:.3f}"
    return line
