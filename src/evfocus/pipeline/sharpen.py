"""The merge's weights sharpened by each slice's focus, for the all-in-focus image.

Merge weights blend slices: the learned merge starts from the reference's Sobel-energy blend and stays near
it, and that blend is what the depth reads in flat regions. An image, though, wants each pixel's sharpest
slice: where one slice's local Sobel energy clearly exceeds the others', the blend still mixes in their
blur. Multiplying the weights by energy ** ``sharpness`` and renormalising keeps the merge's blend where
slices tie (flat regions) and picks the sharpest slice where focus is decisive. Sharpness 32 over a 4-px
window was chosen on the validation sweeps (docs/results.md, "The merge's weights sharpened by focus").
"""

from __future__ import annotations

import torch
from torch import Tensor

from evfocus.pipeline.depth import focus_energy

FOCUS_SIGMA_PX = 4.0  # the focus measure's window: 3-6 px scored alike on validation, 8 px lower
_ENERGY_FLOOR = 1e-20  # a slice without any gradient (a black or saturated patch) gets no share, not a NaN


def sharpen_by_focus(weights: Tensor, stack: Tensor, sharpness: float, sigma_px: float = FOCUS_SIGMA_PX) -> Tensor:
    """(S, H, W) weights ∝ ``weights`` · energy ** ``sharpness``, the energy each slice's local Sobel energy
    (``depth.focus_energy``) of the focal ``stack`` (S, C, H, W); ``sharpness`` 0 returns ``weights``.
    Slices of zero weight keep zero weight."""
    if sharpness < 0:
        raise ValueError(f"sharpness must be >= 0 (0: the merge's weights as they are), got {sharpness}")
    if weights.shape != (stack.shape[0], *stack.shape[-2:]):
        raise ValueError(f"weights {tuple(weights.shape)} must be (S, H, W) of the stack {tuple(stack.shape)}")
    if sharpness == 0:
        return weights
    log_energy = focus_energy(stack, sigma_px).clamp_min(_ENERGY_FLOOR).log()
    return torch.softmax(weights.float().log() + sharpness * log_energy, dim=0)


def merged_image(stack: Tensor, weights: Tensor) -> Tensor:
    """(C, H, W): the focal ``stack`` (S, C, H, W) averaged per pixel with ``weights`` (S, H, W)."""
    return (weights[:, None] * stack.float()).sum(dim=0)
