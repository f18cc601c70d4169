"""Image-quality metrics (PSNR, SSIM, LPIPS) on [0, 1] images, full frame, as stored.

Training and evaluation accumulate them over batches (``ImageQualityMetrics``); inference and the
benchmarks score single images with ``image_scores.image_quality``: the same definitions.

LPIPS needs ImageNet backbone weights that torchvision downloads on first use. Where they cannot
be fetched (offline machines), LPIPS is reported as `None` with one warning per process: a missing
number is visible in every table, whereas a crash would lose the PSNR/SSIM of the whole run and a
placeholder value would be mistaken for a measurement.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.image import (
    LearnedPerceptualImagePatchSimilarity,
    PeakSignalNoiseRatio,
    StructuralSimilarityIndexMeasure,
)
from torchvision.models import AlexNet_Weights, SqueezeNet1_1_Weights, VGG16_Weights

# the weights the `lpips` package (pretrained=True) and torchmetrics (`.DEFAULT`) load for each net
_LPIPS_BACKBONES = {
    "alex": AlexNet_Weights.IMAGENET1K_V1,
    "vgg": VGG16_Weights.IMAGENET1K_V1,
    "squeeze": SqueezeNet1_1_Weights.IMAGENET1K_V1,
}
_warned_lpips_missing = False


def lpips_backbone_path(net: str = "alex") -> Path:
    """Where torchvision looks for the LPIPS backbone weights: `torch.hub.get_dir()/checkpoints/<file>`."""
    if net not in _LPIPS_BACKBONES:
        raise ValueError(f"LPIPS net must be one of {tuple(_LPIPS_BACKBONES)}, got {net!r}")
    file_name = Path(urlparse(_LPIPS_BACKBONES[net].url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def lpips_backbone_available(net: str = "alex") -> bool:
    """Whether the backbone weights are in the torch hub cache (checked on disk, never downloaded)."""
    return lpips_backbone_path(net).is_file()


def lpips_backbone_missing_message(net: str = "alex") -> str:
    """How to install the LPIPS backbone weights by hand (shared by the metric and the loss)."""
    path = lpips_backbone_path(net)
    return (
        f"LPIPS ({net}) needs the torchvision ImageNet weights file {path.name}, not found at {path}. "
        f"Download {_LPIPS_BACKBONES[net].url} on a connected machine and copy it to {path.parent} "
        "(torch.hub.get_dir()/checkpoints; set TORCH_HOME to move the cache)."
    )


def as_rgb(images: Tensor) -> Tensor:
    """Grey (N, 1, H, W) → (N, 3, H, W) view, since the LPIPS backbones take RGB; RGB passes through."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def check_image_pair(pred: Tensor, target: Tensor) -> None:
    """Both (N, C, H, W) with the same shape, or a ValueError saying which."""
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(f"pred and target must both be (N, C, H, W) and equal; got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")


def _lpips_enabled(lpips: bool | Literal["auto"], net: str) -> bool:
    global _warned_lpips_missing
    if lpips not in (True, False, "auto"):
        raise ValueError(f"lpips must be True, False or 'auto', got {lpips!r}")
    if lpips is False or lpips_backbone_available(net):
        return bool(lpips)
    if lpips is True:
        raise FileNotFoundError(lpips_backbone_missing_message(net))
    if not _warned_lpips_missing:
        warnings.warn(lpips_backbone_missing_message(net) + " LPIPS will be reported as None.", stacklevel=3)
        _warned_lpips_missing = True
    return False


class ImageQualityMetrics(nn.Module):
    """Accumulates PSNR, SSIM (both `data_range=1.0`) and LPIPS over batches of [0, 1] images.

    PSNR is computed per image and averaged, the convention of published tables. `lpips="auto"` uses
    LPIPS when its backbone weights are on disk and reports `None` otherwise; `True` requires them.
    An `nn.Module`, so it follows its LightningModule across devices.
    """

    def __init__(self, lpips: bool | Literal["auto"] = "auto", lpips_net: str = "alex") -> None:
        super().__init__()
        metrics: dict[str, nn.Module] = {
            "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        }
        if _lpips_enabled(lpips, lpips_net):
            metrics["lpips"] = LearnedPerceptualImagePatchSimilarity(net_type=lpips_net, normalize=True)
        self.metrics = MetricCollection(metrics)

    @property
    def has_lpips(self) -> bool:
        return "lpips" in self.metrics

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of (N, C, H, W) predictions and targets in [0, 1]."""
        check_image_pair(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            # grey → RGB leaves PSNR and SSIM (channel means) unchanged and lets LPIPS run
            self.metrics.update(as_rgb(pred.float()), as_rgb(target.float()))

    def compute(self) -> dict[str, float | None]:
        """Means over everything seen since the last `reset`; `lpips` is None when unavailable."""
        values: dict[str, float | None] = {"lpips": None}
        values.update({name: float(value) for name, value in self.metrics.compute().items()})
        return values

    def reset(self) -> None:
        self.metrics.reset()


def build_metrics(cfg: DictConfig) -> ImageQualityMetrics:
    """Metrics as ``eval.lpips`` asks: ``auto`` (LPIPS when its weights are on disk), ``on``, ``off``."""
    return ImageQualityMetrics(lpips={"auto": "auto", "on": True, "off": False}[cfg.eval.lpips])


def sharpness(image: Tensor) -> dict[str, float]:
    """No-reference sharpness of one (C, H, W) image in [0, 1], on its grey (channel mean) version.

    ``gradient_energy``: the mean squared Sobel gradient magnitude (the Sobel merge's focus measure);
    ``laplacian_variance``: the variance of the 3×3 Laplacian, the usual autofocus measure. A capture with no
    ground truth still shows whether refocusing worked: its all-in-focus image should score above its input
    frame. Noise raises both too, so they are read beside the images, never alone.
    """
    grey = image.float().clamp(0, 1).mean(dim=0, keepdim=True)[None]
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=grey.device) / 8
    laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=grey.device)
    kernels = torch.stack([sobel_x, sobel_x.T, laplacian])[:, None]
    gx, gy, lap = torch.nn.functional.conv2d(grey, kernels)[0]  # valid convolution: no border artefacts
    return {"gradient_energy": float((gx.square() + gy.square()).mean()), "laplacian_variance": float(lap.var())}
