"""The all-in-focus image's colour, from the frame's local colour lines and the sharp brightness.

Events see brightness only: every refocused slice scales the frame's pixels by one gain per pixel, so the
all-in-focus image inherits the frame's defocused colour. On the shipped model half of what the
all-in-focus image misses is chroma (the true chroma with its own luma: +9.6 against +5.8 dB on efs_dev,
docs/results.md). Within a small window colour varies along a line with brightness (chroma ≈ a·luma + b),
and blur keeps that line, so (a, b) are fitted where both are blurred alike — in the frame — and applied
to the all-in-focus image's sharp luma: a guided filter fitted on one guide and applied to another
(kornia's ``guided_blur`` applies to the guide it fits on).
"""

from __future__ import annotations

import kornia
import torch
from torch import Tensor

WINDOW_PX = 3  # the colour-line window, chosen on validation sweeps from 3 to 65 px (docs/results.md)
EPS = 1e-4  # regularises a = cov/(var + EPS) where the frame is flat (chosen alike from 1e-5 to 1e-2)


def recolour(aif: Tensor, frame: Tensor, window_px: int = WINDOW_PX, eps: float = EPS) -> Tensor:
    """(3, H, W) sRGB all-in-focus image with its chroma refitted from the (3, H, W) sRGB ``frame``; its luma
    (YCbCr, BT.601) is kept. Runs in float32; the result is clamped to [0, 1]."""
    if aif.ndim != 3 or aif.shape[0] != 3 or frame.shape != aif.shape:
        raise ValueError(f"recolour needs RGB images (3, H, W) of one size, got {tuple(aif.shape)} and "
                         f"{tuple(frame.shape)}")
    if window_px < 1 or window_px % 2 == 0 or not eps > 0:
        raise ValueError(f"window_px must be odd and >= 1 and eps > 0, got {window_px} and {eps}")
    with torch.autocast(device_type=aif.device.type, enabled=False):
        sharp = kornia.color.rgb_to_ycbcr(aif.float()[None])
        blurred = kornia.color.rgb_to_ycbcr(frame.float()[None])
        luma, chroma = blurred[:, :1], blurred[:, 1:]

        def mean(values: Tensor) -> Tensor:
            return kornia.filters.box_blur(values, (window_px, window_px), border_type="reflect")

        luma_mean, chroma_mean = mean(luma), mean(chroma)
        slope = (mean(luma * chroma) - luma_mean * chroma_mean) / (mean(luma * luma) - luma_mean ** 2 + eps)
        offset = chroma_mean - slope * luma_mean
        refitted = mean(slope) * sharp[:, :1] + mean(offset)
        return kornia.color.ycbcr_to_rgb(torch.cat([sharp[:, :1], refitted], dim=1))[0].clamp(0.0, 1.0)
