"""Focus measures over a focal stack, and slice weights that favour each pixel's sharpest slice.

``focus_energy`` is the one focus measure the pipeline reads: the depth's confidence, the depth's sharpest
slice and the image's sharpening all come from it. ``sharpen_by_focus`` multiplies slice weights by that
energy to a power and renormalises. For the all-in-focus image it sharpens the merge's weights: the learned
merge starts from the reference's Sobel-energy blend and stays near it, and a blend still mixes in the
others' blur where one slice is clearly the sharpest; the product keeps the merge's blend where slices tie
(flat regions) and picks the sharpest slice where focus is decisive (sharpness 32 over a 4-px window, chosen
on the validation sweeps: docs/results.md, "The merge's weights sharpened by focus"). From even weights it
gives ``sharpest_slice_weights``, the depth's focus-only choice of slice.
"""

from __future__ import annotations

import math

import kornia
import torch
from torch import Tensor

FOCUS_SIGMA_PX = 4.0  # the image's focus window: 3-6 px scored alike on validation, 8 px lower
DEPTH_SIGMA_PX = 8.0  # the depth's focus window (sharpest_slice_weights, depth.depth_confidence), chosen on validation
_ENERGY_FLOOR = 1e-20  # a slice without any gradient (a black or saturated patch) gets no share, not a NaN


def focus_energy(stack: Tensor, sigma_px: float) -> Tensor:
    """(S, H, W): each slice's local sharpness, the Sobel energy of its grey averaged over a Gaussian of
    ``sigma_px``, of the focal ``stack`` (S, C, H, W)."""
    grey = stack.float().mean(dim=1, keepdim=True)
    radius = min(math.ceil(3 * sigma_px), min(stack.shape[-2:]) - 1)  # reflect padding needs less than the image
    size = 2 * radius + 1
    energy = kornia.filters.spatial_gradient(grey).pow(2).sum(dim=2)
    return kornia.filters.gaussian_blur2d(energy, (size, size), (sigma_px, sigma_px))[:, 0]


def sharpen_by_focus(weights: Tensor, stack: Tensor, sharpness: float, sigma_px: float = FOCUS_SIGMA_PX) -> Tensor:
    """(S, H, W) weights ∝ ``weights`` · ``focus_energy`` ** ``sharpness`` of the focal ``stack`` (S, C, H, W);
    ``sharpness`` 0 returns ``weights``. Slices of zero weight keep zero weight."""
    if sharpness < 0:
        raise ValueError(f"sharpness must be >= 0 (0: the merge's weights as they are), got {sharpness}")
    if weights.shape != (stack.shape[0], *stack.shape[-2:]):
        raise ValueError(f"weights {tuple(weights.shape)} must be (S, H, W) of the stack {tuple(stack.shape)}")
    if sharpness == 0:
        return weights
    log_energy = focus_energy(stack, sigma_px).clamp_min(_ENERGY_FLOOR).log()
    return torch.softmax(weights.float().log() + sharpness * log_energy, dim=0)


def sharpest_slice_weights(stack: Tensor, sigma_px: float = DEPTH_SIGMA_PX, sharpness: float = 64.0) -> Tensor:
    """(S, H, W) weights that pick each pixel's sharpest slice of the focal ``stack`` (S, C, H, W), for
    ``depth.weighted_depth_map``: even weights sharpened by focus, near 1 at the sharpest, an even mean where
    slices tie (flat regions). Unlike the merge weights, which blend slices for the best image and so average
    a pixel's diopter towards mid-sweep, these look for focus only. ``sigma_px`` 8 and ``sharpness`` 64 were
    chosen on the validation sweeps (docs/results.md)."""
    even = stack.new_full((stack.shape[0], *stack.shape[-2:]), 1.0 / stack.shape[0], dtype=torch.float32)
    return sharpen_by_focus(even, stack, sharpness, sigma_px)


def merged_image(stack: Tensor, weights: Tensor) -> Tensor:
    """(C, H, W): the focal ``stack`` (S, C, H, W) averaged per pixel with ``weights`` (S, H, W)."""
    return (weights[:, None] * stack.float()).sum(dim=0)
