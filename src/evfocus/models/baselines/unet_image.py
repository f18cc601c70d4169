"""Image-only U-Net: our refocus backbone with the event inputs removed — what the events add, measured.

EvRefocusNet without its event branch: one `BranchEncoder` (log image; dense blocks per level), the
`FusionDecoder` over its skips, two residual blocks and a zero-initialised 1×1 conv predicting a
log-space residual ``r``; output ``image + (image + eps)·expm1(r)`` (= ``exp(log(image + eps) + r) − eps``),
so the net starts as the identity, like EvRefocusNet. Group norm by default (see `evfocus.models.blocks`).

`width` scales it (parameters ∝ width²). The budget is EvRefocusNet (width 64, depth 3, 16 bins: 4.86 M)
plus EvMergeNet (width 47, depth 3: 5.77 M) = 10.63 M. One branch at width 64 has only a quarter of that
(its decoder's skips are half as wide too), so at depth 3 the budget is met at `width=128`: 10.81 M
(+1.7 %; 124 gives 10.14 M, −4.6 %). CPU size `width=40`: 1.06 M, the budget of the CPU pipeline
(configs/quickstart*.yaml: EvRefocusNet width 16, 0.31 M + EvMergeNet width 16, 0.67 M = 0.98 M; +8 %).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from evfocus.models.baselines.layers import ImageBaseline
from evfocus.models.blocks import BranchEncoder, FusionDecoder, Norm, ResidualBlock, level_widths


class ImageUNet(ImageBaseline):
    """Defocused frame → all-in-focus estimate with the EvRefocusNet architecture minus events."""

    def __init__(self, width: int = 128, depth: int = 3, norm: Norm = "group", log_eps: float = 1e-3) -> None:
        super().__init__()
        if log_eps <= 0:
            raise ValueError(f"log_eps must be > 0 (log of a black pixel), got {log_eps}")
        self.log_eps = log_eps
        self.stride = 2 ** (depth - 1)
        self.encoder = BranchEncoder(3, width, depth, norm)
        self.decoder = FusionDecoder(self.encoder.out_channels, level_widths(width, depth), norm)
        self.head = nn.Sequential(ResidualBlock(width, norm), ResidualBlock(width, norm))
        self.to_residual = nn.Conv2d(width, 3, 1)
        nn.init.zeros_(self.to_residual.weight)
        nn.init.zeros_(self.to_residual.bias)

    def restore(self, image: Tensor) -> Tensor:
        features = self.decoder(self.encoder(torch.log(image + self.log_eps)))
        residual = self.to_residual(self.head(features))
        return image + (image + self.log_eps) * torch.expm1(residual.to(image.dtype))
