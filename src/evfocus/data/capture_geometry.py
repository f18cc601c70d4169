"""Bring a capture's frame onto its event sensor's pixel grid, and crop both alike.

A beam-splitter rig films the scene with two cameras: the frame camera's pixels map onto the event sensor's
through a 2×3 affine or 3×3 homography (``registration``, frame pixel (x, y) → sensor pixel, pixel centres at
whole numbers). The refocus net needs the frame and the events on one grid, so the frame (and ground truth,
which lives in the frame camera) is warped onto the sensor grid with kornia: bilinear for images, nearest for
depth, where pixels the frame camera does not see become +inf ("no surface", left out of every depth score).
The events are never resampled.
"""

from __future__ import annotations

import torch
from kornia.geometry.transform import warp_affine, warp_perspective
from torch import Tensor

from evfocus.events.stream import EventStream


def warp_to_sensor(image: Tensor, matrix: list[list[float]], size: tuple[int, int], depth: bool = False) -> Tensor:
    """(C, H, W) on the frame grid → (C, height, width) on the sensor grid (``size`` = (width, height)).

    ``depth``: nearest neighbours, and +inf where the frame camera sees nothing; else bilinear, 0 outside.
    """
    width, height = size
    transform = torch.tensor(matrix, dtype=torch.float64)
    mode = "nearest" if depth else "bilinear"

    def warp(source: Tensor) -> Tensor:
        batch = source[None].double()
        if transform.shape[0] == 2:
            out = warp_affine(batch, transform[None], (height, width), mode=mode, align_corners=True)
        else:
            out = warp_perspective(batch, transform[None], (height, width), mode=mode, align_corners=True)
        return out[0]

    if not depth:
        return warp(image).clamp(0, 1).to(image.dtype)
    seen = warp(torch.ones_like(image[:1])) > 0.5  # nearest copies values, +inf included; outside it pads 0
    return torch.where(seen, warp(image), torch.inf).to(image.dtype)


def crop_image(image: Tensor, crop: tuple[int, int, int, int]) -> Tensor:
    top, left, height, width = crop
    return image[..., top:top + height, left:left + width].contiguous()


def crop_events(events: EventStream, crop: tuple[int, int, int, int]) -> EventStream:
    """The events inside ``crop`` (top, left, height, width), shifted to its corner, on a sensor of its size."""
    top, left, height, width = crop
    inside = (events.x >= left) & (events.x < left + width) & (events.y >= top) & (events.y < top + height)
    return EventStream(events.t_us[inside], events.x[inside] - left, events.y[inside] - top, events.p[inside],
                       width, height, events.source)
