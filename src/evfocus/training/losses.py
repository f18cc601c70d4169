"""Reconstruction loss for refocused / all-in-focus images: weighted L1, SSIM, gradient and LPIPS terms."""

from __future__ import annotations

import math
import warnings

import kornia
import lpips
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evfocus.metrics import (
    as_rgb,
    check_image_pair,
    lpips_backbone_available,
    lpips_backbone_missing_message,
)


def _build_lpips(net: str) -> nn.Module:
    """Frozen LPIPS network; refuses to start without backbone weights instead of dropping the term."""
    if not lpips_backbone_available(net):
        raise FileNotFoundError(lpips_backbone_missing_message(net)
                                + " Or train without it: lpips_weight=0.")
    with warnings.catch_warnings():
        # lpips 0.1.4 asks torchvision with the deprecated `pretrained=True`; the weights are the same
        warnings.filterwarnings("ignore", r"(The parameter 'pretrained'|Arguments other than a weight enum)",
                                UserWarning)
        model = lpips.LPIPS(net=net, verbose=False)
    return model.eval().requires_grad_(False)


class ReconstructionLoss(nn.Module):
    """`total = Σ weight·term` over the terms whose weight is > 0; returns `(total, {term: value})`.

    Terms (unweighted values in `parts`): `l1`; `ssim` = kornia's `(1 − SSIM) / 2` on [0, 1]
    images; `gradient` = L1 between Sobel gradients (kornia), which rewards sharp edges that L1 on
    intensities under-weights; `lpips` (frozen `lpips` package, `lpips_net="vgg"` by default, the
    variant its authors recommend as an optimisation target). Everything is computed in float32,
    also under autocast: SSIM's variances and LPIPS's normalisations lose too much in bf16.
    """

    def __init__(self, l1_weight: float = 1.0, ssim_weight: float = 0.2, lpips_weight: float = 0.0,
                 gradient_weight: float = 0.0, ssim_window: int = 11, lpips_net: str = "vgg") -> None:
        super().__init__()
        weights = {"l1": l1_weight, "ssim": ssim_weight, "gradient": gradient_weight, "lpips": lpips_weight}
        for name, weight in weights.items():
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"{name}_weight must be a finite number >= 0, got {weight}")
        if not any(weights.values()):
            raise ValueError("all loss weights are 0: at least one of l1/ssim/gradient/lpips must be > 0")
        if ssim_window < 3 or ssim_window % 2 == 0:
            raise ValueError(f"ssim_window must be an odd integer >= 3, got {ssim_window}")
        self.weights = {name: float(weight) for name, weight in weights.items() if weight > 0}
        self.ssim_window = ssim_window
        self.lpips = _build_lpips(lpips_net) if lpips_weight > 0 else None

    def train(self, mode: bool = True) -> ReconstructionLoss:
        """Keep LPIPS in eval mode (its linear heads carry dropout) whatever the owner's mode."""
        super().train(mode)
        if self.lpips is not None:
            self.lpips.eval()
        return self

    def _term(self, name: str, pred: Tensor, target: Tensor) -> Tensor:
        if name == "l1":
            return F.l1_loss(pred, target)
        if name == "ssim":
            return kornia.losses.ssim_loss(pred, target, window_size=self.ssim_window, max_val=1.0)
        if name == "gradient":
            return F.l1_loss(kornia.filters.spatial_gradient(pred), kornia.filters.spatial_gradient(target))
        return self.lpips(as_rgb(pred), as_rgb(target), normalize=True).mean()

    def forward(self, pred: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(N, C, H, W) prediction and target in [0, 1] → (scalar total, unweighted terms)."""
        check_image_pair(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred, target = pred.float(), target.float()
            parts = {name: self._term(name, pred, target) for name in self.weights}
            total = torch.stack([self.weights[name] * value for name, value in parts.items()]).sum()
        return total, parts
