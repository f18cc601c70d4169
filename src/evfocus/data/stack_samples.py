"""Focal-stack training samples (stages ``merge`` and ``joint``) from one simulated sweep.

A sample is a crop with everything the merge and joint stages need, in sweep-relative time
(``pos`` = fraction of the sweep, 0 = start, 1 = end) so sweeps of different durations batch
together: the frame, the cumulative event tensor of the crop (any segment or merge window can be
cut from it on the fly, on the training device), the *oracle* slice times — the moments the crop's
depth layers are in focus, read from the ground-truth depth — with their ground-truth frames, the
ground-truth all-in-focus crop and depth. Slices are padded to ``max_slices`` with a ``valid`` mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from evfocus.data.contrast_fields import sweep_contrast_fields
from evfocus.data.samples import Sample, crop_window, random_flip
from evfocus.events.focal_stack import EventFocalStack
from evfocus.optics import FocusSchedule
from evfocus.sweep import Sweep


def in_focus_frames(depth_m: Tensor, schedule: FocusSchedule, frame_times_us: Tensor, grid_size: int) -> list[int]:
    """Frame indices at which the median depth of each cell of a ``grid_size``² grid is in focus.

    This is what a perfect focus search would find; cells focused outside the sweep take its ends.
    """
    cells = F.adaptive_avg_pool2d(depth_m.reshape(1, 1, *depth_m.shape[-2:]).reciprocal(), grid_size)
    diopter = cells.flatten().double()  # mean diopter of the cell: defocus is linear in diopters
    times = schedule.time_us_for_diopter(diopter).clamp(schedule.t_start_us, schedule.t_end_us)
    nearest = (times[:, None] - frame_times_us.double()[None]).abs().argmin(dim=1)
    return sorted(set(nearest.tolist()))


def sweep_oracle_frames(depth_m: Tensor, schedule: FocusSchedule, frame_times_us: Tensor) -> list[int]:
    """Frames to render for a sweep's stack samples: in focus somewhere on an 8×8 grid of the image."""
    return in_focus_frames(depth_m, schedule, frame_times_us, 8)


def stack_samples(
    sweep: Sweep,
    count: int,
    num_fine_bins: int,
    generator: torch.Generator,
    max_slices: int,
    oracle_grid: int,
    crop_size: int | None = None,
    flip: bool = False,
    response_aware: bool = False,
) -> list[Sample]:
    """``count`` crops of one sweep, each with at most ``max_slices`` oracle slices (see module doc)."""
    if sweep.frames is None or sweep.aif is None or sweep.depth_m is None:
        raise ValueError(f"{sweep.name}: stack samples need ground-truth frames, aif and depth")
    schedule = sweep.schedule
    duration = float(schedule.duration_us)
    efs = EventFocalStack.from_events(sweep.events, schedule.t_start_us, schedule.t_end_us, num_fine_bins)
    frame_pos = (sweep.frame_times_us.double() - schedule.t_start_us) / duration
    image_pos = (float(sweep.image_time_us) - schedule.t_start_us) / duration
    context = sweep_contrast_fields(sweep, efs, response_aware)
    samples = []
    for _ in range(count):
        top, left, height, width = crop_window(generator, sweep.height, sweep.width, crop_size)
        rows, cols = slice(top, top + height), slice(left, left + width)
        depth = sweep.depth_m[:, rows, cols]
        slots = in_focus_frames(depth, schedule, sweep.frame_times_us, oracle_grid)
        if len(slots) > max_slices:  # keep an even spread over the crop's focus range
            keep = torch.linspace(0, len(slots) - 1, max_slices).round().long().tolist()
            slots = [slots[i] for i in keep]
        valid = torch.zeros(max_slices, dtype=torch.bool)
        valid[:len(slots)] = True
        slice_frames = torch.zeros((max_slices, sweep.frames.shape[1], height, width))
        slice_frames[:len(slots)] = sweep.frames[slots][:, :, rows, cols]
        slice_pos = torch.full((max_slices,), image_pos, dtype=torch.float64)
        slice_pos[:len(slots)] = frame_pos[slots]
        sample = {
            "image": sweep.image[:, rows, cols],  # the simulator already added camera noise
            "cumulative": efs.cumulative[:, rows, cols].clone(),
            "sweep_bins": context["sweep_bins"][:, rows, cols],
            "prior_contrast": context["prior_contrast"],
            "target_contrast": context["target_contrast"],
            "linear_response": context["linear_response"],
            "slice_frames": slice_frames,
            "slice_pos": slice_pos,
            "valid": valid,
            "image_pos": torch.tensor(image_pos, dtype=torch.float64),
            "aif": sweep.aif[:, rows, cols],
            "depth_m": depth,
            "duration_us": torch.tensor(duration, dtype=torch.float64),
        }
        if flip:
            sample = random_flip(sample, generator)
        samples.append(sample)
    return samples
