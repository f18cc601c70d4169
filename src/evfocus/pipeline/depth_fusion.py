"""A learned per-pixel mix of the two depths from focus: its features, and how its head's output is applied.

The pipeline has two per-pixel depths (``pipeline.depth``): the sharpest slice's, which looks for focus only,
and the merge weights' diopter average, which blends slices for the best image. ``fuse_depths`` mixes them with
a focus share of min(1, 2 · confidence). Which one is right at a pixel depends on more than the confidence:
on 64 simulated validation sweeps per sensitivity, a per-pixel oracle choice between the two scores AbsRel
0.36 / 0.27 against the rule's 0.45 / 0.37, and no fixed rule tried wins on every set (docs/results.md,
"A learned depth fusion"). ``fusion_features`` gives a per-pixel head (``models.depth_head``) what the rule
sees and more: both focus positions and their spread over the slices, the focus measure's decisiveness and
the texture, the image's grey, the span of the slices, and each pixel's focus-energy and merge-weight profiles
along the sweep. ``fused_position`` applies the head's correction to the rule; with a zero output it *is*
the rule. Positions are in sweep units: 0 at the far focus, 1 at the near focus, linear in diopters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from evfocus.models.depth_head import NUM_FUSION_FEATURES
from evfocus.optics import FocusSchedule
from evfocus.pipeline.depth import FOCUS_TRUST, sweep_diopter
from evfocus.pipeline.focus import DEPTH_SIGMA_PX, FOCUS_SIGMA_PX, focus_energy, sharpest_slice_weights

PROFILE_SAMPLES = 8  # focus-energy and merge-weight profiles, each resampled at this many sweep positions
MAX_SHIFT = 0.2  # the head may move a pixel's focus position by at most this share of the sweep
# channels that fused_position reads
FOCUS_POSITION, MERGE_POSITION, CONFIDENCE, GREY = 0, 1, 4, 7


def slice_positions(slice_times_us: Tensor, schedule: FocusSchedule) -> Tensor:
    """(S,) float32: each slice's focus in sweep units (0 far, 1 near), times clamped to the sweep."""
    diopter = sweep_diopter(slice_times_us, schedule)
    span = schedule.near_diopter - schedule.far_diopter
    return ((diopter - schedule.far_diopter) / span).to(torch.float32)


def _profile(values: Tensor, positions: Tensor) -> Tensor:
    """(S, H, W) per-slice values → (PROFILE_SAMPLES, H, W), linearly interpolated at evenly spaced sweep
    positions between the slices' (held constant beyond the first and last slice)."""
    order = positions.argsort()
    positions, values = positions[order], values[order]
    if len(positions) == 1:
        return values.expand(PROFILE_SAMPLES, *values.shape[1:])
    samples = torch.linspace(0.0, 1.0, PROFILE_SAMPLES, device=positions.device)
    upper = torch.searchsorted(positions, samples).clamp(1, len(positions) - 1)
    lower = upper - 1
    gap = (positions[upper] - positions[lower]).clamp_min(1e-6)
    along = ((samples - positions[lower]) / gap).clamp(0.0, 1.0)[:, None, None]
    return values[lower] * (1.0 - along) + values[upper] * along


def _mean_and_spread(weights: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Per pixel, the ``weights``-weighted mean of slice ``positions`` and its standard deviation: (H, W) each."""
    weights = weights / weights.sum(dim=0, keepdim=True).clamp_min(1e-12)
    mean = (weights * positions[:, None, None]).sum(dim=0)
    spread = (weights * (positions[:, None, None] - mean).pow(2)).sum(dim=0).clamp_min(0.0).sqrt()
    return mean, spread


def _log_energy(energy: Tensor) -> Tensor:
    """Sobel energies span decades (1e-6 in flat sky, 1e-1 on sharp edges): a log, scaled to about [-1, 1]."""
    return (energy.clamp_min(1e-8).log10() + 4.0) / 2.0


def fusion_features(stack: Tensor, merge_weights: Tensor, slice_times_us: Tensor, schedule: FocusSchedule,
                    confidence: Tensor, aif: Tensor) -> Tensor:
    """(NUM_FUSION_FEATURES, H, W) float32 per-pixel features of a focal ``stack`` (S, C, H, W), the merge's
    ``merge_weights`` (S, H, W), the slices' times (S,), the depth ``confidence`` (1, H, W) and the ``aif``
    (C, H, W): what ``models.depth_head.DepthHead`` reads."""
    positions = slice_positions(slice_times_us, schedule).to(stack.device)
    energy = focus_energy(stack, DEPTH_SIGMA_PX)
    peak = energy.amax(dim=0)
    focus_weights = sharpest_slice_weights(stack)
    focus_position, focus_spread = _mean_and_spread(focus_weights, positions)
    merge_weights = merge_weights.float()
    merge_position, merge_spread = _mean_and_spread(merge_weights, positions)
    constant = torch.ones_like(peak)
    features = [
        focus_position, merge_position, focus_spread, merge_spread, confidence.float()[0],
        (peak - energy.mean(dim=0)) / peak.clamp_min(1e-12), _log_energy(peak), aif.float().mean(dim=0),
        _log_energy(focus_energy(aif[None], FOCUS_SIGMA_PX)[0]),
        constant * positions.min(), constant * positions.max(), constant * (len(positions) / 8.0),
        focus_weights.amax(dim=0), merge_weights.amax(dim=0),
    ]
    profiles = [_profile(energy / peak.clamp_min(1e-12), positions), _profile(merge_weights, positions)]
    stacked = torch.cat([torch.stack(features), *profiles])
    if stacked.shape[0] != NUM_FUSION_FEATURES:  # the head's input width is fixed in models.depth_head
        raise AssertionError(f"{stacked.shape[0]} fusion features, the depth head takes {NUM_FUSION_FEATURES}")
    return stacked


def fused_position(features: Tensor, correction: Tensor) -> Tensor:
    """(N, 1, H, W) focus positions from features (N, F, H, W) and a head's ``correction`` (N, 2, H, W): the rule's
    focus share plus the first channel, clamped to [0, 1], mixes the two positions; the second channel shifts the
    mix by at most ``MAX_SHIFT`` (tanh); the result stays within the sweep."""
    focus_position = features[:, FOCUS_POSITION:FOCUS_POSITION + 1]
    merge_position = features[:, MERGE_POSITION:MERGE_POSITION + 1]
    rule_share = (FOCUS_TRUST * features[:, CONFIDENCE:CONFIDENCE + 1]).clamp(0.0, 1.0)
    share = (rule_share + correction[:, :1]).clamp(0.0, 1.0)
    shift = MAX_SHIFT * torch.tanh(correction[:, 1:2])
    return (share * focus_position + (1.0 - share) * merge_position + shift).clamp(0.0, 1.0)


def position_depth_m(position: Tensor, near_diopter: Tensor | float, far_diopter: Tensor | float) -> Tensor:
    """Sweep positions (any shape; tensors of diopters broadcast against it) → depth in metres."""
    return 1.0 / (far_diopter + position * (near_diopter - far_diopter))


def learned_depth(head: nn.Module, features: Tensor, schedule: FocusSchedule) -> Tensor:
    """(1, H, W) metres: the two depths from focus mixed as ``head`` corrects the rule, for one sweep's
    ``fusion_features`` (F, H, W)."""
    parameter = next(head.parameters())
    batch = features[None].to(device=parameter.device, dtype=parameter.dtype)
    position = fused_position(batch, head(batch).float())[0]
    if not math.isfinite(float(position.sum())):
        raise ValueError("the depth head gave non-finite positions (a corrupt weights file?)")
    return position_depth_m(position.to(features.device), schedule.near_diopter, schedule.far_diopter)
