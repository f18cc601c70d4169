"""EvRefocusNet: the frame at t0 plus the events t0→t give the frame focused as at time t.

An ideal sensor obeys `log I(t) = log I(t0) + Σ events(t0→t)`; the net learns the residual in log
space that the real sensor (thresholds, noise, missed events) needs on top of the log image.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from evfocus.models.blocks import DualEncoder, FusionDecoder, Norm, ResidualBlock, pad_to_multiple


def straight_through_clamp(x: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    """Clamp the values but pass the gradient through unchanged.

    A plain clamp has zero gradient wherever the prediction overshoots [0, 1], so an overshooting
    pixel whose target lies inside the range would never be pulled back (and training sees a
    different output than evaluation if the clamp is skipped there). Straight-through keeps the
    forward output identical in training and inference while every pixel keeps its gradient.
    """
    return x + (x.clamp(low, high) - x).detach()


class EvRefocusNet(nn.Module):
    """Refocus a frame with the events between its time and the target time.

    Dual encoder (log-image branch, event branch) fused per level, U-Net decoder with skips, two
    residual blocks and a 1×1 conv predicting a log-space residual `r`; the output is
    `exp(log(image + eps) + r) − eps`, computed as `image + (image + eps)·expm1(r)` so that `r = 0`
    returns the input bit for bit. The last conv starts at zero: at initialisation the net is the
    identity (the natural starting point for refocusing, whatever the events say). The output is
    limited to [0, 1] by `straight_through_clamp`.

    `depth` counts resolution levels like the reference (3 → two 2× downsamplings), so inputs are
    padded internally to a multiple of `stride = 2**(depth − 1)` and cropped back: any H×W works.
    Size: `width=64, depth=3` is the reference EvRefocusNet ("AddNet") layout, ≈4.9 M parameters
    with 64 event bins; the default `width=32` has a quarter of that (≈1.2 M), for CPU training.

    `event_gain_init` (our addition, off when None): the ideal sensor's answer
    `log I(t) = log I(t0) + c·Σ events` is added to the residual with a learned contrast `c`, so the
    net starts as event integration and learns only what the ideal model gets wrong (noise,
    thresholds, the frame's gamma, occlusion) instead of first having to learn the integration.
    """

    def __init__(self, num_bins: int, image_channels: int = 3, width: int = 32, depth: int = 3,
                 norm: Norm = "group", log_eps: float = 1e-3, event_gain_init: float | None = None) -> None:
        super().__init__()
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}")
        if image_channels < 1:
            raise ValueError(f"image_channels must be >= 1, got {image_channels}")
        if log_eps <= 0:
            raise ValueError(f"log_eps must be > 0 (log of a black pixel), got {log_eps}")
        self.num_bins = num_bins
        self.image_channels = image_channels
        self.log_eps = log_eps
        self.stride = 2 ** (depth - 1)
        self.encoder = DualEncoder(image_channels, num_bins, width, depth, norm)
        self.decoder = FusionDecoder(self.encoder.out_channels, self.encoder.widths, norm)
        self.head = nn.Sequential(ResidualBlock(width, norm), ResidualBlock(width, norm))
        self.to_residual = nn.Conv2d(width, image_channels, 1)
        nn.init.zeros_(self.to_residual.weight)
        nn.init.zeros_(self.to_residual.bias)
        self.event_gain = None if event_gain_init is None else nn.Parameter(torch.tensor(float(event_gain_init)))

    def _check_inputs(self, image: Tensor, events: Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != self.image_channels:
            raise ValueError(f"image must be (N, {self.image_channels}, H, W), got {tuple(image.shape)}")
        if not image.is_floating_point():
            raise ValueError(f"image must be a float tensor in [0, 1], got dtype {image.dtype}")
        if events.ndim != 4 or events.shape[1] != self.num_bins:
            raise ValueError(f"events must be (N, {self.num_bins} bins, H, W), got {tuple(events.shape)}")
        if events.shape[0] != image.shape[0] or events.shape[-2:] != image.shape[-2:]:
            raise ValueError(
                f"events {tuple(events.shape)} and image {tuple(image.shape)} differ in N, H or W"
            )

    def encode_image(self, image: Tensor) -> list[Tensor]:
        """The log-image branch's features, to pass back as ``image_features`` while only the events
        change (the focus search probes one patch at many times: a quarter of the net's FLOPs saved)."""
        return self.encoder.branch_a(self._padded_log(image))

    def _padded_log(self, image: Tensor) -> Tensor:
        return pad_to_multiple(torch.log(image + self.log_eps), self.stride)

    def forward(self, image: Tensor, events: Tensor, image_features: list[Tensor] | None = None) -> Tensor:
        """(N, C, H, W) frame in [0, 1] + (N, B, H, W) signed event bins → (N, C, H, W) refocused frame."""
        self._check_inputs(image, events)
        h, w = image.shape[-2:]
        skips = self.encoder(self._padded_log(image), pad_to_multiple(events.to(image.dtype), self.stride),
                             image_features)
        residual = self.to_residual(self.head(self.decoder(skips)))[..., :h, :w]
        if self.event_gain is not None:
            residual = residual + self.event_gain * events.sum(dim=1, keepdim=True).to(residual.dtype)
        # compose in the image's precision: under autocast the residual arrives in bf16/fp16
        refocused = image + (image + self.log_eps) * torch.expm1(residual.to(image.dtype))
        return straight_through_clamp(refocused)
