"""Refocused slices keep the frame's light (pipeline/anchor.py): drift goes, detail stays."""

import kornia
import pytest
import torch

from evfocus.colour import srgb_encode
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.integration import EventIntegrator
from evfocus.image_scores import image_quality
from evfocus.pipeline.aif import refocus_stack
from evfocus.pipeline.anchor import anchor_sigma_px, anchor_to_frame, local_mean
from evfocus.sim.dvs import IdealParams, simulate_ideal

SIZE, FRAMES, DURATION_US = 96, 41, 400_000


def _sharp_linear(seed: int = 0) -> torch.Tensor:
    """Linear-light grey texture (1, 1, H, W) in [0.05, 0.9] with detail at 1-3 px."""
    noise = torch.rand(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    detail = kornia.filters.gaussian_blur2d(noise, (9, 9), (1.5, 1.5), "reflect")
    detail = (detail - detail.min()) / (detail.max() - detail.min())
    return 0.05 + 0.85 * detail


def _blur(linear: torch.Tensor, sigma: float) -> torch.Tensor:
    return kornia.filters.gaussian_blur2d(linear, (25, 25), (sigma, sigma), "reflect")


def test_a_brightness_drift_is_removed_and_the_detail_kept():
    sharp = _sharp_linear()
    frame = srgb_encode(_blur(sharp, 3.0))[0].expand(3, -1, -1)
    truth = srgb_encode(sharp)[0].expand(3, -1, -1)
    ramp = torch.linspace(1.2, 1.6, SIZE)[None, None, :]  # a smooth gain in linear light: the drift
    drifted = srgb_encode((sharp * ramp).clamp(0, 1))[0].expand(3, -1, -1)
    anchored = anchor_to_frame(drifted[None], frame, sigma_px=8.0)[0]
    before, after = image_quality(drifted, truth)["psnr"], image_quality(anchored, truth)["psnr"]
    assert after > before + 8.0, (before, after)
    assert after > 30.0


def test_the_frame_anchored_to_itself_is_unchanged_and_shapes_are_checked():
    frame = srgb_encode(_blur(_sharp_linear(1), 2.0))[0].expand(3, -1, -1).contiguous()
    assert torch.allclose(anchor_to_frame(frame[None], frame, 6.0)[0], frame, atol=1e-5)
    with pytest.raises(ValueError, match="same C, H, W"):
        anchor_to_frame(frame[None, :, :50], frame, 6.0)
    with pytest.raises(ValueError, match="sigma_px must be a positive"):
        anchor_to_frame(frame[None], frame, 0.0)
    with pytest.raises(ValueError, match="must be positive"):
        anchor_sigma_px(-0.1, 10, 10)
    assert anchor_sigma_px(None, 10, 10) is None and anchor_sigma_px(0.05, 260, 346) == pytest.approx(17.3)


@pytest.mark.parametrize("sigma_px", [3.0, 16.0, 40.0])
def test_local_mean_matches_a_full_resolution_gaussian(sigma_px):
    image = _blur(_sharp_linear(2), 1.0).repeat(1, 2, 1, 1)
    size = 2 * int(3 * sigma_px + 1) + 1
    exact = kornia.filters.gaussian_blur2d(image, (size, size), (sigma_px, sigma_px), "replicate")
    error = (local_mean(image, sigma_px) - exact).abs()
    margin = int(sigma_px)  # within σ of the border the two differ in how they extend the image
    assert error[..., margin:-margin, margin:-margin].max() < 0.005
    assert error.max() < 0.05


def test_leaky_events_drift_and_the_anchored_stack_does_not():
    """An ideal sensor with leak events (ON, all sweep long) watching a frame come into focus: the
    integrated slice brightens; anchored to the frame, its local mean is the frame's and it is closer
    to the sharp view."""
    sharp = _sharp_linear(3)
    sigmas = torch.linspace(3.0, 0.5, FRAMES)
    views = torch.cat([_blur(sharp, float(s)) for s in sigmas])[:, 0]
    times_us = torch.linspace(0, DURATION_US, FRAMES).round().to(torch.int64)
    params = IdealParams(threshold=0.2, threshold_sigma=0.0, leak_hz=4.0)
    events = simulate_ideal(srgb_encode(views), times_us, params, torch.Generator().manual_seed(0))
    focal_stack = EventFocalStack.from_events(events, 0, DURATION_US, 64)
    frame = srgb_encode(views[:1])[0].expand(3, -1, -1).contiguous()
    truth = srgb_encode(views[-1:])[0].expand(3, -1, -1)
    end = torch.tensor([float(DURATION_US)], dtype=torch.float64)
    plain, _ = refocus_stack(EventIntegrator(0.2), frame, 0.0, focal_stack, end, num_bins=8)
    anchored, _ = refocus_stack(EventIntegrator(0.2), frame, 0.0, focal_stack, end, num_bins=8, anchor_sigma_px=8.0)

    def mean_linear(x: torch.Tensor) -> float:
        return float(kornia.color.rgb_to_linear_rgb(x.clamp(0, 1)).mean())

    assert mean_linear(plain[0]) > 1.1 * mean_linear(frame)  # the leak's drift
    assert mean_linear(anchored[0]) == pytest.approx(mean_linear(frame), rel=0.02)
    assert image_quality(anchored[0], truth)["psnr"] > image_quality(plain[0], truth)["psnr"] + 1.0

