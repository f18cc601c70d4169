"""DRBNet: Ruan et al., "Learning to Deblur using Light Field Generated and Real Defocus Images", CVPR 2022.

Taken from the paper and the official architecture (lingyanruan/DRBNet, test code only):
- IFAN-style encoder at 1, 1/2, 1/4, 1/8 with `width`·(1, 2, 4, 8) channels (32/64/128/256 in the paper),
  three 3×3 convs per level (stride 2 first); bottleneck conv, 2 residual blocks, conv; decoder levels of a
  4×4 stride-2 transposed conv + additive skip + 2 residual blocks. No normalisation, LeakyReLU 0.1.
- Dynamic residual blocks coarse to fine at 1/8, 1/4, 1/2, 1: an image estimate (the input area-downsampled
  8× at 1/8, then the previous estimate upsampled 2×) goes through a 3-conv image encoder, is concatenated
  with the decoder features, and two heads predict a per-pixel 7×7 kernel (49 channels, shared over RGB) and
  a 3-channel residual: ``estimate = image + filtered(image) + residual``.
- Input scaled to [−1, 1] inside the network (the official test code's scaling).

What differs and why:
- The last 1×1 conv of each residual head is linear. The official helper ends it with a LeakyReLU, which
  damps every negative correction 10×; nothing in the paper asks for that.
- The official residual blocks add without a final activation; ours are IFAN's (LeakyReLU after the sum),
  shared with our IFAN — a detail inside blocks the paper does not specify.
- Coarse estimates are upsampled by nearest neighbour, which is what the official 2× 'area' interpolation
  computes. Inputs are replicate-padded to a multiple of 8 (the official code crops to a multiple of 16).
- The estimate is clamped straight-through to [0, 1] (the official clip to [−1, 1], without its zero gradient).

Size: `width=32` (paper) 11.69 M parameters, as published; `width=8` (CPU) 0.74 M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evfocus.models.baselines.filtering import per_pixel_filter
from evfocus.models.baselines.layers import (
    ImageBaseline,
    PyramidEncoder,
    UpLevel,
    conv,
    conv_act,
    residual_trunk,
)

# Per scale, coarse → fine, in units of `width`: decoder features, the image encoder's middle width,
# the kernel head's and the residual head's two hidden widths (the official layout).
_SCALES = (
    (8, 4, (8, 4), (8, 2)),
    (4, 4, (4, 4), (4, 2)),
    (2, 2, (2, 2), (2, 2)),
    (1, 2, (2, 2), (2, 2)),
)


def _head(in_channels: int, hidden: tuple[int, int], out_channels: int) -> nn.Sequential:
    return nn.Sequential(conv_act(in_channels, hidden[0]), conv_act(hidden[0], hidden[1]),
                         conv(hidden[1], out_channels, 1))


class DynamicResidualBlock(nn.Module):
    """Refine an image estimate with a per-pixel kernel (shared over channels) and a residual.

    The kernels act as a correction (``image + filtered(image)``), so zero kernels keep the estimate.
    """

    def __init__(self, features: int, image_hidden: int, kernel_hidden: tuple[int, int],
                 residual_hidden: tuple[int, int], base: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.image_encoder = nn.Sequential(conv_act(3, base), conv_act(base, image_hidden),
                                           conv_act(image_hidden, features))
        self.kernel_head = _head(2 * features, kernel_hidden, kernel_size**2)
        self.residual_head = _head(2 * features, residual_hidden, 3)

    def forward(self, estimate: Tensor, features: Tensor) -> Tensor:
        joint = torch.cat([features, self.image_encoder(estimate)], dim=1)
        kernels = self.kernel_head(joint)
        filtered = per_pixel_filter(estimate, kernels, (self.kernel_size, self.kernel_size))
        return estimate + filtered + self.residual_head(joint)


class DRBNet(ImageBaseline):
    """Single-image defocus deblurring by coarse-to-fine dynamic residual blocks (see the module docstring)."""

    stride = 8

    def __init__(self, width: int = 32, kernel_size: int = 7) -> None:
        super().__init__()
        if width < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"DRBNet needs width >= 1 and an odd kernel_size, got {width}, {kernel_size}")
        widths = tuple(width * 2**i for i in range(4))
        self.encoder = PyramidEncoder(3, widths)
        self.bottleneck = nn.Sequential(residual_trunk(widths[3], widths[3], blocks=2, units=1),
                                        conv_act(widths[3], widths[3]))
        self.decoder = nn.ModuleList(UpLevel(widths[i], widths[i - 1]) for i in (3, 2, 1))
        self.refiners = nn.ModuleList(
            DynamicResidualBlock(f * width, m * width, (k1 * width, k2 * width), (r1 * width, r2 * width),
                                 base=2 * width, kernel_size=kernel_size)
            for f, m, (k1, k2), (r1, r2) in _SCALES
        )

    def restore(self, image: Tensor) -> Tensor:
        x = image * 2 - 1
        *skips, deepest = self.encoder(x)
        features = self.bottleneck(deepest)
        estimate = F.avg_pool2d(x, 8)
        estimate = self.refiners[0](estimate, features)
        for up_level, refiner, skip in zip(self.decoder, self.refiners[1:], reversed(skips), strict=True):
            features = up_level(features, skip)
            estimate = refiner(F.interpolate(estimate, scale_factor=2, mode="nearest"), features)
        return (estimate + 1) / 2
