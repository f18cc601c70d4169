"""Save and load lists of Sweeps as plain tensors (loadable with ``torch.load(weights_only=True)``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from evfocus.events.stream import EventStream
from evfocus.optics import FocusSchedule
from evfocus.sweep import Sweep


def sweep_to_dict(sweep: Sweep) -> dict[str, Any]:
    events = sweep.events
    return {
        "name": sweep.name, "image": sweep.image, "image_time_us": sweep.image_time_us,
        "events": {"t_us": events.t_us, "x": events.x, "y": events.y, "p": events.p,
                   "width": events.width, "height": events.height, "source": events.source},
        "schedule": sweep.schedule.to_dict(), "aif": sweep.aif, "depth_m": sweep.depth_m,
        "frames": sweep.frames, "frame_times_us": sweep.frame_times_us, "meta": sweep.meta,
    }


def sweep_from_dict(data: dict[str, Any]) -> Sweep:
    return Sweep(
        name=data["name"], image=data["image"], image_time_us=data["image_time_us"],
        events=EventStream(**data["events"]), schedule=FocusSchedule(**data["schedule"]),
        aif=data["aif"], depth_m=data["depth_m"], frames=data["frames"],
        frame_times_us=data["frame_times_us"], meta=data["meta"],
    )


def save_sweeps(path: Path, sweeps: list[Sweep]) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves a half cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{os.getpid()}")
    torch.save([sweep_to_dict(s) for s in sweeps], partial)
    partial.replace(path)


def load_sweeps(path: Path) -> list[Sweep]:
    try:
        return [sweep_from_dict(d) for d in torch.load(path, weights_only=True)]
    except Exception as error:
        raise ValueError(f"{path}: unreadable sweep cache ({error}); delete it to regenerate") from None
