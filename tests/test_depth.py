"""Depth from focus: hand-computed maps on tiny grids, diopter averaging, error metrics and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from evfocus.optics import FocusSchedule
from evfocus.pipeline.depth import (
    depth_confidence,
    depth_errors,
    depth_scores,
    fuse_depths,
    patch_depth_map,
    regularise_depth,
    weighted_depth_map,
)
from evfocus.pipeline.focus import sharpest_slice_weights
from evfocus.pipeline.search import PatchGrid

# Focus 0.5 m (2 D) at t=0 → 4 m (0.25 D) at t=1750 µs: 1 D per 1000 µs, so D(t) = 2 - t/1000.
SCHEDULE = FocusSchedule(0, 1750, 0.5, 4.0)


def test_patch_depth_map_hand_computed() -> None:
    boxes = PatchGrid.build(4, 4, 2, 0).boxes  # (0,0,2,2) (0,2,2,2) (2,0,2,2) (2,2,2,2)
    times = torch.tensor([[0.0, 1000.0], [500.0, 1750.0]], dtype=torch.float64)
    depth, diopter = patch_depth_map(times, boxes, SCHEDULE, 4, 4)
    assert depth.shape == diopter.shape == (1, 4, 4)
    expected_d = torch.tensor([[2.0, 2.0, 1.0, 1.0],
                               [2.0, 2.0, 1.0, 1.0],
                               [1.5, 1.5, 0.25, 0.25],
                               [1.5, 1.5, 0.25, 0.25]])
    torch.testing.assert_close(diopter[0], expected_d)
    torch.testing.assert_close(depth[0], 1.0 / expected_d)
    assert depth[0, 0, 0] == pytest.approx(0.5) and depth[0, 2, 0] == pytest.approx(2 / 3)
    assert depth[0, 3, 3] == pytest.approx(4.0)


def test_patch_depth_map_clamps_times_outside_the_sweep() -> None:
    boxes = PatchGrid.build(4, 6, 2, 0).boxes  # uneven widths are fine: boxes are painted as given
    times = torch.tensor([[-500.0, 5000.0], [1e9, -1e9]], dtype=torch.float64)
    depth, _ = patch_depth_map(times, boxes, SCHEDULE, 4, 6)
    assert depth.shape == (1, 4, 6)
    torch.testing.assert_close(depth[0, 0], torch.tensor([0.5, 0.5, 0.5, 4.0, 4.0, 4.0]))
    torch.testing.assert_close(depth[0, 3], torch.tensor([4.0, 4.0, 4.0, 0.5, 0.5, 0.5]))


def test_patch_depth_map_rejects_mismatched_boxes() -> None:
    boxes = PatchGrid.build(4, 4, 2, 0).boxes
    with pytest.raises(ValueError, match="patch_boxes"):
        patch_depth_map(torch.zeros(3, 3), boxes, SCHEDULE, 4, 4)
    with pytest.raises(ValueError, match="does not fit"):
        patch_depth_map(torch.zeros(2, 2), boxes, SCHEDULE, 3, 4)
    with pytest.raises(ValueError, match=r"\(N, N\)"):
        patch_depth_map(torch.zeros(4), boxes, SCHEDULE, 4, 4)


def test_weighted_depth_averages_in_diopters() -> None:
    # Slices focused at 1 m (t=1000, 1 D) and 0.5 m (t=0, 2 D), equal weights: 1.5 D → 1/1.5 m, not 0.75 m.
    weights = torch.full((2, 3, 5), 0.5)
    depth = weighted_depth_map(weights, torch.tensor([1000.0, 0.0]), SCHEDULE)
    assert depth.shape == (1, 3, 5)
    torch.testing.assert_close(depth, torch.full((1, 3, 5), 1 / 1.5))
    # 3:1 towards 1 m: 0.75·1 + 0.25·2 = 1.25 D → 0.8 m.
    weights = torch.stack([torch.full((3, 5), 0.75), torch.full((3, 5), 0.25)])
    torch.testing.assert_close(weighted_depth_map(weights, torch.tensor([1000.0, 0.0]), SCHEDULE),
                               torch.full((1, 3, 5), 0.8))


def test_weighted_depth_one_hot_reproduces_slice_depth() -> None:
    times = torch.tensor([0.0, 500.0, 1000.0, 1750.0])
    choice = torch.randint(0, 4, (2, 6, 7), generator=torch.Generator().manual_seed(0))
    weights = torch.nn.functional.one_hot(choice, 4).permute(0, 3, 1, 2).float()  # (N=2, S=4, H, W)
    depth = weighted_depth_map(weights, times[None].expand(2, -1), SCHEDULE)
    assert depth.shape == (2, 1, 6, 7)
    slice_depth = torch.tensor([0.5, 2 / 3, 1.0, 4.0])
    torch.testing.assert_close(depth[:, 0], slice_depth[choice])


def test_weighted_depth_ignores_invalid_slices() -> None:
    # Slice 2 is padding: zero weight and a NaN time must not turn the map into NaN.
    weights = torch.zeros(3, 2, 2)
    weights[0, 0, :] = 1.0  # top row: all weight on slice 0 (2 D)
    weights[1, 1, 0] = 1.0  # (1, 0): slice 1 (1 D)
    # (1, 1) has no weight at all: falls back to the mean diopter of the finite-time slices, 1.5 D
    depth = weighted_depth_map(weights, torch.tensor([0.0, 1000.0, math.nan]), SCHEDULE)
    torch.testing.assert_close(depth[0], torch.tensor([[0.5, 0.5], [1.0, 1 / 1.5]]))
    assert torch.isfinite(depth).all()


def test_weighted_depth_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="slice_times_us"):
        weighted_depth_map(torch.ones(3, 2, 2), torch.zeros(2), SCHEDULE)
    with pytest.raises(ValueError, match=">= 0"):
        weighted_depth_map(-torch.ones(2, 2, 2), torch.zeros(2), SCHEDULE)
    with pytest.raises(ValueError, match="finite time"):
        weighted_depth_map(torch.ones(2, 2, 2), torch.full((2,), math.nan), SCHEDULE)


def test_depth_errors_perfect_and_overestimate() -> None:
    true = torch.tensor([[[0.5, 1.0], [2.0, 4.0]]])
    perfect = depth_errors(true.clone(), true)
    assert perfect == {"abs_rel": 0.0, "rmse_m": 0.0, "rmse_diopter": 0.0}
    errors = depth_errors(true * 1.1, true)
    assert all(isinstance(value, float) for value in errors.values())
    assert errors["abs_rel"] == pytest.approx(0.1)
    # rmse_m = 0.1·sqrt(mean(d*²)) = 0.1·sqrt((0.25 + 1 + 4 + 16)/4)
    assert errors["rmse_m"] == pytest.approx(0.1 * math.sqrt(21.25 / 4))
    # 1/(1.1 d) − 1/d = −(0.1/1.1)/d: rmse = (0.1/1.1)·sqrt(mean(1/d²)) = (0.1/1.1)·sqrt((4 + 1 + 0.25 + 1/16)/4)
    assert errors["rmse_diopter"] == pytest.approx(0.1 / 1.1 * math.sqrt(5.3125 / 4))


def test_depth_errors_valid_mask_excludes_missing_truth() -> None:
    true = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])  # 0 = no ground truth here
    pred = torch.tensor([[[7.0, 1.1], [2.2, 4.4]]])
    errors = depth_errors(pred, true, valid_mask=true > 0)
    assert errors["abs_rel"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="true_depth_m"):
        depth_errors(pred, true)


def test_depth_errors_rejects_bad_input() -> None:
    ones = torch.ones(1, 2, 2)
    with pytest.raises(ValueError, match="same shape"):
        depth_errors(ones, torch.ones(1, 2, 3))
    with pytest.raises(ValueError, match="pred_depth_m"):
        depth_errors(-ones, ones)
    with pytest.raises(ValueError, match="pred_depth_m"):
        depth_errors(torch.full((1, 2, 2), math.nan), ones)
    with pytest.raises(ValueError, match="true_depth_m"):
        depth_errors(ones, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="valid_mask"):
        depth_errors(ones, ones, valid_mask=torch.ones(1, 2, 2))  # not bool
    with pytest.raises(ValueError, match="no pixel"):
        depth_errors(ones, ones, valid_mask=torch.zeros(1, 2, 2, dtype=torch.bool))


def test_depth_confidence_is_high_only_where_one_slice_is_sharpest_and_textured():
    """A stack sharp in slice 0 only on its left third (full contrast), sharp in slice 0 only on its middle
    third (faint texture, a twentieth of the contrast) and flat everywhere on its right third."""
    torch.manual_seed(0)
    texture = torch.rand(1, 48, 144)
    texture[:, :, 48:96] = 0.5 + 0.05 * (texture[:, :, 48:96] - 0.5)
    blurred = torch.nn.functional.avg_pool2d(texture[None], 9, 1, 4, count_include_pad=False)[0]
    stack = blurred.expand(3, 3, 48, 144).clone()
    stack[0] = texture
    stack[:, :, :, 96:] = 0.5
    confidence = depth_confidence(stack)
    assert confidence.shape == (1, 48, 144) and float(confidence.min()) >= 0 and float(confidence.max()) <= 1
    assert float(confidence[0, 12:36, 8:24].mean()) > 0.3  # sharp in one slice, textured
    assert float(confidence[0, 12:36, 64:80].mean()) > 0.4  # faint texture is still texture (0.2 before 2026-12-01)
    assert float(confidence[0, :, 124:].max()) < 0.05  # flat (beyond the 3 sigma the sharpness is pooled over)
    even = blurred.expand(3, 3, 48, 144)  # every slice alike: no slice is sharpest
    assert float(depth_confidence(even).max()) < 1e-3
    assert float(depth_confidence(stack[:1]).max()) == 0.0  # one slice: nothing to compare


def test_sharpest_slice_weights_find_each_pixels_focus_where_the_merge_blends():
    """Left half sharp in the last slice, right half in the first: the merge's even blend says mid-sweep
    everywhere; the sharpest-slice weights place each half at its own slice, and a flat region at the mean."""
    torch.manual_seed(0)
    texture = torch.rand(1, 48, 48)
    blurred = torch.nn.functional.avg_pool2d(texture[None], 9, 1, 4)[0]
    stack = blurred.expand(3, 3, 48, 48).clone()
    stack[2, :, :, :24] = texture[:, :, :24]
    stack[0, :, :, 24:] = texture[:, :, 24:]
    times = torch.tensor([0.0, 875.0, 1750.0])  # 2, 1.125 and 0.25 D
    weights = sharpest_slice_weights(stack)
    assert weights.shape == (3, 48, 48) and float(weights.max()) <= 1.0
    focus = weighted_depth_map(weights, times, SCHEDULE)
    assert float(focus[0, 12:36, 4:12].min()) > 3.5 and float(focus[0, 12:36, 36:44].max()) < 0.55
    blend = weighted_depth_map(torch.full((3, 48, 48), 1 / 3), times, SCHEDULE)
    assert float(blend[0, 24, 8]) == pytest.approx(1 / 1.125)
    flat = sharpest_slice_weights(torch.full((3, 3, 16, 16), 0.5))  # no texture: no slice preferred
    assert torch.equal(flat, torch.full_like(flat, float(flat[0, 0, 0])))


def test_fuse_depths_trusts_focus_by_confidence_in_diopters():
    merge, focus = torch.full((1, 1, 3), 1.0), torch.full((1, 1, 3), 0.5)  # 1 D and 2 D
    confidence = torch.tensor([[[0.0, 0.25, 0.9]]])
    fused = fuse_depths(merge, focus, confidence)  # focus shares 0, 0.5 and 1 (trust 2)
    torch.testing.assert_close(fused, torch.tensor([[[1.0, 1 / 1.5, 0.5]]]))


def test_regularised_depth_spreads_confident_depth_within_a_surface_not_across_edges():
    guide = torch.zeros(3, 24, 24)
    guide[:, :, 12:] = 1.0  # two surfaces, an edge at column 12
    depth = torch.full((1, 24, 24), 1.0)
    depth[:, :, 12:] = 3.0
    depth[:, 10, 4] = 9.0  # an unconfident outlier on the left surface
    confidence = torch.ones(1, 24, 24)
    confidence[:, 10, 4] = 0.0
    smoothed = regularise_depth(depth, confidence, guide, radius_px=4)
    assert float(smoothed[0, 10, 4]) == pytest.approx(1.0, rel=1e-3)  # filled from its confident surface
    assert float(smoothed[0, :, :11].max()) < 1.01 and float(smoothed[0, :, 13:].min()) > 2.99  # edge kept


def test_depth_scores_report_confident_pixels_separately():
    truth = torch.full((1, 4, 4), 2.0)
    truth[0, 0, 0] = float("inf")  # no surface: not scored
    depth = torch.full((1, 4, 4), 2.0)
    depth[0, 3, 3] = 4.0
    confidence = torch.ones(1, 4, 4)
    confidence[0, 3, 3] = 0.0
    scores = depth_scores(depth, confidence, truth)
    assert scores["abs_rel"] == pytest.approx(1.0 / 15) and scores["abs_rel_confident"] == pytest.approx(0.0)
    assert scores["confident_fraction"] == pytest.approx(14 / 15)
    assert depth_scores(depth, torch.zeros(1, 4, 4), truth)["abs_rel_confident"] is None
