"""IFAN: Lee et al., "Iterative Filter Adaptive Network for Single Image Defocus Deblurring", CVPR 2021.

Taken from the paper and the official architecture (codeslake/IFAN), with `width` the base channels
(32 in the paper; levels width·(1, 2, 4, 4) down to 1/8), no normalisation, LeakyReLU 0.1:
- feature extractor (3 convs per level) and a separate filter encoder of the same shape;
- disparity/defocus estimator on the filter encoder's 1/8 features: conv, 2 residual blocks, conv → 1 channel;
- filter predictor: the defocus map embedded by a conv, concatenated with the filter features, fused
  (conv, 2 residual blocks, conv), then conv, 2 residual blocks and a 1×1 conv to
  ``iterations·(2·C·taps) + iterations·C`` channels (15,232 at paper size): per pixel and channel, a
  horizontal and a vertical 1-D filter and a bias for each iteration;
- Iterative Adaptive Convolution on the 1/8 image features: 17 iterations of horizontal 1-D filter,
  vertical 1-D filter, + bias, LeakyReLU (`iterative_adaptive_conv`);
- reconstructor (conv, one 3-unit residual block, conv), decoder of 4×4 stride-2 transposed convs with
  additive skips and 2 residual blocks per level, a 3×3 conv to RGB added to the input (global residual);
- reblurring network for training only (`IFANReblur`): from the predicted filters, a conv, 2 residual
  blocks and a 3×3 conv predict 17 iterations of separable 3-tap filters + biases that blur the 1/8 sharp
  image (no activation after the last iteration), plus the sharp image. Its loss is MSE against the
  1/8 defocused input.

What differs and why:
- **Separate vertical kernels.** The official IAC applies the first (horizontal) kernel twice and never
  uses the second, so its filters are isotropic (a bug the released weights carry). Here each
  iteration applies its own horizontal then its own vertical kernel.
- The defocus head outputs a *signed defocus* map at 1/8 resolution (`IFANOutput.defocus`). IFAN trains it
  as a dual-pixel disparity (the right view warped to the left by it); our simulator makes no dual-pixel
  views, so the intended supervision is the signed blur from ground-truth depth and the sweep's optics:
  ``blur_px_per_diopter · (1/depth − 1/focus)`` (the signed circle-of-confusion diameter in full-resolution
  pixels, which a dual-pixel disparity is proportional to), area-downsampled 8×, e.g. divided by 8 to
  be in 1/8-grid pixels. Rendering dual-pixel views would allow the original warping loss instead.
- The last conv to RGB is linear (the official helper ends it with a LeakyReLU that damps negative
  corrections 10×); the output is clamped straight-through to [0, 1] (official: clip at test time only).
- The reblurring net's input sharp image is area-downsampled (official: nearest) after padding to 8.
- Default PyTorch initialisation (the official one uses Xavier with gain 1.5 on the filter predictor).
- Input stays in [0, 1], as in the official code.

Size (deblurring network): `width=32` (paper) 10.48 M parameters — as published, 10.48 M; `width=8` (CPU)
0.66 M. Reblurring network at `width=32`: 19.14 M (published 19.14 M), dominated by its first 3×3 conv
on the 15,232 filter channels; 1.27 M at `width=8`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evfocus.models.baselines.filtering import per_pixel_filter
from evfocus.models.baselines.layers import (
    IFAN_SLOPE,
    ImageBaseline,
    PyramidEncoder,
    ResidualStack,
    UpLevel,
    conv,
    conv_act,
    finish,
    residual_trunk,
)
from evfocus.models.blocks import pad_to_multiple

_STRIDE = 8  # the filters and the defocus map live at 1/8 resolution


def iac_channels(channels: int, iterations: int, taps: int) -> int:
    """Channels of an IAC filter tensor: per iteration C·taps horizontal + C·taps vertical, then C biases each."""
    return iterations * (2 * channels * taps + channels)


def iterative_adaptive_conv(features: Tensor, filters: Tensor, iterations: int, taps: int,
                            activate_last: bool = True) -> Tensor:
    """IFAN's Iterative Adaptive Convolution with separate horizontal and vertical kernels.

    `filters` (N, `iac_channels(C, iterations, taps)`, H, W) holds, for iteration i, the horizontal kernels
    at channels ``[2i·C·taps, (2i+1)·C·taps)`` and the vertical ones at ``[(2i+1)·C·taps, (2i+2)·C·taps)``
    (channel-major, tap-minor), then all biases, C per iteration. Each iteration:
    ``x ← LReLU(vertical(horizontal(x)) + bias)`` (no LReLU after the last one unless `activate_last`).
    """
    channels = features.shape[1]
    if filters.shape[1] != iac_channels(channels, iterations, taps):
        raise ValueError(f"filters need {iac_channels(channels, iterations, taps)} channels for {channels} "
                         f"features, {iterations} iterations and {taps} taps, got {filters.shape[1]}")
    kernels, biases = filters.split([2 * iterations * channels * taps, iterations * channels], dim=1)
    kernels = kernels.unflatten(1, (iterations, 2, channels * taps))
    x = features
    for i, bias in enumerate(biases.split(channels, dim=1)):
        x = per_pixel_filter(x, kernels[:, i, 0], (1, taps))
        x = per_pixel_filter(x, kernels[:, i, 1], (taps, 1)) + bias
        if i < iterations - 1 or activate_last:
            x = F.leaky_relu(x, IFAN_SLOPE)
    return x


class IFANOutput(NamedTuple):
    image: Tensor  # (N, 3, H, W) all-in-focus estimate in [0, 1]
    defocus: Tensor  # (N, 1, ⌈H/8⌉, ⌈W/8⌉) signed defocus (disparity) estimate, unconstrained
    filters: Tensor  # (N, iac_channels, ⌈H/8⌉, ⌈W/8⌉) the predicted IAC filters, input of `IFANReblur`


class IFAN(ImageBaseline):
    """Iterative filter adaptive network (see the module docstring); `forward_with_aux` adds the 1/8 maps."""

    stride = _STRIDE

    def __init__(self, width: int = 32, iterations: int = 17, taps: int = 3) -> None:
        super().__init__()
        if width < 1 or iterations < 1 or taps < 1 or taps % 2 == 0:
            raise ValueError(f"IFAN needs width, iterations >= 1 and odd taps, got {width}, {iterations}, {taps}")
        self.iterations, self.taps = iterations, taps
        widths = (width, 2 * width, 4 * width, 4 * width)
        self.deep_channels = deep = widths[-1]
        self.filter_channels = iac_channels(deep, iterations, taps)
        self.encoder = PyramidEncoder(3, widths)
        self.filter_encoder = PyramidEncoder(3, widths)
        self.defocus_estimator = nn.Sequential(residual_trunk(deep, deep, blocks=2, units=2), conv(deep, 1))
        self.defocus_embedding = conv_act(1, deep)
        self.filter_fusion = nn.Sequential(residual_trunk(2 * deep, deep, blocks=2, units=2), conv_act(deep, deep))
        self.filter_predictor = nn.Sequential(residual_trunk(deep, deep, blocks=2, units=2),
                                              conv(deep, self.filter_channels, 1))
        self.reconstructor = nn.Sequential(conv_act(deep, deep), ResidualStack(deep, units=3), conv_act(deep, deep))
        self.decoder = nn.ModuleList(UpLevel(widths[i], widths[i - 1]) for i in (3, 2, 1))
        self.to_image = conv(width, 3)

    def restore(self, image: Tensor) -> Tensor:
        return self._run(image).image

    def forward_with_aux(self, image: Tensor) -> IFANOutput:
        """Like `forward`, plus the defocus map and the IAC filters at ⌈H/8⌉×⌈W/8⌉."""
        height, width = image.shape[-2:]
        out = self._run(self.pad(image))
        small = (math.ceil(height / _STRIDE), math.ceil(width / _STRIDE))
        return IFANOutput(finish(out.image, height, width), out.defocus[..., : small[0], : small[1]],
                          out.filters[..., : small[0], : small[1]])

    def build_reblur_net(self) -> IFANReblur:
        """The training-only reblurring network matched to this network's filters (same width)."""
        return IFANReblur(self.filter_channels, self.deep_channels, self.iterations, self.taps)

    def _run(self, image: Tensor) -> IFANOutput:
        *skips, deepest = self.encoder(image)
        filter_features = self.filter_encoder(image)[-1]
        defocus = self.defocus_estimator(filter_features)
        fused = self.filter_fusion(torch.cat([filter_features, self.defocus_embedding(defocus)], dim=1))
        filters = self.filter_predictor(fused)
        features = self.reconstructor(iterative_adaptive_conv(deepest, filters, self.iterations, self.taps))
        for up_level, skip in zip(self.decoder, reversed(skips), strict=True):
            features = up_level(features, skip)
        return IFANOutput(self.to_image(features) + image, defocus, filters)


class IFANReblur(nn.Module):
    """IFAN's reblurring network (training only): blur the 1/8 sharp image with filters derived from IFAN's.

    ``forward(sharp (N, 3, H, W), filters (N, filter_channels, ⌈H/8⌉, ⌈W/8⌉))`` → (N, 3, ⌈H/8⌉, ⌈W/8⌉);
    compare it with ``IFANReblur.downsample(defocused_input)`` (MSE in IFAN).
    """

    def __init__(self, filter_channels: int, width: int, iterations: int = 17, taps: int = 3) -> None:
        super().__init__()
        self.iterations, self.taps = iterations, taps
        self.predictor = nn.Sequential(residual_trunk(filter_channels, width, blocks=2, units=2),
                                       conv(width, iac_channels(3, iterations, taps)))

    @staticmethod
    def downsample(image: Tensor) -> Tensor:
        """(N, C, H, W) → (N, C, ⌈H/8⌉, ⌈W/8⌉): replicate-pad to 8, then 8×8 area average."""
        return F.avg_pool2d(pad_to_multiple(image, _STRIDE), _STRIDE)

    def forward(self, sharp: Tensor, filters: Tensor) -> Tensor:
        small = self.downsample(sharp)
        if small.shape[-2:] != filters.shape[-2:]:
            raise ValueError(f"filters {tuple(filters.shape)} do not match the 1/8 image {tuple(small.shape)}")
        return small + iterative_adaptive_conv(small, self.predictor(filters), self.iterations, self.taps,
                                               activate_last=False)
