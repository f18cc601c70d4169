"""Merge an image focal stack into one all-in-focus image with per-pixel softmax weights over slices.

``EvMergeNet`` scores every slice with one shared encoder–decoder (slice image + the events around
the slice's time + the mean of all slices' features as global context) and softmaxes the scores
across slices. Because the weights are shared and the context is a mean, the network takes any
number of slices, is equivariant to their order, and ignores padded slices completely (they are
never run, and never enter the context). ``gradient_energy_merge`` is the reference's non-learned
ablation.

With ``prior="sobel"`` the scores are the log of that ablation's Sobel energy plus the network's
output, whose last convolution starts at zero: the untrained net *is* the Sobel merge, and training
learns only where to depart from it. A small net trained briefly otherwise ends up below the Sobel
merge it should beat (docs/results.md).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import kornia
import torch
from torch import Tensor, nn

from evfocus.models.blocks import ConvNormAct, Norm, UpStage, make_norm, pad_to_multiple

MergePrior = Literal["none", "sobel"]
MERGE_PRIORS: tuple[MergePrior, ...] = ("none", "sobel")
SOBEL_SIGMA_PX, SOBEL_KERNEL_PX = 7.0, 41  # the reference's blur of the energy, so weights vary smoothly
_LOG_ENERGY_FLOOR = 1e-8  # flat regions: every slice's log energy is about log(floor), so weights are even


class MergeOutput(NamedTuple):
    image: Tensor  # (N, C, H, W)
    weights: Tensor  # (N, S, H, W): ≥ 0, sum to 1 over valid slices, 0 on invalid ones


def _slice_mean(features: Tensor, sample: Tensor, num_samples: int) -> Tensor:
    """Mean of each sample's slice features, handed back to every slice of that sample: (V, C, h, w)."""
    sums = features.new_zeros((num_samples, *features.shape[1:])).index_add_(0, sample, features)
    counts = torch.bincount(sample, minlength=num_samples).to(features.dtype)
    return (sums / counts[:, None, None, None])[sample]


def _two_convs(in_channels: int, out_channels: int, norm: Norm) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(in_channels, out_channels, norm=norm),
                         ConvNormAct(out_channels, out_channels, norm=norm))


class _ContextBlock(nn.Module):
    """Two convs on a slice's features after mixing in the mean over the stack (1×1 fuse)."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm) -> None:
        super().__init__()
        self.fuse = ConvNormAct(2 * in_channels, out_channels, 1, norm=norm)
        self.body = _two_convs(out_channels, out_channels, norm)

    def forward(self, features: Tensor, sample: Tensor, num_samples: int) -> Tensor:
        context = _slice_mean(features, sample, num_samples)
        return self.body(self.fuse(torch.cat([features, context], dim=1)))


class _UpBlock(nn.Module):
    """Upsample ×2, join the skip connection, two convs."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm) -> None:
        super().__init__()
        self.up = UpStage(in_channels, out_channels, norm)
        self.body = _two_convs(2 * out_channels, out_channels, norm)

    def forward(self, features: Tensor, skip: Tensor) -> Tensor:
        return self.body(torch.cat([self.up(features), skip], dim=1))


class EvMergeNet(nn.Module):
    """Event-guided focal-stack merge for any number of slices S and any H×W.

    ``forward(stack (N,S,C,H,W) in [0,1], events (N,S,B,H,W), valid (N,S) bool | None)``.
    With ``depth=3`` the reference's parameter budget (MergeStackNet, 5.68 M) is met at ``width=47``
    (5.77 M for 16 event bins; the event stem adds 0.4 k per extra bin).
    """

    def __init__(self, num_bins: int, image_channels: int = 3, width: int = 32, depth: int = 3,
                 norm: Norm = "group", prior: MergePrior = "none") -> None:
        super().__init__()
        if prior not in MERGE_PRIORS:
            raise ValueError(f"EvMergeNet prior must be one of {MERGE_PRIORS}, got {prior!r}")
        for name, value in (("num_bins", num_bins), ("image_channels", image_channels), ("width", width),
                            ("depth", depth)):
            if value < 1:
                raise ValueError(f"EvMergeNet {name} must be >= 1, got {value}")
        make_norm(norm, 1)  # reject an unknown norm before building anything
        self.num_bins, self.image_channels, self.depth = num_bins, image_channels, depth
        channels = [width * 2**level for level in range(depth + 1)]
        self.image_stem = ConvNormAct(image_channels, width, norm=norm)
        self.event_stem = ConvNormAct(num_bins, width, norm=norm)
        self.encoders = nn.ModuleList(
            _ContextBlock(2 * width if level == 0 else channels[level], channels[level], norm)
            for level in range(depth)
        )
        self.downs = nn.ModuleList(ConvNormAct(channels[level], channels[level + 1], 2, stride=2, norm=norm)
                                   for level in range(depth))
        self.bottleneck = _ContextBlock(channels[depth], channels[depth], norm)
        self.ups = nn.ModuleList(_UpBlock(channels[level + 1], channels[level], norm)
                                 for level in reversed(range(depth)))
        self.head = nn.Conv2d(width, 1, 3, padding=1)
        self.prior = prior
        if prior == "sobel":
            self.prior_scale = nn.Parameter(torch.ones(()))  # learnable trust in the Sobel energy
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, stack: Tensor, events: Tensor, valid: Tensor | None = None) -> MergeOutput:
        valid = self._check_inputs(stack, events, valid)
        num_samples, _, _, height, width = stack.shape
        sample, slot = valid.nonzero(as_tuple=True)
        slices = stack[sample, slot]
        logits = self._slice_logits(slices * 2 - 1, events[sample, slot], sample, num_samples)
        if self.prior == "sobel":
            with torch.autocast(slices.device.type, enabled=False):
                log_energy = sobel_energy(slices.float()).add_(_LOG_ENERGY_FLOOR).log_()[:, 0]
            logits = logits.float() + self.prior_scale * log_energy
        all_logits = stack.new_full((num_samples, stack.shape[1], height, width), -math.inf)
        all_logits[sample, slot] = logits.to(all_logits.dtype)  # autocast gives bf16 logits; softmax in fp32
        weights = torch.softmax(all_logits, dim=1)
        image = stack.new_zeros((num_samples, *stack.shape[2:]))
        image = image.index_add(0, sample, weights[sample, slot][:, None] * slices)
        return MergeOutput(image, weights)

    def _slice_logits(self, images: Tensor, events: Tensor, sample: Tensor, num_samples: int) -> Tensor:
        """Shared encoder–decoder over the valid slices (V, ·, H, W) → one logit map each (V, H, W)."""
        height, width = images.shape[-2:]
        stride = 2**self.depth
        images, events = pad_to_multiple(images, stride), pad_to_multiple(events, stride)
        features = torch.cat([self.image_stem(images), self.event_stem(events)], dim=1)
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            features = encoder(features, sample, num_samples)
            skips.append(features)
            features = down(features)
        features = self.bottleneck(features, sample, num_samples)
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            features = up(features, skip)
        return self.head(features)[:, 0, :height, :width]

    def _check_inputs(self, stack: Tensor, events: Tensor, valid: Tensor | None) -> Tensor:
        if stack.ndim != 5 or stack.shape[2] != self.image_channels:
            raise ValueError(f"stack must be (N, S, {self.image_channels}, H, W), got {tuple(stack.shape)}")
        expected = (*stack.shape[:2], self.num_bins, *stack.shape[3:])
        if tuple(events.shape) != expected:
            raise ValueError(f"events must be (N, S, B={self.num_bins}, H, W) = {expected}, "
                             f"got {tuple(events.shape)}")
        return _checked_valid(valid, stack)


def _checked_valid(valid: Tensor | None, stack: Tensor) -> Tensor:
    """The (N, S) bool mask of real slices (all when None); every sample needs at least one."""
    if valid is None:
        return torch.ones(stack.shape[:2], dtype=torch.bool, device=stack.device)
    if valid.dtype != torch.bool or tuple(valid.shape) != tuple(stack.shape[:2]):
        raise ValueError(f"valid must be a bool (N, S) = {tuple(stack.shape[:2])} mask, "
                         f"got {valid.dtype} {tuple(valid.shape)}")
    if not bool(valid.any(dim=1).all()):
        empty = (~valid.any(dim=1)).nonzero()[:, 0].tolist()
        raise ValueError(f"samples {empty} have no valid slice to merge")
    return valid


def sobel_energy(images: Tensor, sigma: float = SOBEL_SIGMA_PX, kernel: int = SOBEL_KERNEL_PX) -> Tensor:
    """Local Sobel energy of the grey images (M, C, H, W) → (M, 1, H, W), Gaussian-blurred (``sigma`` px)."""
    grey = images.mean(dim=1, keepdim=True)
    energy = kornia.filters.spatial_gradient(grey, mode="sobel", normalized=False).pow(2).sum(dim=2)
    # Replicate borders: reflection fails on images smaller than half the kernel.
    return kornia.filters.gaussian_blur2d(energy, (kernel, kernel), (sigma, sigma), border_type="replicate")


def gradient_energy_merge(stack: Tensor, valid: Tensor | None = None, sigma: float = SOBEL_SIGMA_PX,
                          kernel: int = SOBEL_KERNEL_PX) -> MergeOutput:
    """Non-learned merge (the reference's ablation): weight each slice by its local Sobel energy.

    Energy of the grey slice is blurred by a ``kernel``×``kernel`` Gaussian (``sigma`` px) so weights
    vary smoothly, then normalised per pixel over valid slices; where no slice has any energy
    (flat regions) the valid slices are averaged instead of producing black.
    """
    if stack.ndim != 5:
        raise ValueError(f"stack must be (N, S, C, H, W), got {tuple(stack.shape)}")
    if sigma <= 0 or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"need sigma > 0 and an odd kernel >= 1, got sigma={sigma}, kernel={kernel}")
    valid = _checked_valid(valid, stack)
    num_samples, num_slices, channels, height, width = stack.shape
    energy = sobel_energy(stack.reshape(num_samples * num_slices, channels, height, width), sigma, kernel)
    energy = energy.reshape(num_samples, num_slices, height, width) * valid[:, :, None, None]
    total = energy.sum(dim=1, keepdim=True)
    uniform = valid[:, :, None, None] / valid.sum(dim=1)[:, None, None, None]
    weights = torch.where(total > 1e-12, energy / total.clamp_min(1e-12), uniform.expand_as(energy))
    image = (weights[:, :, None] * stack.masked_fill(~valid[:, :, None, None, None], 0.0)).sum(dim=1)
    return MergeOutput(image, weights)
