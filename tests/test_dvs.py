"""Event models: samplers against analytic laws, simulators against physical invariants."""

from __future__ import annotations

import math
from dataclasses import replace

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import shared_samples
from scipy import stats

from evfocus.sim.dvs import (
    DAVIS240,
    DAVIS346,
    IdealParams,
    VoltmeterParams,
    gamblers_ruin_p_up,
    refractory_keep,
    sample_inverse_gaussian,
    sample_levy,
    sample_voltmeter_params,
    simulate_ideal,
    simulate_voltmeter,
    voltmeter_drift_and_variance,
)

NO_MISMATCH = IdealParams(threshold=0.2, threshold_sigma=0.0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ramp(start: float, stop: float, num_frames: int, duration_us: int, size: int = 16) -> tuple:
    """A uniform image whose value changes linearly in time from ``start`` to ``stop``."""
    values = torch.linspace(start, stop, num_frames, dtype=torch.float64)
    frames = values.view(-1, 1, 1).expand(num_frames, size, size).to(torch.float32).contiguous()
    return frames, torch.linspace(0, duration_us, num_frames, dtype=torch.float64).round().long()


def textured_sweep(num_frames: int = 24, size: int = 32, seed: int = 0) -> tuple:
    """Random texture blurred less then more (a focus sweep through it), values in [0, 1]."""
    rng = np.random.default_rng(seed)
    texture = torch.from_numpy(rng.random((size, size))).float()
    frames = []
    for k in range(num_frames):
        weight = abs(k / (num_frames - 1) - 0.5) * 2  # 1 → 0 → 1: blurred, sharp, blurred
        smooth = 0.25 * (texture.roll(1, 0) + texture.roll(-1, 0) + texture.roll(1, 1) + texture.roll(-1, 1))
        frames.append((1 - weight) * texture + weight * smooth)
    times_us = torch.linspace(0, 500_000, num_frames).round().long()
    return torch.stack(frames), times_us


def expected_voltage(frames: torch.Tensor, times_us: torch.Tensor, p: VoltmeterParams) -> np.ndarray:
    """Σ μ·Δt per pixel from the drift formula in ``VoltmeterParams``' docstring (NumPy, float64)."""
    grey = frames.double().numpy()
    dt = np.diff(times_us.numpy()).astype(np.float64)[:, None, None]
    mean = 0.5 * (grey[1:] + grey[:-1])
    drift = p.k1 * (grey[1:] - grey[:-1]) / dt / (mean + p.k2) + p.k4 + p.k5 * mean
    return (drift * dt).sum(0)


def net_polarity(events, height: int, width: int) -> np.ndarray:
    net = np.zeros(height * width)
    np.add.at(net, (events.y * width + events.x).numpy(), events.p.numpy().astype(np.float64))
    return net.reshape(height, width)


# ---------------------------------------------------------------------------- samplers
@pytest.mark.parametrize(("mean", "shape"), [(3.0, 2.0), (1.0, 50.0), (0.01, 1e-3)])
def test_inverse_gaussian_mean_variance_and_law(mean: float, shape: float) -> None:
    n = 200_000
    x = sample_inverse_gaussian(torch.full((n,), mean, dtype=torch.float64),
                                torch.tensor(shape, dtype=torch.float64), gen(1)).numpy()
    assert np.all(x > 0)
    var = mean**3 / shape
    excess_kurtosis = 15 * mean / shape
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / n)
    assert abs(x.var() - var) < 5 * var * math.sqrt((2 + excess_kurtosis) / n)
    ks = stats.kstest(x, stats.invgauss(mu=mean / shape, scale=shape).cdf)
    assert ks.pvalue > 1e-3


def test_inverse_gaussian_extreme_parameters_stay_finite() -> None:
    """Huge mean (near-zero drift) and huge shape (near-deterministic) must not overflow."""
    mean = torch.tensor([1e12, 1.0, 1e-6], dtype=torch.float32).repeat(10_000)
    shape = torch.tensor([1.0, 1e12, 1e-6], dtype=torch.float32).repeat(10_000)
    x = sample_inverse_gaussian(mean, shape, gen(2))
    assert torch.isfinite(x).all() and (x > 0).all()
    deterministic = x[1::3].double()
    assert torch.allclose(deterministic, torch.ones_like(deterministic), rtol=1e-3)


def test_levy_law() -> None:
    scale = 2.5
    x = sample_levy(torch.full((100_000,), scale, dtype=torch.float64), gen(3)).numpy()
    assert np.all(x > 0)
    assert stats.kstest(x, stats.levy(scale=scale).cdf).pvalue > 1e-3


def naive_p_up(mu: float, sigma2: float, a: float, b: float) -> float:
    """The textbook gambler's-ruin formula, fine where nothing overflows (float64)."""
    if mu == 0:
        return b / (a + b)
    grow, shrink = math.exp(2 * mu * b / sigma2), math.exp(-2 * mu * a / sigma2)
    return (grow - 1) / (grow - shrink)


def p_up_torch(mu: float, sigma2: float, a: float, b: float) -> float:
    as64 = [torch.tensor([v], dtype=torch.float64) for v in (mu, sigma2, a, b)]
    return float(gamblers_ruin_p_up(*as64))


@pytest.mark.parametrize(("mu", "a", "b"), [(0.8, 0.6, 1.4), (-0.5, 1.0, 1.0), (0.3, 1.5, 0.5)])
def test_p_up_matches_random_walk(mu: float, a: float, b: float) -> None:
    """Monte-Carlo of a discretised drifted random walk between -b and +a (σ = 1).

    A walk with steps of dt overshoots a barrier by 0.5826·√dt on average, so it behaves as
    continuous motion with barriers moved out by that much (Broadie–Glasserman–Kou).
    """
    rng = np.random.default_rng(4)
    n, dt = 10_000, 1e-3
    x = np.zeros(n)
    hit_up = np.zeros(n, dtype=bool)
    alive = np.arange(n)
    while alive.size:
        x[alive] += mu * dt + math.sqrt(dt) * rng.standard_normal(alive.size)
        up, down = x[alive] >= a, x[alive] <= -b
        hit_up[alive[up]] = True
        alive = alive[~(up | down)]
    shift = 0.5826 * math.sqrt(dt)
    assert abs(p_up_torch(mu, 1.0, a + shift, b + shift) - hit_up.mean()) < 4 * math.sqrt(0.25 / n)
    assert abs(p_up_torch(mu, 1.0, a, b) - naive_p_up(mu, 1.0, a, b)) < 1e-12


def test_p_up_is_stable_for_real_sensor_ratios() -> None:
    """|μ|/σ² ~ 1e5..1e9 overflows exp; the result must still be the right limit and finite."""
    mu = torch.tensor([1e-4, -1e-4, 1e-7, 0.0, 0.0, 1e-3])
    sigma2 = torch.tensor([1e-10, 1e-10, 1e-10, 1e-10, 1e-10, 1e-12])
    dist_up = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.4, 1e-6])
    dist_down = 2.0 - dist_up
    p = gamblers_ruin_p_up(mu, sigma2, dist_up, dist_down)
    assert torch.isfinite(p).all()
    expected = [1.0, 0.0, 1.0, 0.5, 1.6 / 2.0, 1.0]  # μ = 0: the driftless B/(A+B)
    assert p.tolist() == pytest.approx(expected, abs=1e-6)
    moderate = gamblers_ruin_p_up(torch.tensor([2e-9]), torch.tensor([1e-8]), torch.tensor([0.7]),
                                  torch.tensor([1.3]))
    assert float(moderate) == pytest.approx(naive_p_up(2e-9, 1e-8, 0.7, 1.3), rel=1e-5)


# ---------------------------------------------------------------------------- voltmeter
@pytest.mark.parametrize(("start", "stop", "on_fraction"), [(50.0, 200.0, 0.95), (200.0, 50.0, 0.05)])
def test_voltmeter_brightening_gives_on_events(start: float, stop: float, on_fraction: float) -> None:
    frames, times_us = ramp(start, stop, 21, 200_000)
    events = simulate_voltmeter(frames, times_us, DAVIS346, gen())
    fraction = float((events.p > 0).double().mean())
    assert len(events) > 16 * 16 * 4
    assert fraction > on_fraction if start < stop else fraction < on_fraction


@pytest.mark.parametrize(("start", "stop", "num_frames", "duration_us"),
                         [(50.0, 200.0, 11, 200_000), (50.0, 200.0, 101, 200_000),
                          (220.0, 30.0, 31, 100_000), (128.0, 128.0, 5, 2_000_000)])
def test_voltmeter_net_polarity_follows_integrated_drift(start, stop, num_frames, duration_us) -> None:
    """Drift-dominated pixels: Σp equals ∫μ dt up to the residual voltage (|v| < 1).

    With 101 frames each interval moves the voltage by only ~0.06 threshold, so this also
    checks that the residual voltage is carried across frames (and that the frame rate
    does not change the count); the static case checks the leak drift k4 + k5·L.
    """
    frames, times_us = ramp(start, stop, num_frames, duration_us)
    events = simulate_voltmeter(frames, times_us, DAVIS346, gen(5))
    net = net_polarity(events, 16, 16)
    expected = expected_voltage(frames, times_us, DAVIS346)
    assert abs(net.mean() - expected.mean()) < 1.0
    assert np.abs(net - expected).max() < 2.0


def test_voltmeter_more_contrast_more_events() -> None:
    low = simulate_voltmeter(*ramp(100.0, 120.0, 21, 200_000), DAVIS346, gen(6))
    high = simulate_voltmeter(*ramp(100.0, 200.0, 21, 200_000), DAVIS346, gen(6))
    assert len(high) > 2 * len(low)


def test_voltmeter_more_sensitive_sensor_more_events() -> None:
    frames, times_us = textured_sweep()
    base = simulate_voltmeter(frames * 255, times_us, DAVIS346, gen(7))
    k1x4 = VoltmeterParams(4 * DAVIS346.k1, *(getattr(DAVIS346, k) for k in ("k2", "k3", "k4", "k5", "k6")))
    sensitive = simulate_voltmeter(frames * 255, times_us, k1x4, gen(7))
    assert len(sensitive) > 2.5 * len(base)


def test_voltmeter_seed_reproducible_and_stream_contract() -> None:
    frames, times_us = textured_sweep()
    frames = frames * 255
    first = simulate_voltmeter(frames, times_us, DAVIS240, gen(8))
    again = simulate_voltmeter(frames, times_us, DAVIS240, gen(8))
    other = simulate_voltmeter(frames, times_us, DAVIS240, gen(9))
    assert len(first) > 100
    for name in ("t_us", "x", "y", "p"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert len(first) != len(other) or not torch.equal(first.t_us, other.t_us)
    assert first.source == "simulator:voltmeter"
    assert (first.width, first.height) == (32, 32)
    assert bool((first.t_us[1:] >= first.t_us[:-1]).all())
    assert int(first.t_us[0]) >= int(times_us[0]) and int(first.t_us[-1]) <= int(times_us[-1])
    assert set(first.p.tolist()) <= {-1, 1}


def test_voltmeter_event_times_follow_the_drift() -> None:
    """A strong constant drift fires nearly periodically at 1/μ, starting near 1/μ."""
    frames, times_us = ramp(20.0, 220.0, 2, 100_000, size=4)
    events = simulate_voltmeter(frames, times_us, DAVIS346, gen(10))
    drift = float(expected_voltage(frames, times_us, DAVIS346).mean()) / 100_000
    pixel0 = events.t_us[(events.x == 0) & (events.y == 0)].double()
    gaps = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), pixel0]))
    assert torch.allclose(gaps, torch.full_like(gaps, 1 / drift), rtol=0.05)


def test_voltmeter_zero_drift_uses_levy_times_and_is_symmetric() -> None:
    """No leak and a static scene: μ = 0 exactly, so polarity is a fair coin (Lévy first passage)."""
    noisy = VoltmeterParams(DAVIS346.k1, DAVIS346.k2, 1e-2, 0.0, 0.0, DAVIS346.k6)
    frames = torch.full((11, 32, 32), 128.0)
    times_us = torch.linspace(0, 10_000_000, 11).round().long()
    events = simulate_voltmeter(frames, times_us, noisy, gen(13))
    assert len(events) > 1000
    assert abs(float((events.p > 0).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / len(events))


def test_voltmeter_first_crossing_law_is_the_same_for_both_polarities() -> None:
    """From rest, the side is a gambler's-ruin coin and the time an IG draw independent of it.

    The simulator reuses one uniform for both choices (rescaled within the chosen side);
    were the reuse wrong, the side taken against the drift would get biased (longer)
    times. A moderate drift (P_toward ≈ 0.7) and a 1 s interval: each pixel's first event,
    split by polarity, must follow IG(1/|μ|, 1/σ²) truncated at the interval, by a KS test.
    """
    params = VoltmeterParams(DAVIS346.k1, DAVIS346.k2, 0.02, 1e-6, 0.0, DAVIS346.k6)
    size, dt_us = 200, 1_000_000
    frames = torch.full((2, size, size), 128.0)
    events = simulate_voltmeter(frames, torch.tensor([0, dt_us]), params, gen(21))
    pixel = (events.y * size + events.x).numpy()
    _, first = np.unique(pixel, return_index=True)  # events are time-sorted: each pixel's first
    t_us, polarity = events.t_us.numpy()[first].astype(np.float64), events.p.numpy()[first]
    drift, sigma2 = (float(v[0, 0]) for v in voltmeter_drift_and_variance(frames[0], frames[1], dt_us, params))
    law = stats.invgauss(mu=sigma2 / drift, scale=1.0 / sigma2)  # mean 1/μ, shape 1/σ² (unit distance)
    p_toward = 1.0 / (1.0 + math.exp(-2.0 * drift / sigma2))
    fired = law.cdf(dt_us)
    on_fraction = float((polarity > 0).mean())
    assert on_fraction == pytest.approx(p_toward, abs=4 * math.sqrt(0.25 / len(first)))
    assert len(first) == pytest.approx(size * size * fired, rel=0.03)
    for side in (1, -1):
        times = t_us[polarity == side]
        assert len(times) > 2000
        assert stats.kstest(times, lambda t: law.cdf(t) / fired).pvalue > 1e-3, side


def test_voltmeter_params_sampling() -> None:
    assert sample_voltmeter_params(gen(), 0.0, (1.0, 1.0)) == DAVIS346
    for seed in range(20):
        p = sample_voltmeter_params(gen(seed), 0.3, (2.0, 5.0))
        for name in ("k2", "k3", "k4", "k5", "k6"):
            ratio = getattr(p, name) / getattr(DAVIS346, name)
            assert 1 / 1.3 - 1e-9 <= ratio <= 1.3 + 1e-9
        assert 2.0 / 1.3 - 1e-9 <= p.k1 / DAVIS346.k1 <= 5.0 * 1.3 + 1e-9
    assert sample_voltmeter_params(gen(1), 0.3) != sample_voltmeter_params(gen(2), 0.3)
    with pytest.raises(ValueError, match="spread"):
        sample_voltmeter_params(gen(), -0.1)
    with pytest.raises(ValueError, match="k1_scale_range"):
        sample_voltmeter_params(gen(), 0.1, (3.0, 1.0))
    with pytest.raises(ValueError, match="k6"):
        VoltmeterParams(5.0, 20.0, 1e-4, 1e-7, 5e-9, 0.0)


# ---------------------------------------------------------------------------- ideal
def test_ideal_brightening_gives_only_on_events() -> None:
    frames, times_us = ramp(0.05, 0.8, 11, 100_000)
    up = simulate_ideal(frames, times_us, IdealParams(), gen())
    down = simulate_ideal(frames.flip(0), times_us, IdealParams(), gen())
    assert len(up) > 16 * 16 * 5 and len(down) > 16 * 16 * 5
    assert bool((up.p == 1).all()) and bool((down.p == -1).all())


FRAMES_3X3 = st.integers(2, 6).flatmap(lambda f: st.lists(st.floats(0.0, 1.0), min_size=9 * f,
                                                          max_size=9 * f))


@settings(max_examples=25, deadline=None)
@given(values=FRAMES_3X3,
       threshold=st.floats(0.05, 0.5), eps=st.sampled_from([1e-3, 1e-2]))
def test_ideal_sum_of_polarities_tracks_log_change(values: list[float], threshold: float, eps: float) -> None:
    frames = torch.tensor(values, dtype=torch.float32).view(-1, 3, 3)
    times_us = torch.arange(frames.shape[0], dtype=torch.int64) * 1000
    params = IdealParams(threshold=threshold, threshold_sigma=0.0, log_eps=eps)
    events = simulate_ideal(frames, times_us, params, gen())
    log_change = np.log(frames[-1].double().numpy() + eps) - np.log(frames[0].double().numpy() + eps)
    assert np.abs(net_polarity(events, 3, 3) * threshold - log_change).max() <= threshold * (1 + 1e-5)


def test_ideal_timestamps_interpolate_crossings() -> None:
    eps = 1e-3
    frames = torch.tensor([0.1, 0.1 * math.exp(0.9)]).view(2, 1, 1)
    times_us = torch.tensor([1_000, 91_000])
    events = simulate_ideal(frames, times_us, IdealParams(threshold=0.2, threshold_sigma=0.0, log_eps=eps),
                            gen())
    log_change = math.log(float(frames[1]) + eps) - math.log(0.1 + eps)
    expected = [1_000 + j * 0.2 / log_change * 90_000 for j in range(1, 5)]
    assert events.t_us.tolist() == pytest.approx(expected, abs=1.0)
    assert events.p.tolist() == [1, 1, 1, 1]


def test_ideal_static_scene_gives_no_events() -> None:
    frames, times_us = textured_sweep()
    static = frames[:1].expand(10, -1, -1).contiguous()
    assert len(simulate_ideal(static, times_us[:10], IdealParams(), gen())) == 0


def test_ideal_more_contrast_more_events() -> None:
    low = simulate_ideal(*ramp(0.4, 0.5, 11, 100_000), IdealParams(), gen(1))
    high = simulate_ideal(*ramp(0.2, 0.9, 11, 100_000), IdealParams(), gen(1))
    assert len(high) > 3 * max(len(low), 1)


def test_ideal_stream_contract_and_seed() -> None:
    frames, times_us = textured_sweep()
    first = simulate_ideal(frames, times_us, IdealParams(), gen(3))
    again = simulate_ideal(frames, times_us, IdealParams(), gen(3))
    assert len(first) > 100 and torch.equal(first.t_us, again.t_us) and torch.equal(first.x, again.x)
    assert first.source == "simulator:ideal"
    assert bool((first.t_us[1:] >= first.t_us[:-1]).all())
    assert int(first.t_us[0]) >= int(times_us[0]) and int(first.t_us[-1]) <= int(times_us[-1])
    assert set(first.p.tolist()) <= {-1, 1}


def test_ideal_threshold_mismatch_varies_per_pixel() -> None:
    """A uniform ramp gives the same count everywhere without mismatch, varied counts with it."""
    frames, times_us = ramp(0.05, 0.9, 11, 100_000)
    exact = net_polarity(simulate_ideal(frames, times_us, NO_MISMATCH, gen()), 16, 16)
    varied = net_polarity(simulate_ideal(frames, times_us, IdealParams(threshold_sigma=0.05), gen()), 16, 16)
    assert exact.min() == exact.max() == math.floor((math.log(0.9 + 1e-3) - math.log(0.05 + 1e-3)) / 0.2)
    assert varied.max() - varied.min() >= 2


def greedy_refractory(pixel: np.ndarray, t_us: np.ndarray, refractory_us: int) -> np.ndarray:
    """Plain per-event reference: keep an event iff its pixel's last kept event is ≥ R earlier."""
    last: dict[int, int] = {}
    keep = np.zeros(pixel.size, dtype=bool)
    for i in np.argsort(t_us, kind="stable"):
        p, t = int(pixel[i]), int(t_us[i])
        if p not in last or t - last[p] >= refractory_us:
            keep[i], last[p] = True, t
    return keep


def test_refractory_keep_matches_greedy_reference() -> None:
    rng = np.random.default_rng(11)
    pixel = rng.integers(0, 7, 2000)
    t_us = np.sort(rng.integers(0, 20_000, 2000))
    keep = refractory_keep(torch.from_numpy(pixel), torch.from_numpy(t_us), 300)
    np.testing.assert_array_equal(keep.numpy(), greedy_refractory(pixel, t_us, 300))


def test_ideal_refractory_period_respected() -> None:
    frames, times_us = ramp(0.02, 1.0, 3, 20_000, size=8)  # ~20 crossings per pixel in 20 ms
    params = IdealParams(threshold=0.2, threshold_sigma=0.0, refractory_us=2_000, shot_noise_hz=50.0)
    free = simulate_ideal(frames, times_us, IdealParams(threshold=0.2, threshold_sigma=0.0), gen())
    events = simulate_ideal(frames, times_us, params, gen())
    assert 0 < len(events) < len(free)
    pixel = (events.y * 8 + events.x).numpy()
    order = np.lexsort((events.t_us.numpy(), pixel))
    same = pixel[order][1:] == pixel[order][:-1]
    assert np.diff(events.t_us.numpy()[order])[same].min() >= 2_000


def test_ideal_shot_noise_and_leak_rates() -> None:
    frames = torch.full((2, 32, 32), 0.5)
    times_us = torch.tensor([0, 2_000_000])
    shot = simulate_ideal(frames, times_us, IdealParams(shot_noise_hz=2.0), gen(12))
    leak = simulate_ideal(frames, times_us, IdealParams(leak_hz=0.5), gen(12))
    for events, expected in ((shot, 2.0 * 2 * 1024), (leak, 0.5 * 2 * 1024)):
        assert abs(len(events) - expected) < 5 * math.sqrt(expected)
    assert bool((leak.p == 1).all())
    assert 0.4 < float((shot.p == 1).double().mean()) < 0.6
    assert len(torch.unique(shot.y * 32 + shot.x)) > 900


# ---------------------------------------------------------------------------- validation
def bad_inputs() -> list:
    frames, times_us = textured_sweep(num_frames=4, size=4)
    nan = frames.clone()
    nan[1, 2, 2] = float("nan")
    return [
        (frames[:1], times_us[:1], "at least 2 frames"),
        (frames, times_us.flip(0), "strictly increasing"),
        (frames, torch.tensor([0, 5, 5, 9]), "strictly increasing"),
        (frames, times_us[:3], "3 entries"),
        (frames, times_us.double(), "int64"),
        (frames[0], times_us, r"\(F, H, W\)"),
        (nan, times_us, "NaN"),
        (frames - 0.5, times_us, "negative"),
    ]


@pytest.mark.parametrize("index", range(8))
def test_bad_inputs_are_named(index: int) -> None:
    frames, times_us, message = bad_inputs()[index]
    with pytest.raises(ValueError, match=message):
        simulate_voltmeter(frames * 255, times_us, DAVIS346, gen())
    with pytest.raises(ValueError, match=message):
        simulate_ideal(frames, times_us, IdealParams(), gen())


def test_ideal_params_validation() -> None:
    with pytest.raises(ValueError, match="threshold"):
        IdealParams(threshold=0.0)
    with pytest.raises(ValueError, match="refractory_us"):
        IdealParams(refractory_us=-1)
    with pytest.raises(ValueError, match="log_eps"):
        IdealParams(log_eps=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_models_run_on_gpu() -> None:
    frames, times_us = textured_sweep()
    generator = torch.Generator(device="cuda").manual_seed(0)
    volt = simulate_voltmeter(frames.cuda() * 255, times_us.cuda(), DAVIS346, generator)
    ideal = simulate_ideal(frames.cuda(), times_us.cuda(), IdealParams(refractory_us=100), generator)
    for events in (volt, ideal):
        assert events.device.type == "cuda" and len(events) > 0


def test_simulators_leave_the_thread_count_as_they_found_it() -> None:
    """Small frames run their per-interval passes on one thread; the caller's setting comes back."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        frames, times_us = textured_sweep()
        simulate_voltmeter(frames * 255, times_us, DAVIS346, gen(3))
        assert torch.get_num_threads() == 2
        simulate_ideal(frames, times_us, NO_MISMATCH, gen(3))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_voltmeter_events_do_not_depend_on_the_helper_thread() -> None:
    """With two threads the next batch's draws are made ahead on a helper thread; one thread makes
    them in order. 256×256 × 40 frames spans several batches, so both paths really differ."""
    before = torch.get_num_threads()
    frames, times_us = textured_sweep(num_frames=40, size=256)
    streams = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            streams.append(simulate_voltmeter(frames * 255, times_us, DAVIS346, gen(4)))
    finally:
        torch.set_num_threads(before)
    assert len(streams[0]) > 1000
    for name in ("t_us", "x", "y", "p"):
        assert torch.equal(getattr(streams[0], name), getattr(streams[1], name))


# ---------------------------------------------------------------------------- against the official Voltmeter
SHARED_SAMPLES = shared_samples()
OFFICIAL = {"efs_dev": DAVIS346, "efs_dev_dense": replace(DAVIS346, k1=3 * DAVIS346.k1)}  # k1 × 3: the dense sweeps


def _time_profile(t_us: torch.Tensor, t_end_us: int, bins: int = 16) -> torch.Tensor:
    histogram = torch.histc(t_us.double(), bins, 0, t_end_us)
    return histogram / histogram.sum()


@pytest.mark.skipif(not (SHARED_SAMPLES / "efs_dev" / "sweep_frames").is_dir(), reason="needs ../shared/samples")
@pytest.mark.parametrize("folder", sorted(OFFICIAL))
@pytest.mark.parametrize("scene", ["d00_desk", "d01_shelf"])
def test_voltmeter_matches_the_official_implementation_on_its_own_frames(folder: str, scene: str) -> None:
    """Identical input (the grey frames the official DVS-Voltmeter was run on), the same parameters:
    events per pixel within ±15 %, ON fraction within ±0.05, and the same profile over the sweep."""
    frames_dir = SHARED_SAMPLES / "efs_dev" / "sweep_frames" / scene
    stamps = [line.split() for line in (frames_dir / "timestamps_us.txt").read_text().split("\n") if line.strip()]
    grey = torch.stack([torch.from_numpy(iio.imread(frames_dir / name).astype(np.float32)) for name, _ in stamps])
    times_us = torch.tensor([int(t) for _, t in stamps], dtype=torch.int64)
    official = np.load(SHARED_SAMPLES / folder / "events" / f"{scene}.npy")
    ours = simulate_voltmeter(grey, times_us, OFFICIAL[folder], torch.Generator().manual_seed(0))
    pixels = grey.shape[1] * grey.shape[2]
    official_per_px, ours_per_px = len(official) / pixels, len(ours) / pixels
    assert abs(ours_per_px / official_per_px - 1) < 0.15, (official_per_px, ours_per_px)
    assert abs(float((ours.p > 0).float().mean()) - float((official[:, 3] == 1).mean())) < 0.05
    end_us = int(times_us[-1])
    official_profile = _time_profile(torch.from_numpy(official[:, 0]), end_us)
    profile_l1 = (_time_profile(ours.t_us, end_us) - official_profile).abs().sum()
    assert float(profile_l1) < 0.1, float(profile_l1)
