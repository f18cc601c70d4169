"""KPAC: Son et al., "Single Image Defocus Deblurring Using Kernel-Sharing Parallel Atrous Convolutions", ICCV 2021.

Taken from the paper and the official architecture (HyeongseokSon1/KPAC, TensorFlow, eval code only), with
`width` the base channels (48 in the paper), no normalisation, LeakyReLU 0.2:
- encoder: 5×5 → width, 3×3 → width (skip, full res); stride-2 3×3 → width, 3×3 (skip, 1/2); stride-2 3×3
  → 2·width, 3×3 (1/4); the 3-level variant adds a stride-2 level at 2·width (1/8) and keeps 1/4 as a skip;
- 2 KPAC blocks on 2·width channels, densely stacked: one 5×5 conv (2·width → width, no bias) shared by
  the dilations 1–5 → 5·width channels, times a *scale attention* (four 5×5 rate-2 atrous convs with
  (2/3, 2/3, 1/3, 1/3)·width channels — 32/32/16/16 at paper size — then a 5×5 conv to 5 sigmoid maps,
  one per dilation, spread over that dilation's channels) and a *shape attention* (global average pool,
  1×1 → width/4, 1×1 → width sigmoid, the same for every dilation), then a 3×3 conv back to 2·width;
- the input and both block outputs concatenated → two 3×3 convs at 2·width; decoder of 4×4 stride-2
  transposed convs, concatenated skips and 3×3 convs (the last one 5×5 → RGB), added to the input;
- input scaled to [−1, 1] ((x − 127.5)/127.5 in the official code).

What differs: the shape attention pools globally at every size (the official pool window is tied to
the training crop size); inputs are replicate-padded to the stride (4, or 8 for 3 levels); the output
is clamped straight-through to [0, 1].

Size: paper 2-level (`width=48, levels=2`) 1.58 M parameters, 3-level 2.06 M — both as published;
CPU (`width=12, levels=2`) 0.10 M.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evfocus.models.baselines.layers import ImageBaseline, conv, conv_act, up_conv

_SLOPE = 0.2  # TensorFlow's leaky_relu default, used throughout the official net
_DILATIONS = (1, 2, 3, 4, 5)


def _conv_act(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    return conv_act(in_channels, out_channels, kernel_size, stride, slope=_SLOPE)


class KPACBlock(nn.Module):
    """Kernel-sharing parallel atrous convolutions with scale and shape attention: C → C channels."""

    def __init__(self, channels: int, width: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.shared = nn.Conv2d(channels, width, kernel_size, bias=False)  # applied at every dilation
        attention = (channels, 2 * width // 3, 2 * width // 3, width // 3, width // 3)
        self.scale_attention = nn.Sequential(
            *(nn.Sequential(conv(c_in, c_out, 5, dilation=2), nn.LeakyReLU(_SLOPE, inplace=True))
              for c_in, c_out in pairwise(attention)),
            conv(attention[-1], len(_DILATIONS), 5), nn.Sigmoid(),
        )
        self.shape_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), _conv_act(channels, max(1, width // 4), 1), conv(max(1, width // 4), width, 1),
            nn.Sigmoid(),
        )
        self.fuse = _conv_act(len(_DILATIONS) * width, channels)

    def forward(self, x: Tensor) -> Tensor:
        k = self.shared.kernel_size[0]
        atrous = torch.stack([
            F.leaky_relu(F.conv2d(x, self.shared.weight, padding=d * (k - 1) // 2, dilation=d), _SLOPE)
            for d in _DILATIONS
        ], dim=1)  # (N, dilations, width, H, W)
        scale = self.scale_attention(x).unsqueeze(2)  # (N, dilations, 1, H, W)
        shape = self.shape_attention(x).unsqueeze(1)  # (N, 1, width, 1, 1)
        return self.fuse((atrous * scale * shape).flatten(1, 2))


class KPAC(ImageBaseline):
    """KPAC defocus deblurring network, 2 or 3 resolution levels (see the module docstring)."""

    def __init__(self, width: int = 48, levels: int = 2, blocks: int = 2) -> None:
        super().__init__()
        if levels not in (2, 3) or width < 3 or blocks < 1:
            raise ValueError(f"KPAC needs levels 2 or 3, width >= 3, blocks >= 1; got {levels}, {width}, {blocks}")
        self.stride = 2**levels
        deep = 2 * width
        # encoder levels: full res, 1/2, then 1/4 (and 1/8 for 3 levels) at 2·width
        encoder_widths = [width, width, *([deep] * (levels - 1))]
        ins = [3, *encoder_widths[:-1]]
        self.encoder = nn.ModuleList(
            nn.Sequential(_conv_act(c_in, c_out, 5 if i == 0 else 3, stride=1 if i == 0 else 2),
                          _conv_act(c_out, c_out))
            for i, (c_in, c_out) in enumerate(zip(ins, encoder_widths, strict=True))
        )
        self.blocks = nn.ModuleList(KPACBlock(deep, width) for _ in range(blocks))
        self.merge = nn.Sequential(_conv_act((blocks + 1) * deep, deep), _conv_act(deep, deep))
        # decoder levels, coarse → fine: upsample to the skip's width, concat, conv back to that width
        # (the finest level's conv is the 5×5 one to RGB)
        skip_widths = encoder_widths[-2::-1]
        up_ins = [deep, *skip_widths[:-1]]
        self.ups = nn.ModuleList(up_conv(c_in, c_skip, _SLOPE) for c_in, c_skip in zip(up_ins, skip_widths,
                                                                                         strict=True))
        self.fuses = nn.ModuleList([*(_conv_act(2 * c, c) for c in skip_widths[:-1]), conv(2 * width, 3, 5)])

    def restore(self, image: Tensor) -> Tensor:
        x = image * 2 - 1
        skips = []
        features = x
        for level in self.encoder:
            features = level(features)
            skips.append(features)
        stack = [skips.pop()]
        for block in self.blocks:
            stack.append(block(stack[-1]))
        features = self.merge(torch.cat(stack, dim=1))
        for up, fuse in zip(self.ups, self.fuses, strict=True):
            features = fuse(torch.cat([up(features), skips.pop()], dim=1))
        return (features + x + 1) / 2
