"""Depth from focus: the focus search's per-patch times and the merge's per-pixel weights as depth maps.

The sweep schedule maps every moment to the distance in focus, so "when was this sharpest" is a
depth measurement. Two resolutions: ``patch_depth_map`` paints each patch's found time over its box
(coarse, one value per patch); ``weighted_depth_map`` refines it per pixel, from the merge weights and
from each pixel's sharpest slice (``focus.sharpest_slice_weights``), which ``fuse_depths`` mixes by confidence.
Averages are taken in diopters (1/m) because defocus is linear in diopters (see ``optics``): a
pixel split evenly between slices focused at 1 m and 0.5 m is best explained by the focus half-way
in blur, 1.5 D, i.e. 1/1.5 m — not by the metre average 0.75 m. ``depth_errors`` scores a map
against ground truth in both units.
"""

from __future__ import annotations

import kornia
import torch
from torch import Tensor

from evfocus.optics import FocusSchedule
from evfocus.pipeline.focus import DEPTH_SIGMA_PX, focus_energy

FOCUS_TRUST = 2.0  # fuse_depths: the focus share is min(1, FOCUS_TRUST · confidence)


def sweep_diopter(times_us: Tensor, schedule: FocusSchedule) -> Tensor:
    """Focus diopter (float64) at times clamped to the sweep: outside it the lens was never there."""
    clamped = times_us.to(torch.float64).clamp(float(schedule.t_start_us), float(schedule.t_end_us))
    return schedule.focus_diopter(clamped)


def patch_depth_map(
    times_us: Tensor, patch_boxes: Tensor, schedule: FocusSchedule, height: int, width: int
) -> tuple[Tensor, Tensor]:
    """Per-patch focus times (N, N) → piecewise-constant ``(depth_m, diopter)``, each (1, H, W) float32.

    Patch p (row-major over the N×N grid, as ``focus_search`` returns them) gets the focus distance
    of ``schedule`` at ``times_us`` and paints it over its box ``patch_boxes[p] = (top, left, h, w)``
    (nearest: no interpolation between patches). Times outside [t_start_us, t_end_us] are **clamped**
    to the sweep, so they give the near or far focus limit rather than an extrapolated (possibly
    negative) distance. Pixels no box covers are NaN (``PatchGrid`` boxes tile the image, so none).
    """
    if times_us.ndim != 2 or times_us.shape[0] != times_us.shape[1]:
        raise ValueError(f"times_us must be (N, N), got shape {tuple(times_us.shape)}")
    if patch_boxes.ndim != 2 or patch_boxes.shape[1] != 4 or patch_boxes.shape[0] != times_us.numel():
        raise ValueError(f"patch_boxes must be (P, 4) with P = N*N = {times_us.numel()}, "
                         f"got shape {tuple(patch_boxes.shape)}")
    boxes = patch_boxes.long().tolist()
    for top, left, box_h, box_w in boxes:
        if top < 0 or left < 0 or box_h < 1 or box_w < 1 or top + box_h > height or left + box_w > width:
            raise ValueError(f"patch box (top={top}, left={left}, h={box_h}, w={box_w}) does not fit "
                             f"a {height}x{width} image")
    diopter_per_patch = sweep_diopter(times_us.reshape(-1), schedule).to(torch.float32)
    diopter = torch.full((1, height, width), float("nan"), dtype=torch.float32, device=times_us.device)
    for (top, left, box_h, box_w), value in zip(boxes, diopter_per_patch, strict=True):
        diopter[:, top:top + box_h, left:left + box_w] = value
    return 1.0 / diopter, diopter


def weighted_depth_map(weights: Tensor, slice_times_us: Tensor, schedule: FocusSchedule) -> Tensor:
    """Per-pixel depth (m) from merge weights: ``1 / Σ_s w_s D_s / Σ_s w_s`` with D_s the slice's diopter.

    ``weights`` (S, H, W) or (N, S, H, W), ≥ 0 (e.g. ``MergeOutput.weights``), with ``slice_times_us``
    (S,) or (N, S); returns (1, H, W) or (N, 1, H, W) float32. The weighted mean is taken in diopters
    (defocus is linear in them), then inverted. Slice times clamp to the sweep like
    ``patch_depth_map``. Invalid slices — zero weight, or a non-finite time (padding) — do not count;
    a pixel whose weights are all zero falls back to the plain mean diopter of the finite-time slices
    (the merge's own fallback for flat regions), so the map has no holes.
    """
    batched = weights.ndim == 4
    if weights.ndim not in (3, 4):
        raise ValueError(f"weights must be (S, H, W) or (N, S, H, W), got shape {tuple(weights.shape)}")
    if tuple(slice_times_us.shape) != tuple(weights.shape[:-2]):
        raise ValueError(f"slice_times_us must be {tuple(weights.shape[:-2])} to match weights "
                         f"{tuple(weights.shape)}, got {tuple(slice_times_us.shape)}")
    if not batched:
        weights, slice_times_us = weights[None], slice_times_us[None]
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise ValueError("weights must be finite and >= 0")
    finite = torch.isfinite(slice_times_us.to(torch.float64))
    if not bool(finite.any(dim=1).all()):
        empty = (~finite.any(dim=1)).nonzero()[:, 0].tolist()
        raise ValueError(f"samples {empty} have no slice with a finite time")
    times = torch.where(finite, slice_times_us.to(torch.float64), float(schedule.t_start_us))
    diopter = sweep_diopter(times, schedule).to(weights.device)  # (N, S) float64
    diopter = torch.where(finite.to(weights.device), diopter, 0.0)
    w = weights.to(torch.float64) * finite.to(weights.device)[:, :, None, None]
    total = w.sum(dim=1)  # (N, H, W)
    weighted = (w * diopter[:, :, None, None]).sum(dim=1) / total.clamp_min(1e-300)
    fallback = diopter.sum(dim=1) / finite.sum(dim=1).to(diopter)  # (N,)
    mean_diopter = torch.where(total > 0, weighted, fallback[:, None, None])
    depth_m = (1.0 / mean_diopter).to(torch.float32)[:, None]
    return depth_m if batched else depth_m[0]


def depth_errors(pred_depth_m: Tensor, true_depth_m: Tensor, valid_mask: Tensor | None = None) -> dict[str, float]:
    """Depth-map errors over the valid pixels, as plain floats.

    ``abs_rel`` = mean |d − d*| / d* (scale-free, the usual depth benchmark number); ``rmse_m`` in
    metres (dominated by far pixels); ``rmse_diopter`` = RMSE of 1/d − 1/d* (the unit in which depth
    from focus has uniform precision). Both maps must have one shape and, where valid, be finite and
    positive; ``valid_mask`` (bool, same shape) excludes pixels with no ground truth.
    """
    if tuple(pred_depth_m.shape) != tuple(true_depth_m.shape):
        raise ValueError(f"pred_depth_m {tuple(pred_depth_m.shape)} and true_depth_m "
                         f"{tuple(true_depth_m.shape)} must have the same shape")
    if valid_mask is None:
        valid_mask = torch.ones(pred_depth_m.shape, dtype=torch.bool, device=pred_depth_m.device)
    elif valid_mask.dtype != torch.bool or tuple(valid_mask.shape) != tuple(pred_depth_m.shape):
        raise ValueError(f"valid_mask must be bool with shape {tuple(pred_depth_m.shape)}, "
                         f"got {valid_mask.dtype} {tuple(valid_mask.shape)}")
    if not bool(valid_mask.any()):
        raise ValueError("valid_mask selects no pixel")
    device = pred_depth_m.device
    valid_mask = valid_mask.to(device)
    pred = pred_depth_m.to(torch.float64)[valid_mask]
    true = true_depth_m.to(device=device, dtype=torch.float64)[valid_mask]
    for name, values in (("pred_depth_m", pred), ("true_depth_m", true)):
        if not bool(torch.isfinite(values).all()) or bool((values <= 0).any()):
            raise ValueError(f"{name} must be finite and positive (metres) on every valid pixel; "
                             f"{int((~torch.isfinite(values) | (values <= 0)).sum())} are not")
    return {
        "abs_rel": float(((pred - true).abs() / true).mean()),
        "rmse_m": float((pred - true).pow(2).mean().sqrt()),
        "rmse_diopter": float((1.0 / pred - 1.0 / true).pow(2).mean().sqrt()),
    }


def normalised_diopter(depth_m: Tensor, schedule: FocusSchedule) -> Tensor:
    """Depth (m) → 0 at the sweep's far focus, 1 at its near focus: for colour maps (near = warm)."""
    span = schedule.near_diopter - schedule.far_diopter
    return (1.0 / depth_m.float() - schedule.far_diopter) / span


def depth_confidence(stack: Tensor, sigma_px: float = DEPTH_SIGMA_PX, texture_scale: float = 0.003) -> Tensor:
    """(1, H, W) in [0, 1]: how far the per-pixel depth from focus can be trusted.

    Two things must hold at a pixel: one slice of the focal ``stack`` (S, C, H, W) must be clearly
    sharper there than the others (else the depth is an average, not a measurement), and there must
    be texture at all (a flat region looks the same at every focus). Local sharpness is ``focus.focus_energy``
    over a Gaussian of ``sigma_px``; confidence = (max − mean)/max over the slices × g/(g +
    ``texture_scale``) with g the RMS gradient of the sharpest slice. The window is the sharpest slice's
    (``focus.sharpest_slice_weights``), so the confidence judges the very measurement it weighs; ``sigma_px``
    8 and ``texture_scale`` 0.003 (the texture term only keeps truly flat regions out: faint texture is
    still texture) were chosen on the validation sweeps (docs/results.md, "A confidence that trusts faint
    texture").
    """
    if stack.shape[0] < 2:
        return torch.zeros((1, *stack.shape[-2:]), device=stack.device)
    energy = focus_energy(stack, sigma_px)
    peak = energy.amax(dim=0)
    decisive = (peak - energy.mean(dim=0)) / peak.clamp_min(1e-12)
    texture = peak.sqrt()
    return (decisive * texture / (texture + texture_scale))[None]


def fuse_depths(merge_depth_m: Tensor, focus_depth_m: Tensor, confidence: Tensor,
                trust: float = FOCUS_TRUST) -> Tensor:
    """Per pixel, the sharpest slice's depth where the focus measure is decisive, the merge weights' where
    it is not: a diopter mix with weight min(1, ``trust`` · confidence) on ``focus_depth_m`` (all (1, H, W);
    ``trust`` 2 chosen on the validation sweeps: from confidence 0.5 on, the focus measure alone decides)."""
    focus_share = (trust * confidence.float()).clamp(0.0, 1.0)
    diopter = focus_share / focus_depth_m.float() + (1.0 - focus_share) / merge_depth_m.float()
    return 1.0 / diopter


def regularise_depth(depth_m: Tensor, confidence: Tensor, guide: Tensor, radius_px: int = 8,
                     colour_sigma: float = 0.1) -> Tensor:
    """Edge-aware, confidence-weighted smoothing of a (1, H, W) depth map, in diopters.

    A joint bilateral filter (kornia) steered by the all-in-focus ``guide`` (C, H, W) spreads
    confident depths over their own surface and not across image edges: normalised convolution
    ``B(c·D) / B(c)`` with D = 1/depth (defocus is linear in diopters). Its weights are positive, so
    the ratio is a weighted mean of measured depths; where no confidence is near, the input stays.
    """
    size = 2 * radius_px + 1
    spatial_sigma = radius_px / 2
    grey = guide.float().mean(dim=0, keepdim=True)[None]
    weight = confidence.float()[None] + 1e-6
    diopter = 1.0 / depth_m.float()[None]

    def blur(values: Tensor) -> Tensor:
        return kornia.filters.joint_bilateral_blur(values, grey, (size, size), colour_sigma,
                                                   (spatial_sigma, spatial_sigma), border_type="replicate")

    smoothed = blur(weight * diopter) / blur(weight)
    return (1.0 / smoothed)[0]


CONFIDENT = 0.3  # depth_confidence at or above which a pixel counts as confident in the scores


def depth_scores(depth_m: Tensor, confidence: Tensor, true_depth_m: Tensor) -> dict[str, float | None]:
    """``depth_errors`` over every pixel with ground truth (+inf marks no surface), plus ``abs_rel`` over
    the confident pixels only (None when there are none) and the ``confident_fraction`` of pixels."""
    truth = true_depth_m.to(depth_m.device)
    valid = torch.isfinite(truth)
    scores: dict[str, float | None] = dict(depth_errors(depth_m, truth, valid))
    confident = valid & (confidence.to(depth_m.device) >= CONFIDENT)
    scores["abs_rel_confident"] = depth_errors(depth_m, truth, confident)["abs_rel"] if bool(confident.any()) else None
    scores["confident_fraction"] = float(confident.float().sum() / valid.float().sum())
    return scores
