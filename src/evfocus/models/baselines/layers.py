"""Pieces shared by the image-only baselines: the common image → image interface, plain conv layers.

`ImageBaseline` fixes the contract every baseline keeps: ``forward(image)`` takes an (N, 3, H, W) frame
in [0, 1] of any size, pads it (replicate) to the network's stride, restores it, crops back and limits
the estimate to [0, 1] with `straight_through_clamp` (the same output in training and evaluation,
a gradient for every pixel). Each network's own input scaling (e.g. to [−1, 1]) happens inside
its `restore`.

The plain layers (conv + LeakyReLU without normalisation, 4×4 stride-2 transposed convs, IFAN's
residual block, the 3-convs-per-level pyramid encoder) are the vocabulary of the IFAN family
(IFAN, DRBNet), rebuilt here from the architecture descriptions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch.nn.functional as F
from torch import Tensor, nn

from evfocus.models.blocks import pad_to_multiple
from evfocus.models.refocus import straight_through_clamp

IFAN_SLOPE = 0.1  # LeakyReLU slope of the IFAN family (IFAN, DRBNet)


def check_image(image: Tensor) -> None:
    """An (N, 3, H, W) float frame, or a ValueError saying what is wrong."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (N, 3, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a float tensor in [0, 1], got dtype {image.dtype}")


def finish(estimate: Tensor, height: int, width: int) -> Tensor:
    """Crop a padded estimate back to H×W and limit it to [0, 1] (straight-through)."""
    return straight_through_clamp(estimate[..., :height, :width])


class ImageBaseline(nn.Module, ABC):
    """An image-only all-in-focus network: (N, 3, H, W) defocused frame in [0, 1] → estimate in [0, 1].

    Subclasses set `stride` (H and W of `restore`'s input are multiples of it) and implement `restore`.
    """

    stride: int

    def forward(self, image: Tensor) -> Tensor:
        height, width = image.shape[-2:]
        return finish(self.restore(self.pad(image)), height, width)

    def pad(self, image: Tensor) -> Tensor:
        """Check the frame and replicate-pad it (bottom/right) to a multiple of `stride`."""
        check_image(image)
        return pad_to_multiple(image, self.stride)

    @abstractmethod
    def restore(self, image: Tensor) -> Tensor:
        """Padded frame in [0, 1] → unclamped all-in-focus estimate on the same [0, 1] scale."""


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
         bias: bool = True) -> nn.Conv2d:
    """Conv with 'same' padding (for stride 1) — the bare conv every baseline is built from."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=dilation * (kernel_size - 1) // 2,
                     dilation=dilation, bias=bias)


def conv_act(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
             slope: float = IFAN_SLOPE) -> nn.Sequential:
    """Conv (with bias, no normalisation) → LeakyReLU."""
    return nn.Sequential(conv(in_channels, out_channels, kernel_size, stride), nn.LeakyReLU(slope, inplace=True))


def up_conv(in_channels: int, out_channels: int, slope: float = IFAN_SLOPE) -> nn.Sequential:
    """2× upsampling: 4×4 stride-2 transposed conv → LeakyReLU."""
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1),
                         nn.LeakyReLU(slope, inplace=True))


class ResidualStack(nn.Module):
    """IFAN's residual block: `units` × (conv → LReLU → conv, add, LReLU), plus an outer skip if units > 1."""

    def __init__(self, channels: int, units: int = 1) -> None:
        super().__init__()
        self.units = nn.ModuleList(
            nn.Sequential(conv(channels, channels), nn.LeakyReLU(IFAN_SLOPE, inplace=True), conv(channels, channels))
            for _ in range(units)
        )

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for unit in self.units:
            out = F.leaky_relu(out + unit(out), IFAN_SLOPE)
        return out + x if len(self.units) > 1 else out


def residual_trunk(in_channels: int, channels: int, blocks: int, units: int) -> nn.Sequential:
    """conv → LReLU → `blocks` residual blocks of `units` units: the trunk of IFAN's estimators and predictors."""
    return nn.Sequential(conv_act(in_channels, channels), *(ResidualStack(channels, units) for _ in range(blocks)))


class PyramidEncoder(nn.Module):
    """Three 3×3 convs per level; every level after the first starts with a stride-2 conv.

    Returns the features of every level (level i at 1/2**i resolution, `widths[i]` channels).
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        ins = (in_channels, *widths[:-1])
        self.levels = nn.ModuleList(
            nn.Sequential(conv_act(c_in, c_out, stride=1 if i == 0 else 2), conv_act(c_out, c_out),
                          conv_act(c_out, c_out))
            for i, (c_in, c_out) in enumerate(zip(ins, widths, strict=True))
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class UpLevel(nn.Module):
    """Decoder level: 2× transposed-conv upsampling, add the encoder skip, two residual blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = up_conv(in_channels, out_channels)
        self.body = nn.Sequential(ResidualStack(out_channels), ResidualStack(out_channels))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.body(self.up(x) + skip)
