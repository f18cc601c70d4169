"""Per-pixel (spatially varying) filtering, vectorised with `F.unfold`: no Python loop over pixels.

One op serves both adaptive-filter baselines: DRBNet's 7×7 kernel per pixel shared over the RGB
channels (``kernel_size=(7, 7)``, one group) and IFAN's separable 1-D filters per pixel and channel
(``(1, 3)`` horizontal, ``(3, 1)`` vertical, one group per channel).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def per_pixel_filter(image: Tensor, kernels: Tensor, kernel_size: tuple[int, int]) -> Tensor:
    """Filter every pixel with its own kh×kw kernel; borders are replicate-padded.

    ``out[n, c, y, x] = Σ_{i<kh, j<kw} kernels[n, g·kh·kw + i·kw + j, y, x] · image[n, c, y+i−kh//2, x+j−kw//2]``
    where `kernels` is (N, G·kh·kw, H, W) and ``g = 0`` for every channel when G = 1 (one kernel shared by
    all channels) or ``g = c`` when G = C (one kernel per channel). Returns (N, C, H, W).
    """
    n, channels, height, width = image.shape
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel_size must be odd in both axes, got {kernel_size}")
    taps = kh * kw
    groups = kernels.shape[1] // taps
    if groups not in (1, channels) or tuple(kernels.shape) != (n, groups * taps, height, width):
        raise ValueError(f"kernels must be (N, G·{taps}, H, W) with G = 1 or {channels} for an image "
                         f"{tuple(image.shape)}, got {tuple(kernels.shape)}")
    padded = F.pad(image, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    patches = F.unfold(padded, (kh, kw)).view(n, channels, taps, height, width)
    return (patches * kernels.view(n, groups, taps, height, width)).sum(dim=2)
