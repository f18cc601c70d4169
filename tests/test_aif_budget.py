"""benchmarks/aif_budget.py: the parts swapped for the truth are scored as they should be, and the depth
error is split by where the pixels are in focus."""

import argparse
import math
import sys
from pathlib import Path

import pytest
import torch
from samples import shared_samples
from tiny import tiny_overrides

from evfocus.checkpoints import DEFAULT_WEIGHTS, load_nets, load_stage_checkpoint
from evfocus.config import load_config
from evfocus.events.integration import EventIntegrator
from evfocus.optics import FocusSchedule
from evfocus.pipeline.aif import AIFPipeline, refocus_stack
from evfocus.pipeline.settings import pipeline_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from aif_budget import (  # noqa: E402
    BUDGET_ROWS,
    FOCUS_BINS,
    budget,
    contrast_scaled_slices,
    depth_by_place,
    nearest,
    positive_scale,
    sweep_place,
    sweeps_with_frames,
)


def test_perfect_slices_score_like_the_truth_merged_with_the_same_weights():
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 16, 16, generator=generator)
    frames = torch.rand(5, 3, 16, 16, generator=generator)
    frames[3] = truth  # one frame of the sweep is the all-in-focus image
    slice_frames = frames[[0, 2]]
    weights = torch.softmax(torch.randn(2, 16, 16, generator=generator), dim=0)
    aif = (weights[:, None] * slice_frames).sum(dim=0)
    gains = budget(aif, slice_frames, weights, slice_frames, frames, truth, frames[1])
    assert list(gains) == list(BUDGET_ROWS)
    assert gains["pipeline"] == pytest.approx(gains["true slices, its weights"])
    assert gains["its slices, best pixel"] == pytest.approx(gains["true slices, best pixel"])
    assert gains["true slices, best pixel"] > gains["true slices, its weights"]  # a pick beats a blend of noise
    assert gains["all frames, best pixel"] > gains["true slices, best pixel"] + 20  # the truth is among them


def test_slice_times_map_to_the_nearest_frame():
    frame_times = torch.tensor([0.0, 100.0, 200.0, 300.0], dtype=torch.float64)
    assert nearest(frame_times, torch.tensor([10.0, 149.0, 151.0, 400.0])).tolist() == [0, 1, 2, 3]


def test_simulated_sweeps_come_with_every_frame(tmp_path):
    cfg = load_config(ROOT / "configs/quickstart.yaml", tiny_overrides(tmp_path))
    sweep, frames, times = next(sweeps_with_frames("sim:1", cfg, 1, "val"))
    assert frames.shape == (cfg.sim.num_frames, 3, sweep.height, sweep.width) and len(times) == len(frames)
    assert torch.equal(frames[0], sweep.frames[0]) and sweep.meta["split"] == "val"


@pytest.mark.skipif(not (shared_samples() / "efs_dev_dense").is_dir(), reason="no development sweeps")
def test_captures_bring_their_grey_sweep_frames_or_are_refused(tmp_path):
    cfg = load_config(ROOT / "configs/quickstart.yaml", tiny_overrides(tmp_path))
    sweep, frames, times = next(sweeps_with_frames(str(shared_samples() / "efs_dev"), cfg, 1, "val"))
    assert frames.shape == (160, 1, sweep.height, sweep.width)
    assert times[0] == sweep.schedule.t_start_us and times[-1] == sweep.schedule.t_end_us
    dense = str(shared_samples() / "efs_dev_dense")
    with pytest.raises(SystemExit, match="ships no sweep_frames"):  # the dense folder reuses efs_dev's frames
        next(sweeps_with_frames(dense, cfg, 1, "val"))
    denser, borrowed, _ = next(sweeps_with_frames(dense, cfg, 1, "val", str(shared_samples() / "efs_dev")))
    assert denser.name == sweep.name and len(denser.events) > len(sweep.events) and torch.equal(borrowed, frames)


def test_depth_error_is_split_by_where_the_pixels_are_in_focus():
    schedule = FocusSchedule(0, 1000, 0.5, 5.0)  # 2.0 → 0.2 diopters
    places = torch.tensor([0.1, 0.3, 0.5, 0.5, 0.97, 1.0])  # the last: at the far end, the bin that takes it
    truth = (1.0 / (2.0 - places.double() * 1.8)).float().view(1, 2, 3)
    assert torch.allclose(sweep_place(truth, schedule).flatten().float(), places, atol=1e-6)
    pred = truth.clone()
    pred.view(-1)[-2:] = 1.0  # both far pixels put at 1 m: AbsRel 1 − 1/d
    rows = depth_by_place(pred, truth, schedule)
    assert len(rows) == len(FOCUS_BINS) - 1
    shares, abs_rels, parts, placed = zip(*rows, strict=True)
    assert sum(shares) == pytest.approx(1.0) and shares[-1] == pytest.approx(2 / 6)
    far_errors = (truth.view(-1)[-2:] - 1.0).abs() / truth.view(-1)[-2:]
    assert abs_rels[-1] == pytest.approx(float(far_errors.mean()), rel=1e-5)
    assert sum(parts) == pytest.approx(float(far_errors.sum()) / 6, rel=1e-5)  # the rest is exact
    assert placed[-1] == pytest.approx((2.0 - 1.0) / 1.8, rel=1e-5)
    assert shares[4] == 0 and math.isnan(abs_rels[4])  # 0.8–0.95 holds nothing


def test_contrast_scaled_slices_start_from_the_pipelines_own(tmp_path):
    """At scale 1 the net's slices are the pipeline's stack and integration's those at the same contrast; other
    scales change both; a net without a per-sweep contrast, or a scale that is not above 0, is refused."""
    checkpoint = load_stage_checkpoint(DEFAULT_WEIGHTS, ("refocus", "merge", "joint"))
    refocus, merge = load_nets(checkpoint)
    cfg = load_config(ROOT / "configs/quickstart.yaml", tiny_overrides(tmp_path))
    sweep, _, _ = next(sweeps_with_frames("sim:3", cfg, 1, "val"))
    config = pipeline_config(checkpoint.cfg, sweep)
    with torch.no_grad():
        result = AIFPipeline(refocus, merge, config)(sweep, "cpu")
        stacks = contrast_scaled_slices(result, sweep, config, [1.0, 1.5])
        integrated, _ = refocus_stack(EventIntegrator(result.contrast, response=result.refocus.response),
                                      sweep.image, sweep.image_time_us, result.focal_stack, result.slice_times_us,
                                      config.search.num_bins, anchor_sigma_px=config.anchor_sigma_px)
    assert torch.allclose(stacks[1.0]["net"], result.stack, atol=1e-6)
    assert torch.allclose(stacks[1.0]["integration"], integrated, atol=1e-6)
    for name in ("net", "integration"):
        assert (stacks[1.5][name] - stacks[1.0][name]).abs().amax() > 1e-3
    for bad in ("0", "-1", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="must be > 0"):
            positive_scale(bad)
    integration_only = AIFPipeline(EventIntegrator(0.1), None, config)(sweep, "cpu")
    with pytest.raises(SystemExit, match="per-sweep contrast"):
        contrast_scaled_slices(integration_only, sweep, config, [1.0])
