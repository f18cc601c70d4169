"""APL: Zhao et al., "United Defocus Blur Detection and Deblurring via Adversarial Promoting Learning", ECCV 2022.

Taken from the paper and the official architecture (wdzhao123/APL), LeakyReLU 0.2, input normalised with
the ImageNet mean and std inside the model (as the official data pipeline does), all three networks:
- `BlurDetector`: VGG-like encoder (`width`·(1, 2, 4, 8) channels = 64/128/256/512 in the paper; 2, 2, 3,
  3 convs, 2× average pooling between levels, skips at 1/2, 1/4, 1/8), U-Net decoder (1×1 fuse + 3×3 per
  level, bilinear 2× upsampling) → a 1-channel map whose sigmoid is the *mask*: the probability that a
  pixel is in focus (the generator keeps those pixels).
- `MaskGuidedGenerator`: restoration at full resolution, `width` channels (128), no downsampling: conv,
  2 conv-norm-ReLU, a fusion block, 3 conv-norm-ReLU, a fusion block, 2 conv-norm-ReLU, conv → RGB added
  to its input. Its input is the blurred region ``x·(1 − mask)``; each fusion block (modulation, conv,
  LReLU, modulation, conv, plus a skip) modulates the features by a per-channel scale and shift computed
  from both regions ``x·(1 − mask)`` and ``x·mask`` (a shared 3-conv encoder on each, concatenated, two
  3-conv branches, global average pool, two 1×1 convs, sigmoid). Output ``G·(1 − mask) + x·mask``.
- `APLDiscriminator` (training only): strided VGG-like convs 64 → 512 (`width`·(1, 1, 2, 2, 4, 8, 8)),
  global average pool, 1×1 → 16·width, 1×1 → 1: one logit per image. APL trains it against *unpaired*
  sharp images, and the detector (and generator) adversarially through it.

What differs and why:
- **Full resolution**: the official code resizes every image to 160² (even at test time) and its global
  pool is a fixed 160×160 window; here the pool is global at any size and nothing is resized. Inputs
  are replicate-padded to a multiple of 8 (the detector's stride).
- Normalisation is a choice (`norm`, default group norm; the official nets use batch norm at batch 1):
  see `evfocus.models.blocks`. Convs followed by a normalisation drop their (redundant) bias.
- Only the layers the official forward pass uses are built: the official generator also defines a third
  fusion block, a third plain stack and a third encoder per modulation layer that it never runs (its state
  dict holds 13.46 M parameters, its forward uses 7.83 M).
- The scale/shift branches end in 1×1 → LReLU → 1×1 → sigmoid (the official applies a LReLU right before
  the sigmoid too); the fusion block's inner activation uses slope 0.2 like the rest (official: 0.01).
- The discriminator returns logits (use `BCEWithLogits`, autocast-safe) instead of sigmoid probabilities;
  the detector's logits are returned beside the mask for the same reason.
- The output is clamped straight-through to [0, 1].

Size: paper (`detector_width=64, generator_width=128`) detector 8.66 M + generator 7.82 M = 16.48 M
parameters (published 8.67 M + 7.83 M; the difference is the biases before normalisations), and the
discriminator at `width=64` 4.62 M (published 4.62 M); CPU (`detector_width=8, generator_width=12`)
0.14 M + 0.07 M = 0.21 M, discriminator at `width=8` 0.07 M.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evfocus.models.baselines.layers import ImageBaseline, conv, finish
from evfocus.models.blocks import Norm, make_norm

_SLOPE = 0.2
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_norm_act(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                   norm: Norm = "group", act: nn.Module | None = None) -> nn.Sequential:
    return nn.Sequential(conv(in_channels, out_channels, kernel_size, stride, bias=norm == "none"),
                         make_norm(norm, out_channels), act or nn.LeakyReLU(_SLOPE, inplace=True))


class ImageNetNormalize(nn.Module):
    """[0, 1] RGB → ImageNet-standardised RGB, and back with `inverse`."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        return (image - self.mean) / self.std

    def inverse(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean


class BlurDetector(nn.Module):
    """Defocus blur detection U-Net: (N, 3, H, W) normalised image, H and W multiples of 8 → (N, 1, H, W) logits."""

    def __init__(self, width: int = 64, norm: Norm = "group") -> None:
        super().__init__()
        c1, c2, c3, c4 = (width * 2**i for i in range(4))
        half = max(1, width // 2)

        def stage(c_in: int, c_out: int, convs: int) -> nn.Sequential:
            return nn.Sequential(*(_conv_norm_act(c_in if i == 0 else c_out, c_out, norm=norm) for i in range(convs)))

        self.encoder = nn.ModuleList([stage(3, c1, 2), stage(c1, c2, 2), stage(c2, c3, 3), stage(c3, c4, 3)])
        self.decoder = nn.ModuleList([
            nn.Sequential(_conv_norm_act(c4, c3, 1, norm=norm), _conv_norm_act(c3, c3, norm=norm)),
            nn.Sequential(_conv_norm_act(2 * c3, c2, 1, norm=norm), _conv_norm_act(c2, c2, norm=norm)),
            nn.Sequential(_conv_norm_act(2 * c2, c1, 1, norm=norm), _conv_norm_act(c1, c1, norm=norm),
                          _conv_norm_act(c1, half, norm=norm)),
        ])
        self.head = nn.Sequential(_conv_norm_act(half, half, norm=norm), _conv_norm_act(half, half, norm=norm),
                                  conv(half, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        levels = []
        for i, stage in enumerate(self.encoder):
            x = stage(F.avg_pool2d(x, 2) if i else x)
            levels.append(x)
        _, half, quarter, eighth = levels  # the full-resolution level is no skip
        x = torch.cat([_upsample(self.decoder[0](eighth)), quarter], dim=1)
        x = torch.cat([_upsample(self.decoder[1](x)), half], dim=1)
        return self.head(_upsample(self.decoder[2](x)))


def _upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class _GlobalGate(nn.Sequential):
    """Three 3×3 conv-norm-LReLU, global average pool, 1×1 → LReLU → 1×1 → sigmoid: (N, C, 1, 1) in (0, 1)."""

    def __init__(self, in_channels: int, width: int, norm: Norm) -> None:
        super().__init__(
            _conv_norm_act(in_channels, width, norm=norm), _conv_norm_act(width, width, norm=norm),
            _conv_norm_act(width, width, norm=norm), nn.AdaptiveAvgPool2d(1),
            conv(width, width, 1), nn.LeakyReLU(_SLOPE, inplace=True), conv(width, width, 1), nn.Sigmoid(),
        )


class RegionModulation(nn.Module):
    """APL's fusion (SFT) layer: per-channel scale and shift of the features from both image regions."""

    def __init__(self, width: int, norm: Norm) -> None:
        super().__init__()
        self.region_encoder = nn.Sequential(_conv_norm_act(3, width, norm=norm),
                                            *(_conv_norm_act(width, width, norm=norm) for _ in range(2)))
        self.scale = _GlobalGate(2 * width, width, norm)
        self.shift = _GlobalGate(2 * width, width, norm)

    def forward(self, features: Tensor, blurred: Tensor, sharp: Tensor) -> Tensor:
        # one pass of the shared encoder over both regions, then their features side by side
        regions = torch.cat(self.region_encoder(torch.cat([blurred, sharp])).chunk(2), dim=1)
        return self.scale(regions) * features + self.shift(regions)


class FusionBlock(nn.Module):
    """Modulate → conv → LReLU → modulate → conv, plus the input."""

    def __init__(self, width: int, norm: Norm) -> None:
        super().__init__()
        self.modulations = nn.ModuleList(RegionModulation(width, norm) for _ in range(2))
        self.convs = nn.ModuleList(conv(width, width) for _ in range(2))

    def forward(self, features: Tensor, blurred: Tensor, sharp: Tensor) -> Tensor:
        x = F.leaky_relu(self.convs[0](self.modulations[0](features, blurred, sharp)), _SLOPE)
        return features + self.convs[1](self.modulations[1](x, blurred, sharp))


class MaskGuidedGenerator(nn.Module):
    """Full-resolution restoration of the blurred region: (normalised image, mask in [0, 1]) → normalised image."""

    def __init__(self, width: int = 128, norm: Norm = "group") -> None:
        super().__init__()

        def plain(convs: int) -> nn.Sequential:
            return nn.Sequential(*(_conv_norm_act(width, width, norm=norm, act=nn.ReLU(inplace=True))
                                   for _ in range(convs)))

        self.stem = nn.Sequential(conv(3, width, bias=False), nn.LeakyReLU(_SLOPE, inplace=True))
        self.plain = nn.ModuleList([plain(2), plain(3), plain(2)])
        self.fusions = nn.ModuleList(FusionBlock(width, norm) for _ in range(2))
        self.to_image = conv(width, 3, bias=False)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        blurred, sharp = image * (1 - mask), image * mask
        features = self.plain[0](self.stem(blurred))
        for fusion, plain in zip(self.fusions, self.plain[1:], strict=True):
            features = plain(fusion(features, blurred, sharp))
        return (self.to_image(features) + blurred) * (1 - mask) + sharp


class APLOutput(NamedTuple):
    image: Tensor  # (N, 3, H, W) all-in-focus estimate in [0, 1]
    mask: Tensor  # (N, 1, H, W) probability that a pixel is in focus (what the generator keeps)
    mask_logits: Tensor  # (N, 1, H, W) the detector's logits, for BCE-with-logits supervision


class APL(ImageBaseline):
    """Blur detector + mask-guided generator (see the module docstring); the discriminator is separate."""

    stride = 8

    def __init__(self, detector_width: int = 64, generator_width: int = 128, discriminator_width: int = 64,
                 norm: Norm = "group") -> None:
        super().__init__()
        if min(detector_width, generator_width, discriminator_width) < 1:
            raise ValueError(f"APL widths must be >= 1, got {detector_width}, {generator_width}, {discriminator_width}")
        self.discriminator_width, self.norm = discriminator_width, norm
        self.normalize = ImageNetNormalize()
        self.detector = BlurDetector(detector_width, norm)
        self.generator = MaskGuidedGenerator(generator_width, norm)

    def restore(self, image: Tensor) -> Tensor:
        return self._run(image).image

    def forward_with_aux(self, image: Tensor) -> APLOutput:
        """Like `forward`, plus the in-focus mask and its logits at H×W."""
        height, width = image.shape[-2:]
        out = self._run(self.pad(image))
        return APLOutput(finish(out.image, height, width), out.mask[..., :height, :width],
                         out.mask_logits[..., :height, :width])

    def build_discriminator(self) -> APLDiscriminator:
        """The training-only discriminator at `discriminator_width` (not part of this module's parameters)."""
        return APLDiscriminator(self.discriminator_width, self.norm)

    def _run(self, image: Tensor) -> APLOutput:
        x = self.normalize(image)
        logits = self.detector(x)
        mask = torch.sigmoid(logits)
        return APLOutput(self.normalize.inverse(self.generator(x, mask)), mask, logits)


class APLDiscriminator(nn.Module):
    """Real/fake critic on whole images: (N, 3, H, W) in [0, 1], any size → (N,) logits (training only)."""

    def __init__(self, width: int = 64, norm: Norm = "group") -> None:
        super().__init__()
        # (out channels in units of width, stride) of the normalised convs after the first plain one
        layout = ((1, 2), (2, 1), (2, 2), (4, 1), (8, 1), (8, 2))
        layers: list[nn.Module] = [conv(3, width), nn.LeakyReLU(_SLOPE, inplace=True)]
        c_in = width
        for units, stride in layout:
            layers.append(_conv_norm_act(c_in, units * width, stride=stride, norm=norm))
            c_in = units * width
        layers += [nn.AdaptiveAvgPool2d(1), conv(c_in, 2 * c_in, 1), nn.LeakyReLU(_SLOPE, inplace=True),
                   conv(2 * c_in, 1, 1)]
        self.normalize = ImageNetNormalize()
        self.net = nn.Sequential(*layers)

    def forward(self, image: Tensor) -> Tensor:
        return self.net(self.normalize(image)).flatten()
