"""PSNR and SSIM of one image against its target, as inference and the benchmarks score single images.

Same definitions as the torchmetrics ones training logs (``metrics.ImageQualityMetrics``: data range 1,
SSIM with an 11-px Gaussian window of σ 1.5 and reflect padding, averaged over the full frame), computed
with kornia, because importing torchmetrics costs about 3 s (torchvision's detection ops, torch._dynamo):
a sixth of the whole ``src/aif.py`` command on a sweep with ground truth. ``tests/test_image_scores.py``
pins the two together.
"""

from __future__ import annotations

import kornia
from torch import Tensor


def image_quality(image: Tensor, target: Tensor) -> dict[str, float]:
    """PSNR (dB) and SSIM of one (C, H, W) image against its target; the image is clamped to [0, 1]
    first, as it would be stored."""
    if image.ndim != 3 or image.shape != target.shape:
        raise ValueError(f"image {tuple(image.shape)} and target {tuple(target.shape)} must both be (C, H, W)")
    pair = image.float().clamp(0, 1)[None], target.float()[None]
    return {"psnr": float(kornia.metrics.psnr(*pair, max_val=1.0)),
            "ssim": float(kornia.metrics.ssim(*pair, window_size=11, max_val=1.0, padding="same").mean())}
