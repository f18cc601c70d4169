"""EvRefocusNet: the frame at t0 plus the events t0→t give the frame focused as at time t.

An ideal sensor obeys `log I(t) = log I(t0) + Σ events(t0→t)`; the net learns the residual in log
space that the real sensor (thresholds, noise, missed events) needs on top of the log image.
"""

from __future__ import annotations

from typing import Literal

import kornia
import torch
from torch import Tensor, nn

from evfocus.events.contrast import estimate_contrast
from evfocus.events.focal_stack import SWEEP_CONTEXT_BINS, EventFocalStack
from evfocus.events.integration import DARK_OFFSET, EventResponse
from evfocus.models.blocks import ConvNormAct, DualEncoder, FusionDecoder, Norm, ResidualBlock, pad_to_multiple


def straight_through_clamp(x: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    """Clamp the values but pass the gradient through unchanged.

    A plain clamp has zero gradient wherever the prediction overshoots [0, 1], so an overshooting
    pixel whose target lies inside the range would never be pulled back (and training sees a
    different output than evaluation if the clamp is skipped there). Straight-through keeps the
    forward output identical in training and inference while every pixel keeps its gradient.
    """
    return x + (x.clamp(low, high) - x).detach()


def linear_light_log_step(image: Tensor, step: Tensor, log_eps: float) -> Tensor:
    """The change of ``log(image + log_eps)`` (N, C, H, W) when linear light plus the dark offset moves by the
    log ``step`` (N, 1, H, W): a linear sensor's event integration in the net's log. kornia's sRGB curves,
    since this one must pass gradients (``colour``'s are in place)."""
    light = kornia.color.rgb_to_linear_rgb(image.clamp(0.0, 1.0))
    light = ((light + DARK_OFFSET) * step.exp() - DARK_OFFSET).clamp(0.0, 1.0)
    return torch.log(kornia.color.linear_rgb_to_rgb(light).clamp(0.0, 1.0) + log_eps) - torch.log(image + log_eps)


def sweep_context(image: Tensor, sweep_bins: Tensor) -> Tensor:
    """The contrast estimator's input: (N, C + SWEEP_CONTEXT_BINS + 1, H, W) from the frame (N, C, H, W)
    and its whole sweep's signed events in ``SWEEP_CONTEXT_BINS`` bins (N, SWEEP_CONTEXT_BINS, H, W).

    Log frame, the signed bins, and log(1 + |events|) per bin summed: counts span decades between
    sensors, and a log lets the estimator read their ratio to the frame's contrast.
    """
    if sweep_bins.shape[1] != SWEEP_CONTEXT_BINS:
        raise ValueError(f"sweep_bins must have {SWEEP_CONTEXT_BINS} bins, got shape {tuple(sweep_bins.shape)}")
    activity = torch.log1p(sweep_bins.abs()).sum(dim=1, keepdim=True)
    return torch.cat([torch.log(image + 1e-3), sweep_bins, activity], dim=1)


ContrastSource = Literal["prior", "learned"]
CONTRAST_SOURCES: tuple[str, ...] = ("prior", "learned")


class ContrastEstimator(nn.Module):
    """The event contrast (log-intensity step per event) of one sweep, from the frame and its events.

    A sensor's contrast threshold differs by model and bias settings (ray-traced DVS-Voltmeter sweeps
    need about 0.2 at DAVIS346 sensitivity and 0.08 at three times that), so one learned global gain
    fits one simulator only. This small encoder pools the whole sweep's context (``sweep_context``) to
    one number per sample: how blurred the frame looks against how many events its edges fired. It
    corrects a non-learned prior (``events.contrast.estimate_contrast``, which fails on fine textures
    the frame blurs away): log c = log prior + correction, the correction starting at 0.
    """

    def __init__(self, image_channels: int, width: int = 16) -> None:
        super().__init__()
        in_channels = image_channels + SWEEP_CONTEXT_BINS + 1
        self.body = nn.Sequential(
            ConvNormAct(in_channels, width, 3, norm="none"),
            ConvNormAct(width, 2 * width, 2, stride=2, norm="none"),
            ConvNormAct(2 * width, 2 * width, 3, norm="none"),
            ConvNormAct(2 * width, 4 * width, 2, stride=2, norm="none"),
            ConvNormAct(4 * width, 4 * width, 3, norm="none"),
        )
        self.head = nn.Linear(4 * width + 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, context: Tensor, prior_log_contrast: Tensor) -> Tensor:
        """(N, C + SWEEP_CONTEXT_BINS + 1, H, W) and the prior's log c (N,) → log contrast (N,)."""
        features = pad_to_multiple(self.body[0](context), 4)
        for layer in self.body[1:]:
            features = layer(features)
        pooled = torch.cat([features.mean(dim=(-2, -1)), prior_log_contrast[:, None].to(features.dtype)], dim=1)
        return prior_log_contrast + self.head(pooled)[:, 0]


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

    ``response_aware`` (our addition): that integration, and the contrast that scales the events, take the log
    each sweep's sensor responds to — the frame's values, or linear light plus a dark offset for the samples
    ``forward``'s ``linear`` marks (``events.integration``; on our linear-response sweeps the right log gains
    1.4 dB per refocused frame at ×3 sensitivity). Off, every sweep is integrated in the frame's log.
    """

    def __init__(self, num_bins: int, image_channels: int = 3, width: int = 32, depth: int = 3,
                 norm: Norm = "group", log_eps: float = 1e-3, event_gain_init: float | None = None,
                 contrast: ContrastSource | None = None, response_aware: bool = False) -> None:
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
        if contrast not in (None, *CONTRAST_SOURCES):
            raise ValueError(f"contrast must be None or one of {CONTRAST_SOURCES}, got {contrast!r}")
        if contrast is not None and event_gain_init is None:
            raise ValueError("a per-sweep contrast needs event_gain_init (the gain on it, e.g. 1.0)")
        self.contrast_source = contrast
        self.response_aware = response_aware
        self.contrast_estimator = ContrastEstimator(image_channels) if contrast == "learned" else None

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

    def estimate_log_contrast(self, image: Tensor, sweep_bins: Tensor, prior_contrast: Tensor) -> Tensor:
        """log c (N,) of each sample's sweep: ``image`` (N, C, H, W) is the frame, ``sweep_bins``
        (N, SWEEP_CONTEXT_BINS, H, W) its whole sweep's signed events, ``prior_contrast`` (N,) the
        non-learned estimate (``events.contrast``), which is the answer with ``contrast="prior"``."""
        if self.contrast_source is None:
            raise ValueError("this EvRefocusNet uses one global event gain, not a per-sweep contrast")
        if self.contrast_estimator is None:
            return prior_contrast.to(image.dtype).log()
        context = sweep_context(image, sweep_bins.to(image.dtype))
        return self.contrast_estimator(context, prior_contrast.to(context.dtype).log())

    def for_sweep(self, image: Tensor, focal_stack: EventFocalStack, image_time_us: float,
                  prior_contrast: float | None = None,
                  response: EventResponse = "gamma") -> EvRefocusNet | SweepRefocus:
        """This net as a plain ``refocus(images, events)`` for one sweep (frame (C, H, W) and its event
        focal stack): the contrast is estimated once, here (``prior_contrast``: the non-learned
        estimate when already computed, in ``response``'s log). ``response``: what the sweep's sensor responds
        to (``Sweep.event_response``), ignored unless the net is ``response_aware``."""
        if self.contrast_source is None:
            return self
        response = response if self.response_aware else "gamma"
        prior = prior_contrast or estimate_contrast(image, focal_stack, image_time_us, response=response).contrast
        log_contrast = self.estimate_log_contrast(image[None], focal_stack.whole_sweep_bins()[None],
                                                  torch.tensor([prior], device=image.device))
        return SweepRefocus(self, log_contrast[0], response)

    def forward(self, image: Tensor, events: Tensor, image_features: list[Tensor] | None = None,
                log_contrast: Tensor | None = None, linear: Tensor | None = None) -> Tensor:
        """(N, C, H, W) frame in [0, 1] + (N, B, H, W) signed event bins → (N, C, H, W) refocused frame.

        With a contrast estimator, ``log_contrast`` (N,) or () — the sweep's, from
        ``estimate_log_contrast`` — scales the events into log-intensity steps before anything sees
        them, so the layers work in the same units whatever the sensor's sensitivity. ``linear`` (N,) bool marks
        the samples of linear-response sensors (used only by a ``response_aware`` net).
        """
        self._check_inputs(image, events)
        h, w = image.shape[-2:]
        if self.contrast_source is not None:
            if log_contrast is None:
                raise ValueError("this EvRefocusNet estimates the event contrast: pass log_contrast "
                                 "(from estimate_log_contrast on the sweep's frame and events)")
            contrast = log_contrast.exp().to(image.dtype).expand(image.shape[0])[:, None, None, None]
            events = events.to(image.dtype) * contrast
        skips = self.encoder(self._padded_log(image), pad_to_multiple(events.to(image.dtype), self.stride),
                             image_features)
        residual = self.to_residual(self.head(self.decoder(skips)))[..., :h, :w]
        if self.event_gain is not None:
            step = self.event_gain * events.sum(dim=1, keepdim=True).float()
            if self.response_aware and linear is not None and bool(linear.any()):
                linear_step = linear_light_log_step(image.float(), step, self.log_eps)
                step = torch.where(linear.to(image.device).view(-1, 1, 1, 1), linear_step, step)
            residual = residual + step.to(residual.dtype)
        # compose in the image's precision: under autocast the residual arrives in bf16/fp16
        refocused = image + (image + self.log_eps) * torch.expm1(residual.to(image.dtype))
        return straight_through_clamp(refocused)


class SweepRefocus:
    """An ``EvRefocusNet`` with one sweep's estimated contrast fixed, callable like any refocus function."""

    def __init__(self, net: EvRefocusNet, log_contrast: Tensor, response: EventResponse = "gamma") -> None:
        self.net = net
        self.log_contrast = log_contrast
        self.response = response  # the log the contrast is in; the search probes integrate in it too

    @property
    def contrast(self) -> float:
        return float(self.log_contrast.exp())

    def encode_image(self, image: Tensor) -> list[Tensor]:
        return self.net.encode_image(image)

    def __call__(self, image: Tensor, events: Tensor, image_features: list[Tensor] | None = None) -> Tensor:
        linear = None  # gamma: no flag, no device sync in the net's check
        if self.response == "linear":
            linear = torch.ones(image.shape[0], dtype=torch.bool, device=image.device)
        return self.net(image, events, image_features, log_contrast=self.log_contrast, linear=linear)
