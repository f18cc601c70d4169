"""Building blocks shared by the event-guided networks (EvRefocusNet, EvMergeNet).

Every unit is conv → norm → LeakyReLU(0.1), as in the reference nets. The normalisation is a
choice because the reference's batch norm suits neither of our regimes well: training uses
small batches of crops (statistics of 4–10 samples are noisy) and inference runs one full frame
at a time through running statistics gathered on crops. Group norm is batch-independent and
behaves identically in training and inference, so it is the default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["group", "batch", "none"]
NORMS: tuple[str, ...] = ("group", "batch", "none")
_MAX_GROUPS = 8  # small enough to divide the narrow growth layers of the dense blocks
_SLOPE = 0.1


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (trainable or not) — the figure papers quote."""
    return sum(p.numel() for p in module.parameters())


def make_norm(norm: Norm, channels: int) -> nn.Module:
    """Normalisation layer for `channels` feature maps (see the module docstring for the choice)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "group":
        return nn.GroupNorm(math.gcd(channels, _MAX_GROUPS), channels)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad bottom/right so H and W divide `multiple`; crop back with `[..., :h, :w]`.

    Replicate (not reflect) padding works for any size, even a 1-pixel-high input.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


class ConvNormAct(nn.Sequential):
    """Conv → norm → LeakyReLU(0.1); a 2×2 stride-2 kernel makes it the downsampling conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 norm: Norm = "group") -> None:
        super().__init__(
            # a bias right before a normalisation layer is redundant
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2,
                      bias=norm == "none"),
            make_norm(norm, out_channels),
            nn.LeakyReLU(_SLOPE, inplace=True),
        )


class UpStage(nn.Sequential):
    """2× upsampling by a 2×2 stride-2 transposed conv → norm → LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm = "group") -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=norm == "none"),
            make_norm(norm, out_channels),
            nn.LeakyReLU(_SLOPE, inplace=True),
        )


class DenseBlock(nn.Module):
    """Four densely connected (1×1 bottleneck → 3×3) layers growing C by C/4 each: C → 2C channels.

    Dense connections reuse early features cheaply, which is how the reference keeps its encoders
    small while doubling the channel count per level.
    """

    layers_count = 4

    def __init__(self, channels: int, norm: Norm = "group") -> None:
        super().__init__()
        if channels % self.layers_count:
            raise ValueError(f"DenseBlock channels must be a multiple of {self.layers_count}, got {channels}")
        growth = channels // self.layers_count
        self.layers = nn.ModuleList(
            nn.Sequential(
                ConvNormAct(channels + i * growth, channels, 1, norm=norm),
                ConvNormAct(channels, growth, 3, norm=norm),
            )
            for i in range(self.layers_count)
        )
        self.out_channels = 2 * channels

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class ResidualBlock(nn.Module):
    """Two 3×3 conv-norm layers plus identity skip, then LeakyReLU; keeps C channels."""

    def __init__(self, channels: int, norm: Norm = "group") -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, norm=norm),
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none"),
            make_norm(norm, channels),
        )
        self.act = nn.LeakyReLU(_SLOPE, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


def level_widths(width: int, depth: int) -> list[int]:
    """Base channels per resolution level: width, 2·width, 4·width, …; validates the pair."""
    if width < DenseBlock.layers_count or width % DenseBlock.layers_count:
        raise ValueError(f"width must be a positive multiple of {DenseBlock.layers_count}, got {width}")
    if depth < 2:
        raise ValueError(f"depth (resolution levels) must be >= 2 for a U-Net, got {depth}")
    return [width * 2**i for i in range(depth)]


class BranchEncoder(nn.Module):
    """One encoder branch: level 0 = 3×3 conv + dense block, each further level = 2× down + dense block.

    Returns the features of every level; level i has `2 · width · 2**i` channels.
    """

    def __init__(self, in_channels: int, width: int, depth: int, norm: Norm = "group") -> None:
        super().__init__()
        widths = level_widths(width, depth)
        stages = [
            nn.Sequential(ConvNormAct(in_channels, widths[0], 3, norm=norm), DenseBlock(widths[0], norm))
        ]
        stages += [
            nn.Sequential(ConvNormAct(2 * widths[i - 1], widths[i], 2, stride=2, norm=norm),
                          DenseBlock(widths[i], norm))
            for i in range(1, depth)
        ]
        self.stages = nn.ModuleList(stages)
        self.out_channels = [2 * w for w in widths]

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class DualEncoder(nn.Module):
    """Two parallel branch encoders (e.g. log-image and events), concatenated level by level.

    Separate branches let each modality get its own low-level filters before they meet.
    """

    def __init__(self, in_channels_a: int, in_channels_b: int, width: int, depth: int,
                 norm: Norm = "group") -> None:
        super().__init__()
        self.branch_a = BranchEncoder(in_channels_a, width, depth, norm)
        self.branch_b = BranchEncoder(in_channels_b, width, depth, norm)
        self.widths = level_widths(width, depth)
        self.out_channels = [2 * c for c in self.branch_a.out_channels]

    def forward(self, a: Tensor, b: Tensor, a_features: list[Tensor] | None = None) -> list[Tensor]:
        """Fused skips; ``a_features`` (from ``branch_a(a)``) skips branch a when its input repeats."""
        features = self.branch_a(a) if a_features is None else a_features
        return [torch.cat(pair, dim=1) for pair in zip(features, self.branch_b(b), strict=True)]


class FusionDecoder(nn.Module):
    """U-Net decoder over the fused skips of a `DualEncoder`; returns `widths[0]` full-res channels.

    Per level (coarse → fine): upsample to `2·widths[i]`, concatenate with the skip, fuse by a 1×1
    conv to `widths[i]`, and (below full resolution) widen again with a dense block.
    """

    def __init__(self, skip_channels: Sequence[int], widths: Sequence[int], norm: Norm = "group") -> None:
        super().__init__()
        if len(skip_channels) != len(widths):
            raise ValueError(f"got {len(skip_channels)} skip levels but {len(widths)} widths")
        ups, fuses = [], []
        x_channels = skip_channels[-1]
        for i in reversed(range(len(widths) - 1)):
            up_channels = 2 * widths[i]
            ups.append(UpStage(x_channels, up_channels, norm))
            fuse: list[nn.Module] = [ConvNormAct(skip_channels[i] + up_channels, widths[i], 1, norm=norm)]
            if i > 0:
                fuse.append(DenseBlock(widths[i], norm))
            fuses.append(nn.Sequential(*fuse))
            x_channels = 2 * widths[i] if i > 0 else widths[i]
        self.ups = nn.ModuleList(ups)
        self.fuses = nn.ModuleList(fuses)
        self.out_channels = widths[0]

    def forward(self, skips: Sequence[Tensor]) -> Tensor:
        x = skips[-1]
        for up, fuse, skip in zip(self.ups, self.fuses, reversed(skips[:-1]), strict=True):
            x = fuse(torch.cat([skip, up(x)], dim=1))
        return x
