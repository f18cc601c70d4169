"""Pure event integration: exact on ideal events, identity at zero contrast, a drop-in refocus function."""

from __future__ import annotations

import pytest
import torch

from evfocus.colour import srgb_decode, srgb_encode
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.integration import DARK_OFFSET, EventIntegrator, fit_contrast, integrate_events
from evfocus.events.stream import EventStream
from evfocus.pipeline.search import SearchConfig, focus_search

LOG_EPS = 1e-3


def ideal_pair(c_true: float, seed: int, size: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image, events, target) with target = (image + ε)·exp(c·Σ events) − ε exactly, kept inside [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    image = 0.1 + 0.3 * torch.rand(3, size, size, generator=generator)
    events = torch.randint(-1, 2, (4, size, size), generator=generator).float()  # Σ over 4 bins in [-4, 4]
    target = torch.exp(torch.log(image + LOG_EPS) + c_true * events.sum(dim=0)) - LOG_EPS
    assert float(target.min()) >= 0.0 and float(target.max()) <= 1.0
    return image, events, target


@pytest.mark.parametrize("c_true", [0.05, 0.2])
def test_fit_contrast_recovers_ideal_contrast(c_true: float) -> None:
    pairs = [ideal_pair(c_true, seed) for seed in range(3)]
    fitted = fit_contrast(pairs, log_eps=LOG_EPS)
    assert fitted == pytest.approx(c_true, rel=0.05)
    # and the fitted contrast reproduces the targets
    image, events, target = pairs[0]
    torch.testing.assert_close(integrate_events(image[None], events[None], fitted, LOG_EPS)[0], target,
                               atol=1e-2, rtol=0)


def test_fit_contrast_accepts_batched_pairs_and_custom_grid() -> None:
    pairs = [tuple(torch.stack(parts) for parts in zip(*(ideal_pair(0.2, s) for s in range(2)), strict=True))]
    assert pairs[0][0].shape == (2, 3, 12, 12)
    fitted = fit_contrast(pairs, candidates=[0.01, 0.03, 0.1, 0.3, 1.0], log_eps=LOG_EPS)
    assert fitted == pytest.approx(0.2, rel=0.05)


def test_fit_contrast_scores_pairs_of_several_sizes_as_one_mean() -> None:
    """Pairs are batched by size: the order they come in and how they are grouped must not change the fit."""
    pairs = [ideal_pair(0.05, 0), ideal_pair(0.2, 1, size=16), ideal_pair(0.05, 2), ideal_pair(0.2, 3, size=16)]
    fitted = fit_contrast(pairs, log_eps=LOG_EPS)
    assert 0.05 < fitted < 0.2  # between the two sizes' own contrasts: both sizes were scored
    assert fit_contrast(pairs[::-1], log_eps=LOG_EPS) == pytest.approx(fitted, rel=1e-6)
    batched = [tuple(torch.stack(parts) for parts in zip(*pairs[0::2], strict=True)), *pairs[1::2]]
    assert fit_contrast(batched, log_eps=LOG_EPS) == pytest.approx(fitted, rel=1e-6)


def test_fit_contrast_rejects_bad_input() -> None:
    image, events, target = ideal_pair(0.2, 0)
    with pytest.raises(ValueError, match="at least one"):
        fit_contrast([])
    with pytest.raises(ValueError, match="positive"):
        fit_contrast([(image, events, target)], candidates=[0.0, 0.1])
    with pytest.raises(ValueError, match="target"):
        fit_contrast([(image, events, target[:, :5])])


def test_zero_contrast_is_identity_and_output_in_unit_range() -> None:
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 8, 8, generator=generator)
    events = torch.randint(-5, 6, (2, 4, 8, 8), generator=generator).float()
    torch.testing.assert_close(integrate_events(image, events, 0.0), image, atol=1e-6, rtol=0)
    for contrast in (0.3, 3.0):
        out = integrate_events(image, events, contrast)
        assert out.shape == image.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # +1 = brighter: ON events raise every channel, OFF events lower it
    grey = torch.full((1, 3, 2, 2), 0.5)
    on = integrate_events(grey, torch.ones(1, 1, 2, 2), 0.2)
    off = integrate_events(grey, -torch.ones(1, 1, 2, 2), 0.2)
    assert bool((on > grey).all()) and bool((off < grey).all())


def test_integrate_events_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="disagree"):
        integrate_events(torch.rand(1, 3, 8, 8), torch.zeros(2, 4, 8, 8), 0.1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        integrate_events(torch.rand(3, 8, 8), torch.zeros(4, 8, 8), 0.1)


def test_event_integrator_runs_through_focus_search() -> None:
    """A flat grey image whose checkerboard pixels get ON events in the sweep's first half and OFF
    events in the second: integration is sharpest (most varied) at mid-sweep, where the search lands."""
    size, duration_us, per_pixel = 16, 1_000_000, 5
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    checker = ((xs + ys) % 2 == 0).flatten()
    x, y = xs.flatten()[checker], ys.flatten()[checker]
    ts, xx, yy, pp = [], [], [], []
    for k in range(per_pixel):
        for t_us, polarity in ((100_000 + 90_000 * k, 1), (540_000 + 90_000 * k, -1)):
            ts.append(torch.full_like(x, t_us))
            xx.append(x)
            yy.append(y)
            pp.append(torch.full_like(x, polarity))
    t = torch.cat(ts)
    order = torch.argsort(t, stable=True)
    events = EventStream.from_arrays(t[order], torch.cat(xx)[order], torch.cat(yy)[order], torch.cat(pp)[order],
                                     width=size, height=size)
    stack = EventFocalStack.from_events(events, 0, duration_us, num_fine_bins=64)
    image = torch.full((3, size, size), 0.3)
    refocus = EventIntegrator(0.1)  # peak 0.3·e^0.5 ≈ 0.49: no clipping at 1
    result = focus_search(image, 0.0, stack, refocus, SearchConfig(num_bins=4, grid_size=2, min_events=0))
    assert result.times_us.shape == (2, 2)
    assert result.num_refocus_calls > 0
    # variance rises while ON events arrive (until 460 ms) and falls once OFF events start (540 ms);
    # in between it is flat, so any time there (± one 15.6 ms fine bin) is a right answer
    assert bool(((result.times_us > 440_000) & (result.times_us < 560_000)).all()), result.times_us


def linear_response_pair(c_true: float, seed: int, size: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sRGB image, events, sRGB target) of a photoreceptor: log(linear light + DARK_OFFSET) moves by c per event."""
    generator = torch.Generator().manual_seed(seed)
    image = 0.35 + 0.3 * torch.rand(3, size, size, generator=generator)
    events = torch.randint(-1, 2, (4, size, size), generator=generator).float()
    linear = (srgb_decode(image) + DARK_OFFSET) * torch.exp(c_true * events.sum(dim=0)) - DARK_OFFSET
    assert float(linear.min()) >= 0.0 and float(linear.max()) <= 1.0
    return image, events, srgb_encode(linear)


def test_linear_response_integrates_in_the_log_of_linear_light() -> None:
    """A linear sensor's events are exact in its own log and not in the frame's: the fit finds its contrast
    only there, and integration there reproduces the frames the gamma log misses."""
    pairs = [linear_response_pair(0.15, seed) for seed in range(3)]
    fitted = fit_contrast(pairs, response="linear")
    assert fitted == pytest.approx(0.15, rel=0.02)
    image, events, target = pairs[0]
    linear = integrate_events(image[None], events[None], fitted, response="linear")[0]
    torch.testing.assert_close(linear, target, atol=2e-3, rtol=0)
    gamma_fit = fit_contrast(pairs)
    gamma = integrate_events(image[None], events[None], gamma_fit)[0]
    assert float((gamma - target).abs().max()) > 10 * float((linear - target).abs().max())
    assert EventIntegrator(fitted, response="linear")(image[None], events[None]).equal(linear[None])


def test_unknown_event_response_is_refused() -> None:
    image, events, _ = ideal_pair(0.1, 0)
    with pytest.raises(ValueError, match=r"event response must be one of \['gamma', 'linear'\], got 'log'"):
        integrate_events(image[None], events[None], 0.1, response="log")
