"""Refocused frames keep the frame's light: their local mean, in linear light, is the frame's.

Defocus moves light between neighbouring pixels; it neither makes nor destroys it. So wherever the
lens focuses, the sensor's irradiance averaged over a window much wider than the blur stays what the
frame shows. Integrated events do not keep that: noise and leak events (the DVS-Voltmeter's
brightness-dependent leak fires ON events over the whole sweep) and ON/OFF thresholds that differ add
a slow drift, and a refocus net inherits it. ``anchor_to_frame`` divides the drift out: each refocused
image is scaled, per pixel, by the ratio of the frame's Gaussian local mean to its own, in linear
light (``colour``: the frame is sRGB; averages of sRGB values would not be conserved). Measured on the validation
sweeps and the development captures: docs/results.md, "Refocused frames keep the frame's light".
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from evfocus.colour import srgb_decode, srgb_encode

# Linear irradiance floor of the ratio: keeps black regions (and their noise) from dividing by ~0.
LINEAR_FLOOR = 1e-4
# The Gaussian runs on an area-averaged copy with at least this many pixels per σ: a low-pass this wide has
# nothing finer to lose (within 0.005 of the full-resolution blur away from the borders, tests/test_anchor.py),
# and a σ of 64 px (a 720x1280 frame) costs a 49-tap blur of a 90x160 copy instead of 385 taps at full size.
PX_PER_SIGMA = 8.0


def local_mean(image: Tensor, sigma_px: float) -> Tensor:
    """Gaussian-weighted local mean (N, C, H, W) of ``image`` (N, C, H, W) with a σ of ``sigma_px``.

    Computed on an area-averaged copy (``PX_PER_SIGMA`` px per σ at least) and upsampled bilinearly:
    a low-pass this wide has nothing above the copy's resolution. Borders replicate, so any size works.
    """
    height, width = image.shape[-2:]
    factor = max(1, int(sigma_px // PX_PER_SIGMA))
    small_size = (math.ceil(height / factor), math.ceil(width / factor))
    small = image if factor == 1 else F.adaptive_avg_pool2d(image, small_size)
    sigma = sigma_px / factor
    size = 2 * math.ceil(3 * sigma) + 1
    blurred = kornia.filters.gaussian_blur2d(small, (size, size), (sigma, sigma), border_type="replicate")
    if factor == 1:
        return blurred
    return F.interpolate(blurred, size=(height, width), mode="bilinear", align_corners=False)


def anchor_to_frame(images: Tensor, frame: Tensor, sigma_px: float) -> Tensor:
    """``images`` (S, C, H, W) refocused from ``frame`` (C, H, W), both sRGB in [0, 1], with each one's
    Gaussian local mean (σ = ``sigma_px``) in linear light set to the frame's; same shape and dtype.

    The correction is a smooth per-pixel gain: details stay where the refocusing put them, only the
    slow brightness drift goes. A frame anchored to itself comes back unchanged (up to rounding).
    """
    if images.ndim != 4 or frame.ndim != 3 or tuple(images.shape[1:]) != tuple(frame.shape):
        raise ValueError(f"images must be (S, C, H, W) refocused from a (C, H, W) frame of the same C, H, W; "
                         f"got images {tuple(images.shape)} and frame {tuple(frame.shape)}")
    if not math.isfinite(sigma_px) or sigma_px <= 0:
        raise ValueError(f"sigma_px must be a positive number of pixels, got {sigma_px}")
    with torch.autocast(images.device.type, enabled=False):  # a gain field in bf16 would add its own banding
        linear = srgb_decode(images.float())
        frame_linear = srgb_decode(frame.float()[None])
        gain = (local_mean(frame_linear, sigma_px) + LINEAR_FLOOR) / (local_mean(linear, sigma_px) + LINEAR_FLOOR)
        return srgb_encode(linear * gain).to(images.dtype)


def anchor_sigma_px(sigma_fraction: float | None, height: int, width: int) -> float | None:
    """The anchor's σ in pixels for an image: ``sigma_fraction`` of its longer side (None: no anchoring)."""
    if sigma_fraction is None:
        return None
    if not math.isfinite(sigma_fraction) or sigma_fraction <= 0:
        raise ValueError(f"anchor sigma fraction must be positive (or None for no anchoring), got {sigma_fraction}")
    return float(sigma_fraction) * max(height, width)
