"""Refocus training samples from one sweep: (frame at t0, events t0→t, frame at t).

All samples of a sweep read their events from one EventFocalStack built in a single pass
over the sweep's events, exactly as the search pipeline queries it at inference time, so
the network sees the same representation in training and in use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from evfocus.data.contrast_fields import sweep_contrast_fields
from evfocus.events.focal_stack import EventFocalStack
from evfocus.sim.simulator import add_camera_noise
from evfocus.sweep import Sweep

Sample = dict[str, Tensor]


def random_pairs(generator: torch.Generator, num_frames: int, count: int) -> list[tuple[int, int]]:
    """``count`` (i0, i1) frame-index pairs with i0 != i1; t may lie before or after t0."""
    first = torch.randint(0, num_frames, (count,), generator=generator)
    offset = torch.randint(1, num_frames, (count,), generator=generator)
    return [(int(a), int((a + b) % num_frames)) for a, b in zip(first, offset, strict=True)]


def refocus_samples(
    sweep: Sweep,
    pairs: Sequence[tuple[int, int]],
    num_bins: int,
    num_fine_bins: int,
    noise_std: float,
    generator: torch.Generator,
    crop_size: int | None = None,
    flip: bool = False,
    response_aware: bool = False,
) -> list[Sample]:
    """Cut one sample per pair; crops and flips are applied identically to image, events and target.

    ``sweep.frames`` must hold the frames named in ``sweep.meta["frame_indices"]``.
    """
    if sweep.frames is None or "frame_indices" not in sweep.meta:
        raise ValueError(f"{sweep.name}: refocus samples need ground-truth frames with their indices")
    slot = {index: position for position, index in enumerate(sweep.meta["frame_indices"])}
    missing = sorted({i for pair in pairs for i in pair} - slot.keys())
    if missing:
        raise ValueError(f"{sweep.name}: frames {missing} were not rendered (have {sorted(slot)})")
    if crop_size is not None and crop_size > min(sweep.height, sweep.width):
        raise ValueError(f"{sweep.name}: crop {crop_size} is larger than the image {sweep.height}x{sweep.width}")

    efs = EventFocalStack.from_events(sweep.events, sweep.schedule.t_start_us, sweep.schedule.t_end_us,
                                      num_fine_bins)
    context = sweep_contrast_fields(sweep, efs, response_aware)
    samples = []
    for i0, i1 in pairs:
        window = crop_window(generator, sweep.height, sweep.width, crop_size)
        top, left, height, width = window
        t0_us, t_us = sweep.frame_times_us[slot[i0]], sweep.frame_times_us[slot[i1]]
        events = efs.segments(t0_us.view(1).double(), t_us.view(1).double(), num_bins, window=window)[0]
        image = sweep.frames[slot[i0], :, top:top + height, left:left + width]
        target = sweep.frames[slot[i1], :, top:top + height, left:left + width]
        sample = {
            "image": add_camera_noise(image, noise_std, generator),
            "events": events,
            "target": target,
            "t0_us": t0_us.to(torch.float64),
            "t_us": t_us.to(torch.float64),
            # what the contrast estimator sees: the sweep's own frame and all its events, cropped alike
            "context_image": sweep.image[:, top:top + height, left:left + width],
            "sweep_bins": context["sweep_bins"][:, top:top + height, left:left + width],
            "prior_contrast": context["prior_contrast"],
            "target_contrast": context["target_contrast"],
            "linear_response": context["linear_response"],
        }
        if flip:
            sample = random_flip(sample, generator)
        samples.append(sample)
    return samples


def crop_window(generator: torch.Generator, height: int, width: int, size: int | None) -> tuple[int, int, int, int]:
    if size is None:
        return (0, 0, height, width)
    top = int(torch.randint(0, height - size + 1, (), generator=generator))
    left = int(torch.randint(0, width - size + 1, (), generator=generator))
    return (top, left, size, size)


def random_flip(sample: Sample, generator: torch.Generator) -> Sample:
    """Flip every spatial tensor (ndim >= 3) of a sample the same way; scalars and vectors pass."""
    dims = [d for d in (-1, -2) if float(torch.rand((), generator=generator)) < 0.5]
    if not dims:
        return sample
    return {k: (v.flip(dims) if v.ndim >= 3 else v) for k, v in sample.items()}
