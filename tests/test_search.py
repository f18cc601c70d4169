"""Golden-section focus search against stand-in refocus functions whose sharpness peaks are known."""

from __future__ import annotations

import math

import kornia
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from evfocus.events.focal_stack import EventFocalStack, cumulative_segments, interpolate_cumulative
from evfocus.events.stream import EventStream
from evfocus.pipeline.search import GOLDEN_RATIO, PatchGrid, SearchConfig, focus_search, patch_sharpness

HEIGHT, WIDTH, GRID, MARGIN = 36, 44, 4, 3
NUM_FINE_BINS, NUM_BINS = 64, 4
T_START_US, DURATION_US = 1_000_000.0, 1_000_000.0
T_END_US = T_START_US + DURATION_US
IMAGE_TIME_US = T_START_US + 300_000.0
US_PER_NODE = DURATION_US / NUM_FINE_BINS


def ramp_stack(counts: Tensor | None = None) -> EventFocalStack:
    """Every pixel's cumulative signed count rises by one per fine bin, so S(t) encodes t exactly;
    ``counts`` stand in for the per-patch event counts."""
    ramp = torch.arange(NUM_FINE_BINS + 1, dtype=torch.float32)
    return EventFocalStack(ramp[:, None, None].expand(-1, HEIGHT, WIDTH).contiguous(), int(T_START_US), int(T_END_US),
                           patch_counts=counts)


def scene(peaks_us: Tensor, seed: int = 0) -> Tensor:
    """Channel 0: texture; channel 1: each patch's peak time (as a sweep fraction); channel 2: zeros."""
    texture = torch.rand(HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))
    code = torch.zeros(HEIGHT, WIDTH)
    for (top, left, h, w), peak in zip(PatchGrid.build(HEIGHT, WIDTH, GRID, 0).boxes.tolist(), peaks_us,
                                       strict=True):
        code[top:top + h, left:left + w] = (peak - T_START_US) / DURATION_US
    return torch.stack([texture, code, torch.zeros_like(code)])


def decode(images: Tensor, events: Tensor) -> tuple[Tensor, Tensor]:
    """(probe time, patch peak time) per crop, read at the crop centre (always inside its patch)."""
    h, w = images.shape[-2:]
    t_us = IMAGE_TIME_US + events[:, :, h // 2, w // 2].sum(dim=1).double() * US_PER_NODE
    peak_us = T_START_US + images[:, 1, h // 2, w // 2].double() * DURATION_US
    return t_us, peak_us


def contrast_refocus(images: Tensor, events: Tensor) -> Tensor:
    """Texture contrast falls off as a Lorentzian of |t - t*|: variance and gradient peak at t*."""
    t_us, peak_us = decode(images, events)
    contrast = (1.0 / (1.0 + ((t_us - peak_us) / (0.1 * DURATION_US)) ** 2)).float()
    grey = 0.5 + (images[:, :1] - 0.5) * contrast[:, None, None, None]
    return grey.expand_as(images)


def blur_refocus(images: Tensor, events: Tensor) -> Tensor:
    """Gaussian defocus growing linearly with |t - t*| (a camera-like stand-in)."""
    t_us, peak_us = decode(images, events)
    sigma = (0.6 + 6.0 * (t_us - peak_us).abs() / DURATION_US).float()
    blurred = kornia.filters.gaussian_blur2d(images[:, :1], (11, 11), torch.stack([sigma, sigma], dim=1))
    return blurred.expand_as(images)


def random_peaks(seed: int) -> Tensor:
    fraction = torch.rand(GRID * GRID, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return T_START_US + (0.05 + 0.9 * fraction) * DURATION_US


def uniform_counts(total: float = 10_000.0) -> Tensor:
    return torch.linspace(0, total, NUM_FINE_BINS + 1, dtype=torch.float64).expand(GRID * GRID, -1).clone()


def config(**overrides) -> SearchConfig:
    return SearchConfig(num_bins=NUM_BINS, grid_size=GRID, margin_px=MARGIN, **overrides)


# ---------------------------------------------------------------------------------------- helpers
@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_interpolate_cumulative_matches_per_pixel_interp(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    cumulative = torch.randn(3, 9, 2, 3, generator=gen).cumsum(dim=1)
    node_pos = torch.rand(5, 4, generator=gen, dtype=torch.float64) * 12 - 2  # some outside [0, 8]
    crop_index = torch.randint(0, 3, (5,), generator=gen)
    got = interpolate_cumulative(cumulative, node_pos, crop_index)
    nodes = np.arange(9)
    for m in range(5):
        for y in range(2):
            for x in range(3):
                expected = np.interp(node_pos[m].numpy(), nodes, cumulative[crop_index[m], :, y, x].numpy())
                np.testing.assert_allclose(got[m, :, y, x].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_segments_telescope_and_flip_sign_backwards() -> None:
    gen = torch.Generator().manual_seed(1)
    cumulative = torch.randn(1, NUM_FINE_BINS + 1, 3, 3, generator=gen).cumsum(dim=1)
    t0 = torch.tensor([T_START_US + 0.2 * DURATION_US, T_START_US + 0.7 * DURATION_US], dtype=torch.float64)
    t1 = torch.tensor([T_START_US + 0.9 * DURATION_US, T_START_US + 0.1 * DURATION_US], dtype=torch.float64)
    forward = cumulative_segments(cumulative, T_START_US, T_END_US, t0, t1, 5)
    backward = cumulative_segments(cumulative, T_START_US, T_END_US, t1, t0, 5)
    assert forward.shape == (2, 5, 3, 3)
    torch.testing.assert_close(forward, -backward.flip(1), rtol=1e-5, atol=1e-5)
    ends = interpolate_cumulative(cumulative, torch.stack([t0, t1], dim=1).sub(T_START_US) / US_PER_NODE)
    torch.testing.assert_close(forward.sum(dim=1), ends[:, 1] - ends[:, 0], rtol=1e-5, atol=1e-5)


def test_patch_crops_tile_the_image_exactly_once() -> None:
    grid = PatchGrid.build(HEIGHT, WIDTH, GRID, MARGIN)
    image = torch.arange(HEIGHT * WIDTH, dtype=torch.float32).reshape(1, HEIGHT, WIDTH)
    crops, mask = grid.crop(image, "zeros"), grid.interior_mask()
    coverage = torch.zeros(HEIGHT * WIDTH)
    coverage.index_add_(0, crops[mask.bool()].long(), torch.ones(int(mask.sum())))
    assert torch.equal(coverage, torch.ones(HEIGHT * WIDTH))
    top, left = grid.boxes[5, :2].tolist()  # an inner patch: its crop is the image around it
    torch.testing.assert_close(crops[5, 0], image[0, top - MARGIN:top - MARGIN + grid.crop_size[0],
                                                  left - MARGIN:left - MARGIN + grid.crop_size[1]])


def test_patch_counts_match_a_loop() -> None:
    gen = torch.Generator().manual_seed(2)
    n = 3000
    on_nodes = T_START_US + torch.arange(NUM_FINE_BINS + 1) * US_PER_NODE  # edge cases, t_end included
    spread = torch.randint(int(T_START_US) - 50_000, int(T_END_US) + 50_000, (n - 65,), generator=gen)
    t_us = torch.cat([spread, on_nodes.long()]).sort()[0]
    x, y = torch.randint(0, WIDTH, (n,), generator=gen), torch.randint(0, HEIGHT, (n,), generator=gen)
    p = torch.randint(0, 2, (n,), generator=gen) * 2 - 1
    events = EventStream.from_arrays(t_us, x, y, p, WIDTH, HEIGHT).time_slice(int(T_START_US), int(T_END_US) + 1)
    counts = EventFocalStack.from_events(events, int(T_START_US), int(T_END_US), NUM_FINE_BINS, GRID).patch_counts
    boxes = PatchGrid.build(HEIGHT, WIDTH, GRID, 0).boxes.tolist()
    nodes_us = T_START_US + np.arange(NUM_FINE_BINS + 1) * US_PER_NODE
    for patch, (top, left, h, w) in enumerate(boxes):
        inside = (y >= top) & (y < top + h) & (x >= left) & (x < left + w) & (t_us >= T_START_US)
        expected = [(inside & (t_us < node)).sum().item() for node in nodes_us[:-1]]
        expected.append((inside & (t_us <= T_END_US)).sum().item())
        assert counts[patch].tolist() == expected


def random_on_events(n: int, seed: int) -> EventStream:
    gen = torch.Generator().manual_seed(seed)
    t_us = torch.randint(int(T_START_US), int(T_END_US) + 1, (n,), generator=gen).sort()[0]
    x, y = torch.randint(0, WIDTH, (n,), generator=gen), torch.randint(0, HEIGHT, (n,), generator=gen)
    return EventStream.from_arrays(t_us, x, y, torch.ones(n), WIDTH, HEIGHT)


def test_helpers_agree_with_the_event_focal_stack() -> None:
    """With ON events only, a patch's summed signed cumulative is its unsigned count curve."""
    events = random_on_events(5000, seed=8)
    efs = EventFocalStack.from_events(events, int(T_START_US), int(T_END_US), NUM_FINE_BINS, count_grid=GRID)
    counts = efs.patch_counts
    crops = PatchGrid.build(HEIGHT, WIDTH, GRID, 0).crop(efs.cumulative, "zeros")
    torch.testing.assert_close(crops.sum(dim=(2, 3)).double(), counts)
    window = (5, 7, 11, 13)
    t0 = torch.tensor([IMAGE_TIME_US, IMAGE_TIME_US], dtype=torch.float64)
    t1 = torch.tensor([T_START_US + 12_345.0, T_END_US - 6_789.0], dtype=torch.float64)
    top, left, h, w = window
    ours = cumulative_segments(efs.cumulative[None, :, top:top + h, left:left + w], T_START_US, T_END_US,
                               t0, t1, NUM_BINS)
    torch.testing.assert_close(ours, efs.segments(t0, t1, NUM_BINS, window))


def test_sharpness_ignores_the_context_margin() -> None:
    grid = PatchGrid.build(HEIGHT, WIDTH, GRID, MARGIN)
    crops = torch.full((GRID * GRID, 3, *grid.crop_size), 0.5)
    mask = grid.interior_mask()
    crops[:, :, :MARGIN] = torch.rand(GRID * GRID, 3, MARGIN, grid.crop_size[1])  # texture only in margin
    assert patch_sharpness(crops, mask, "variance").abs().max() < 1e-10
    crops[:, :, -MARGIN - 2:] = 0.0  # an edge a Sobel kernel sees from the interior
    assert (patch_sharpness(crops, mask, "gradient") > 0).all()


# ---------------------------------------------------------------------------------------- search
def golden_iterations(range_: float, tolerance: float) -> int:
    return math.ceil(math.log(range_ / tolerance) / math.log(GOLDEN_RATIO))


@pytest.mark.parametrize("sharpness", ["variance", "gradient"])
def test_batched_time_search_finds_every_peak_with_few_calls(sharpness: str) -> None:
    peaks = random_peaks(seed=3)
    cfg = config(sharpness=sharpness, tolerance_us=5_000.0, min_events=0)
    result = focus_search(scene(peaks), IMAGE_TIME_US, ramp_stack(), contrast_refocus, cfg)
    assert result.times_us.shape == (GRID, GRID)
    assert (result.times_us.flatten() - peaks).abs().max() <= cfg.tolerance_us / 2 + 1.0
    assert result.num_refocus_calls <= golden_iterations(DURATION_US, cfg.tolerance_us) + 2
    assert not result.low_event_mask.any()


def test_reference_mode_agrees_and_costs_twice_per_patch() -> None:
    peaks = random_peaks(seed=4)
    cfg = config(tolerance_us=20_000.0, min_events=0)
    image = scene(peaks)
    batched = focus_search(image, IMAGE_TIME_US, ramp_stack(), contrast_refocus, cfg)
    reference = focus_search(image, IMAGE_TIME_US, ramp_stack(), contrast_refocus, cfg, mode="reference")
    assert (reference.times_us.flatten() - peaks).abs().max() <= cfg.tolerance_us / 2 + 1.0
    torch.testing.assert_close(reference.times_us, batched.times_us, rtol=0, atol=10.0)
    iterations = golden_iterations(DURATION_US, cfg.tolerance_us)
    assert abs(reference.num_refocus_calls - 2 * iterations * GRID * GRID) <= 2 * GRID * GRID
    assert batched.num_refocus_calls * GRID * GRID < reference.num_refocus_calls
    assert reference.probes_t_us.shape[1] == 2 * (batched.probes_t_us.shape[1] - 1)


def test_capping_crops_per_call_changes_the_calls_not_the_answer() -> None:
    peaks = random_peaks(seed=6)
    image = scene(peaks)
    whole = focus_search(image, IMAGE_TIME_US, ramp_stack(), contrast_refocus, config(min_events=0))
    sizes = []

    def recording_refocus(images, events):
        sizes.append(images.shape[0])
        return contrast_refocus(images, events)

    capped = focus_search(image, IMAGE_TIME_US, ramp_stack(), recording_refocus,
                          config(min_events=0, max_crops_per_call=5))
    assert torch.equal(capped.times_us, whole.times_us)
    assert max(sizes) == 5 and capped.num_refocus_calls == len(sizes) > whole.num_refocus_calls


def test_reduced_resolution_probes_see_averaged_crops_and_find_the_peaks() -> None:
    peaks = random_peaks(seed=8)
    sizes = []

    def recording_refocus(images, events):
        sizes.append(tuple(images.shape[-2:]))
        return contrast_refocus(images, events)

    cfg = config(min_events=0, tolerance_us=5_000.0, probe_scale=2)
    result = focus_search(scene(peaks), IMAGE_TIME_US, ramp_stack(), recording_refocus, cfg)
    crop_h, crop_w = PatchGrid.build(HEIGHT, WIDTH, GRID, MARGIN).crop_size
    assert set(sizes) == {((crop_h + 1) // 2, (crop_w + 1) // 2)}
    assert (result.times_us.flatten() - peaks).abs().max() <= cfg.tolerance_us / 2 + 1.0


def test_a_refocus_net_with_an_image_encoder_is_fed_cached_features() -> None:
    from evfocus.models.refocus import EvRefocusNet

    torch.manual_seed(0)
    net = EvRefocusNet(num_bins=4, width=8, depth=2, event_gain_init=0.2).eval()
    torch.nn.init.normal_(net.to_residual.weight, std=0.05)
    encoded = []
    net.encode_image = lambda images: encoded.append(len(images)) or EvRefocusNet.encode_image(net, images)
    image = scene(random_peaks(seed=7))
    cfg = config(min_events=0, max_crops_per_call=6)
    cached = focus_search(image, IMAGE_TIME_US, ramp_stack(), net, cfg)
    plain = focus_search(image, IMAGE_TIME_US, ramp_stack(), lambda i, e: net(i, e), cfg)
    assert sum(encoded) == GRID * GRID  # every crop encoded once, not once per probe
    torch.testing.assert_close(cached.times_us, plain.times_us)
    torch.testing.assert_close(cached.probes_sharpness, plain.probes_sharpness, equal_nan=True)


def test_blurred_stand_in_is_found_with_gradient_energy() -> None:
    peaks = random_peaks(seed=5)
    cfg = config(sharpness="gradient", tolerance_us=10_000.0, min_events=0)
    result = focus_search(scene(peaks), IMAGE_TIME_US, ramp_stack(), blur_refocus, cfg)
    assert (result.times_us.flatten() - peaks).abs().max() <= cfg.tolerance_us / 2 + 1.0
    probes = result.probes_sharpness[~result.probes_sharpness.isnan()]
    assert probes.numel() == GRID * GRID * result.num_refocus_calls


@pytest.mark.parametrize("mode", ["batched", "reference"])
def test_event_domain_brackets_the_peak_in_events(mode: str) -> None:
    peaks = random_peaks(seed=6)
    totals = torch.linspace(20_000, 80_000, GRID * GRID, dtype=torch.float64)
    fraction = torch.linspace(0, 1, NUM_FINE_BINS + 1, dtype=torch.float64)
    counts = totals[:, None] * fraction**2  # events arrive ever faster: the two domains differ
    cfg = config(domain="events", tolerance_events=500.0, min_events=2_000)
    result = focus_search(scene(peaks), IMAGE_TIME_US, ramp_stack(counts), contrast_refocus, cfg, mode)
    nodes_us = T_START_US + np.arange(NUM_FINE_BINS + 1) * US_PER_NODE
    for patch in range(GRID * GRID):
        def count_at(t_us: float, patch: int = patch) -> float:
            return float(np.interp(t_us, nodes_us, counts[patch].numpy()))
        found_us = float(result.times_us.flatten()[patch])
        assert abs(count_at(found_us) - count_at(float(peaks[patch]))) <= cfg.tolerance_events / 2 + 1e-6
    if mode == "batched":  # patches with more events need more iterations; calls follow the largest
        assert result.num_refocus_calls <= golden_iterations(float(totals.max()), cfg.tolerance_events) + 2


def test_low_event_patches_keep_the_image_time() -> None:
    counts = uniform_counts()
    quiet = torch.tensor([0, 7, 15])
    counts[quiet] = torch.linspace(0, 1_999, NUM_FINE_BINS + 1, dtype=torch.float64)
    cfg = config(min_events=2_000)
    result = focus_search(scene(random_peaks(7)), IMAGE_TIME_US, ramp_stack(counts), contrast_refocus, cfg)
    low = result.low_event_mask.flatten()
    assert low.nonzero()[:, 0].tolist() == quiet.tolist()
    assert (result.times_us.flatten()[low] == IMAGE_TIME_US).all()
    assert result.probes_t_us[low].isnan().all() and not result.probes_t_us[~low].isnan().all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grid_size": 40}, "does not fit"),
        ({"tolerance_us": 0.0}, "tolerance_us must be positive"),
        ({"tolerance_events": -1.0}, "tolerance_events must be positive"),
        ({"domain": "frames"}, "domain"),
    ],
)
def test_bad_configuration_raises(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cfg = SearchConfig(**{"num_bins": NUM_BINS, "grid_size": GRID, "min_events": 0, **kwargs})
        focus_search(scene(random_peaks(0)), IMAGE_TIME_US, ramp_stack(), contrast_refocus, cfg)


def test_bad_inputs_raise() -> None:
    image = scene(random_peaks(0))
    with pytest.raises(ValueError, match="patch_counts"):
        focus_search(image, IMAGE_TIME_US, ramp_stack(), contrast_refocus, config(domain="events"))
    with pytest.raises(ValueError, match="outside the sweep"):
        focus_search(image, T_START_US - 1, ramp_stack(), contrast_refocus, config(min_events=0))
    with pytest.raises(ValueError, match=r"\(P, K\+1\)"):
        focus_search(image, IMAGE_TIME_US, ramp_stack(uniform_counts()[:3]), contrast_refocus, config())
    with pytest.raises(ValueError, match="refocus returned shape"):
        focus_search(image, IMAGE_TIME_US, ramp_stack(), lambda im, ev: im[:, :1], config(min_events=0))
