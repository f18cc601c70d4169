"""The AIF pipeline pieces: clustering of found times, tiling, stacks, merge windows, end to end."""

import pytest
import torch
import torch.nn.functional as F

from evfocus.config import load_config
from evfocus.data.stack_samples import in_focus_frames, stack_samples
from evfocus.events.contrast import estimate_contrast
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.integration import EventIntegrator, fit_contrast, integrate_events
from evfocus.events.stream import EventStream
from evfocus.optics import FocusSchedule
from evfocus.pipeline.aif import AIFPipeline, PipelineConfig, cluster_times, merge_events, refocus_stack, run_tiled
from evfocus.pipeline.search import SearchConfig
from evfocus.sim.simulator import SweepSimulator


def test_cluster_times_merges_neighbours_and_keeps_distinct_times():
    times = torch.tensor([100.0, 105.0, 110.0, 500.0, 900.0, 902.0])
    assert cluster_times(times, 8, 20.0).tolist() == pytest.approx([105.0, 500.0, 901.0])


def test_cluster_times_folds_into_max_slices():
    times = torch.arange(0, 6400, 100, dtype=torch.float64)  # 64 distinct patch times
    slices = cluster_times(times, 5, 10.0)
    assert len(slices) == 5 and torch.all(torch.diff(slices) > 0)
    assert slices.min() >= 0 and slices.max() <= 6300


def test_cluster_times_keeps_max_slices_when_many_patches_share_a_time():
    # a background of 40 patches at one time, 10 at another, 14 spread over the sweep: the former k-means,
    # started at quantiles of the patch times, collapsed these to 4 slices
    times = torch.tensor([100.0] * 40 + [500.0] * 10 + [900.0 + 400 * k for k in range(14)])
    slices = cluster_times(times, 8, 10.0)
    assert len(slices) == 8 and torch.all(torch.diff(slices) > 0)
    assert 100.0 in slices.tolist()  # the background's own time: merging it would move 40 patches


def test_cluster_times_merges_the_pair_that_moves_the_fewest_patches_the_least():
    # 0 ×20, 30 ×20, 100 ×1: the closest pair (0, 30) would move twenty patches 15 µs each (Ward cost 9000);
    # folding the lone patch at 100 into 30 moves it 67 µs and twenty patches 3 µs (4667): cheaper
    times = torch.tensor([0.0] * 20 + [30.0] * 20 + [100.0])
    assert cluster_times(times, 2, 1.0).tolist() == pytest.approx([0.0, 700.0 / 21])


def test_cluster_times_rejects_bad_input():
    with pytest.raises(ValueError, match="max_slices"):
        cluster_times(torch.tensor([1.0]), 0, 1.0)
    with pytest.raises(ValueError, match="no patch times"):
        cluster_times(torch.tensor([]), 3, 1.0)


def test_run_tiled_matches_a_whole_image_pass_within_the_receptive_field():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 70, 90)
    weight = torch.rand(3, 3, 5, 5)

    def conv(x: torch.Tensor) -> torch.Tensor:  # receptive radius 2 px
        return F.conv2d(x, weight, padding=2)

    tiled = run_tiled(conv, [image], tile_px=32, overlap_px=4)
    assert torch.allclose(tiled, conv(image), atol=1e-5)
    assert torch.equal(run_tiled(conv, [image], None, 4), conv(image))


def _stream(height: int = 16, width: int = 16, count: int = 4000, duration: int = 10_000) -> EventStream:
    generator = torch.Generator().manual_seed(1)
    t_us = torch.randint(0, duration, (count,), generator=generator).sort().values
    x = torch.randint(0, width, (count,), generator=generator).to(torch.int32)
    y = torch.randint(0, height, (count,), generator=generator).to(torch.int32)
    p = torch.randint(0, 2, (count,), generator=generator).to(torch.int8) * 2 - 1
    return EventStream(t_us, x, y, p, width=width, height=height)


def test_refocus_stack_applies_the_refocus_function_to_each_segment():
    events = _stream()
    stack = EventFocalStack.from_events(events, 0, 10_000, 50)
    image = torch.rand(3, 16, 16)
    times = torch.tensor([0.0, 2500.0, 7000.0, 10_000.0], dtype=torch.float64)
    integrator = EventIntegrator(0.1)
    slices, calls = refocus_stack(integrator, image, 0, stack, times, 4, slices_per_batch=3)
    assert slices.shape == (4, 3, 16, 16) and calls == 2
    segments = stack.segments(torch.zeros(4, dtype=torch.float64), times, 4)
    assert torch.allclose(slices, integrate_events(image.expand(4, -1, -1, -1), segments, 0.1))
    assert torch.allclose(slices[0], image.clamp(0, 1))  # no events between t0 and t0


def test_refocus_stack_encodes_the_frame_once_when_the_net_can():
    from evfocus.models.refocus import EvRefocusNet

    torch.manual_seed(0)
    net = EvRefocusNet(num_bins=4, width=8, depth=2, event_gain_init=0.1).eval()
    torch.nn.init.normal_(net.to_residual.weight, std=0.05)
    stack = EventFocalStack.from_events(_stream(), 0, 10_000, 50)
    image, times = torch.rand(3, 16, 16), torch.tensor([1000.0, 4000.0, 9000.0], dtype=torch.float64)
    with torch.no_grad():
        cached, _ = refocus_stack(net, image, 0, stack, times, 4, slices_per_batch=2)
        plain, _ = refocus_stack(lambda i, e: net(i, e), image, 0, stack, times, 4, slices_per_batch=2)
    assert torch.allclose(cached, plain, atol=1e-6)


def test_merge_events_windows_are_clipped_to_the_sweep():
    events = _stream()
    stack = EventFocalStack.from_events(events, 0, 10_000, 100)
    windows = merge_events(stack, torch.tensor([0.0, 5000.0, 10_000.0]), 1000.0, 2)
    expected_middle = stack.cumulative[60] - stack.cumulative[40]
    assert torch.allclose(windows[1].sum(0), expected_middle, atol=1e-4)
    assert torch.allclose(windows[0].sum(0), stack.cumulative[10] - stack.cumulative[0], atol=1e-4)


@pytest.fixture(scope="module")
def small_sweep():
    cfg = load_config(None, ["sim.height=48", "sim.width=64", "sim.num_frames=24", "data.crop_size=32"])
    return SweepSimulator(cfg.sim, "test").simulate(3)


@pytest.mark.parametrize("mode", ["batched", "reference"])
def test_pipeline_end_to_end_with_event_integration(small_sweep, mode):
    search = SearchConfig(num_bins=4, grid_size=4, margin_px=4, tolerance_us=small_sweep.schedule.duration_us / 32,
                          min_events=0)
    config = PipelineConfig(search=search, efs_fine_bins=64, max_slices=5, mode=mode)
    result = AIFPipeline(EventIntegrator(0.05), None, config)(small_sweep)
    slices = len(result.slice_times_us)
    assert result.aif.shape == small_sweep.image.shape
    assert result.weights.shape == (slices, 48, 64)
    assert torch.allclose(result.weights.sum(0), torch.ones(48, 64), atol=1e-5)
    assert result.depth_m.shape == (1, 48, 64) and bool((result.depth_m > 0).all())
    schedule = small_sweep.schedule
    assert bool((result.depth_m >= schedule.near_m - 1e-4).all() and (result.depth_m <= schedule.far_m + 1e-3).all())
    if mode == "batched":
        assert slices <= 5
    else:
        assert slices == 16  # the reference refocuses once per patch, duplicates included
    assert result.num_refocus_calls == result.search.num_refocus_calls + (1 if mode == "batched" else 16)


def test_in_focus_frames_of_a_plane_is_the_frame_focused_on_it():
    schedule = FocusSchedule(0, 1_000_000, 0.5, 5.0)
    frame_times = torch.linspace(0, 1_000_000, 41)
    depth = torch.full((1, 8, 8), 1.0)
    expected = int((frame_times - schedule.time_us_for_depth(1.0)).abs().argmin())
    assert in_focus_frames(depth, schedule, frame_times, 4) == [expected]


def test_stack_samples_carry_the_oracle_frames(small_sweep):
    cfg = load_config(None, ["sim.height=48", "sim.width=64", "sim.num_frames=24", "data.crop_size=32"])
    sweep = SweepSimulator(cfg.sim, "train").simulate(5, list(range(24)))
    generator = torch.Generator().manual_seed(0)
    samples = stack_samples(sweep, 3, 32, generator, max_slices=4, oracle_grid=2, crop_size=32, flip=False)
    assert len(samples) == 3
    for sample in samples:
        valid = sample["valid"]
        assert 1 <= int(valid.sum()) <= 4 and bool(valid[: int(valid.sum())].all())
        assert sample["cumulative"].shape == (33, 32, 32)
        positions = sample["slice_pos"][valid]
        frames = (positions * sweep.schedule.duration_us).round().long()
        for frame, time_us in zip(sample["slice_frames"][valid], frames, strict=True):
            index = int((sweep.frame_times_us - time_us).abs().argmin())
            windows = sweep.frames[index].unfold(1, 32, 1).unfold(2, 32, 1)  # (C, 17, 33, 32, 32)
            difference = (windows - frame[:, None, None]).abs().mean(dim=(0, 3, 4))
            assert float(difference.min()) < 1e-6  # a crop of the ground-truth frame at that time
        assert bool((sample["slice_frames"][~valid] == 0).all())


@pytest.mark.parametrize("runtime", ["channels_last", pytest.param("bf16_stack", marks=pytest.mark.slow),
                                     pytest.param("bf16", marks=pytest.mark.slow)])
def test_the_fast_runtimes_keep_the_outputs_float32_and_close_to_plain_torch(small_sweep, runtime):
    from evfocus.models.merge import EvMergeNet
    from evfocus.models.refocus import EvRefocusNet

    torch.manual_seed(0)
    refocus = EvRefocusNet(num_bins=4, width=8, depth=2, event_gain_init=0.05).eval()
    torch.nn.init.normal_(refocus.to_residual.weight, std=0.05)
    merge = EvMergeNet(num_bins=4, width=8, depth=2).eval()
    search = SearchConfig(num_bins=4, grid_size=2, margin_px=4, tolerance_us=small_sweep.schedule.duration_us / 4,
                          min_events=0, max_crops_per_call=4)
    results = {}
    for name in ("torch", runtime):
        config = PipelineConfig(search=search, efs_fine_bins=64, max_slices=3, runtime=name)
        results[name] = AIFPipeline(refocus, merge, config)(small_sweep)
    fast, plain = results[runtime], results["torch"]
    assert all(p.is_contiguous() for p in (*refocus.parameters(), *merge.parameters()))  # lent, then restored
    assert fast.aif.dtype == fast.weights.dtype == fast.depth_m.dtype == torch.float32
    if runtime != "bf16":  # a float32 search: the same decisions
        assert torch.equal(fast.slice_times_us, plain.slice_times_us)
    if runtime == "channels_last":  # float32 throughout: outputs equal up to rounding
        torch.testing.assert_close(fast.aif, plain.aif, rtol=0, atol=1e-4)
    else:
        assert (fast.aif - plain.aif).abs().mean() < 0.02


class CountingRefocus:
    """A refocus function that records the (N, H, W) of every call."""

    def __init__(self, refocus, contrast=None):
        self.refocus, self.sizes = refocus, []
        if contrast is not None:
            self.contrast = contrast

    def __call__(self, images, events, **options):
        self.sizes.append((images.shape[0], *images.shape[-2:]))
        return self.refocus(images, events)


@pytest.mark.parametrize("own_contrast", [None, 0.07])
def test_integration_probes_search_without_the_net_at_the_nets_own_contrast(small_sweep, own_contrast):
    search = SearchConfig(num_bins=4, grid_size=4, margin_px=4, tolerance_us=small_sweep.schedule.duration_us / 32,
                          min_events=0)
    net = CountingRefocus(EventIntegrator(0.05), contrast=own_contrast)
    config = PipelineConfig(search=search, efs_fine_bins=64, max_slices=5, search_probe="integration")
    result = AIFPipeline(net, None, config)(small_sweep)
    assert {size[1:] for size in net.sizes} == {(48, 64)}  # the net refocused the stack's frames, no search crop
    assert sum(size[0] for size in net.sizes) == len(result.slice_times_us)
    assert result.num_refocus_calls == len(net.sizes)  # the integration probes are not the net's calls
    assert result.search.num_refocus_calls > 0
    schedule = small_sweep.schedule
    focal_stack = EventFocalStack.from_events(small_sweep.events, schedule.t_start_us, schedule.t_end_us, 64)
    expected = own_contrast or estimate_contrast(small_sweep.image, focal_stack, small_sweep.image_time_us).contrast
    assert result.search_contrast == pytest.approx(expected)
    # the same search as the pipeline gives when that integrator is its refocus function outright
    same = AIFPipeline(EventIntegrator(expected), None, PipelineConfig(search=search, efs_fine_bins=64,
                                                                       max_slices=5))(small_sweep)
    assert torch.equal(result.search.times_us, same.search.times_us)


def test_an_unknown_search_probe_is_named():
    search = SearchConfig(num_bins=4, grid_size=4)
    with pytest.raises(ValueError, match=r"search_probe.*'nets'"):
        PipelineConfig(search=search, search_probe="nets")


class PerSweepContrastNet(CountingRefocus):
    """A per-sweep-contrast net's interface: records the self-calibrated contrast the pipeline hands it."""

    contrast_source = "prior"

    def __init__(self, refocus):
        super().__init__(refocus)
        self.priors = []

    def for_sweep(self, image, focal_stack, image_time_us, prior_contrast=None, response="gamma"):
        self.priors.append(prior_contrast)
        return self


@pytest.mark.parametrize("method", ["kink", "blur_fit"])
def test_per_sweep_nets_start_from_the_configured_contrast_estimator(small_sweep, method):
    search = SearchConfig(num_bins=4, grid_size=4, margin_px=4, tolerance_us=small_sweep.schedule.duration_us / 16,
                          min_events=0)
    net = PerSweepContrastNet(EventIntegrator(0.05))
    AIFPipeline(net, None, PipelineConfig(search=search, efs_fine_bins=64, max_slices=3,
                                          contrast_estimator=method))(small_sweep)
    schedule = small_sweep.schedule
    focal_stack = EventFocalStack.from_events(small_sweep.events, schedule.t_start_us, schedule.t_end_us, 64)
    expected = estimate_contrast(small_sweep.image, focal_stack, small_sweep.image_time_us, method=method)
    assert net.priors == [pytest.approx(expected.contrast)]


def test_a_given_event_contrast_replaces_the_estimate_for_the_net_and_the_probes(small_sweep, monkeypatch):
    """A calibrated sensor's contrast reaches a per-sweep net as its prior and the integration probes, and the
    sweep is not self-calibrated at all."""
    import evfocus.pipeline.aif as aif

    def no_estimate(*args, **kwargs):
        raise AssertionError("the contrast was estimated although it was given")

    monkeypatch.setattr(aif, "estimate_contrast", no_estimate)
    search = SearchConfig(num_bins=4, grid_size=4, margin_px=4, tolerance_us=small_sweep.schedule.duration_us / 16,
                          min_events=0)
    net = PerSweepContrastNet(EventIntegrator(0.05))
    result = AIFPipeline(net, None, PipelineConfig(search=search, efs_fine_bins=64, max_slices=3,
                                                   search_probe="integration", event_contrast=0.123))(small_sweep)
    assert net.priors == [0.123] and result.search_contrast == pytest.approx(0.123)


def test_a_given_contrast_reaches_the_net_times_its_gain_and_an_estimate_does_not(small_sweep):
    """The net is given a calibrated contrast times ``given_contrast_gain``; the self-calibrated estimate as it is."""
    search = SearchConfig(num_bins=4, grid_size=4, margin_px=4, tolerance_us=small_sweep.schedule.duration_us / 16,
                          min_events=0)
    given, estimated = PerSweepContrastNet(EventIntegrator(0.05)), PerSweepContrastNet(EventIntegrator(0.05))
    settings = dict(search=search, efs_fine_bins=64, max_slices=3, search_probe="integration", given_contrast_gain=1.3)
    AIFPipeline(given, None, PipelineConfig(**settings, event_contrast=0.1))(small_sweep)
    AIFPipeline(estimated, None, PipelineConfig(**settings))(small_sweep)
    schedule = small_sweep.schedule
    focal_stack = EventFocalStack.from_events(small_sweep.events, schedule.t_start_us, schedule.t_end_us, 64)
    estimate = estimate_contrast(small_sweep.image, focal_stack, small_sweep.image_time_us).contrast
    assert given.priors == [pytest.approx(0.13)] and estimated.priors == [pytest.approx(estimate)]
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="given_contrast_gain must be a positive number"):
            PipelineConfig(search=search, event_contrast=0.1, given_contrast_gain=bad)


def test_a_given_event_contrast_is_refused_where_it_would_be_ignored():
    from evfocus.models.refocus import EvRefocusNet

    search = SearchConfig(num_bins=4, grid_size=4)
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="event_contrast must be a positive number"):
            PipelineConfig(search=search, event_contrast=bad)
    fixed_gain = EvRefocusNet(num_bins=4, width=8, depth=2)  # one global event gain, no per-sweep contrast
    assert fixed_gain.contrast_source is None
    with pytest.raises(ValueError, match="one global event gain, not a per-sweep contrast"):
        AIFPipeline(fixed_gain, None, PipelineConfig(search=search, event_contrast=0.1))
    AIFPipeline(fixed_gain, None, PipelineConfig(search=search))  # estimated (unused by it): fine


def test_an_unknown_contrast_estimator_is_named():
    with pytest.raises(ValueError, match=r"contrast_estimator.*'oracle'"):
        PipelineConfig(search=SearchConfig(num_bins=4, grid_size=4), contrast_estimator="oracle")


@pytest.mark.parametrize("response", ["gamma", "linear"])
def test_reference_integration_takes_the_sweeps_event_response(small_sweep, response):
    """The self-calibrated reference integrates and calibrates in the log the sweep's sensor responds to, and
    the pipeline's probes keep that integrator as it is (not re-made at its contrast in the default log)."""
    from dataclasses import replace

    from evfocus.pipeline.aif import search_refocus
    from evfocus.pipeline.references import SELF_CALIBRATION_BINS, self_calibrated_integrator

    sweep = replace(small_sweep, meta={**small_sweep.meta, "event_response": response})
    integrator = self_calibrated_integrator(sweep, "cpu")
    schedule = sweep.schedule
    focal_stack = EventFocalStack.from_events(sweep.events, schedule.t_start_us, schedule.t_end_us,
                                              SELF_CALIBRATION_BINS)
    expected = estimate_contrast(sweep.image, focal_stack, sweep.image_time_us, response=response).contrast
    assert (integrator.response, integrator.contrast) == (response, expected)
    assert search_refocus("integration", integrator, sweep.image, focal_stack, 0.0) is integrator


def test_sweep_with_an_unknown_event_response_is_refused(small_sweep):
    from dataclasses import replace

    from evfocus.sweep import SweepError

    with pytest.raises(SweepError, match=r"sim-test-3: meta 'event_response' must be one of \['gamma', 'linear'\]"):
        replace(small_sweep, meta={**small_sweep.meta, "event_response": "log"})


def test_training_contrasts_follow_the_sensor_only_for_a_response_aware_net():
    """The contrast a response-aware net is taught and given is its sweep's sensor's own (linear light for a
    linear sensor), and its samples are marked linear; otherwise both are in the frame's log, unmarked."""
    from evfocus.data.contrast_fields import sweep_contrast_fields, target_contrast

    cfg = load_config(None, ["sim.height=48", "sim.width=64", "sim.num_frames=24", "data.crop_size=32",
                             "sim.event_response=linear"])
    sweep = SweepSimulator(cfg.sim, "test").simulate(3, range(0, 24, 6))
    assert sweep.event_response == "linear"
    schedule = sweep.schedule
    focal_stack = EventFocalStack.from_events(sweep.events, schedule.t_start_us, schedule.t_end_us, 64)
    aware, plain = (sweep_contrast_fields(sweep, focal_stack, flag) for flag in (True, False))
    assert bool(aware["linear_response"]) and not bool(plain["linear_response"])
    assert float(aware["target_contrast"]) == pytest.approx(target_contrast(sweep, focal_stack, "linear"))
    assert float(plain["target_contrast"]) == pytest.approx(target_contrast(sweep, focal_stack, "gamma"))
    assert float(aware["target_contrast"]) != pytest.approx(float(plain["target_contrast"]), rel=0.05)
    assert float(aware["prior_contrast"]) == pytest.approx(
        estimate_contrast(sweep.image, focal_stack, sweep.image_time_us, response="linear").contrast)
    # the target is fitted on every second pixel with a shorter search: the full search on every pixel agrees
    t0_us = torch.tensor([float(sweep.image_time_us)], dtype=torch.float64)
    every_pixel = [(sweep.image, focal_stack.segments(t0_us, t_us.view(1).double(), 1)[0], frame)
                   for frame, t_us in zip(sweep.frames, sweep.frame_times_us, strict=True)
                   if int(t_us) != sweep.image_time_us]
    assert float(aware["target_contrast"]) == pytest.approx(fit_contrast(every_pixel, response="linear"), rel=0.03)
