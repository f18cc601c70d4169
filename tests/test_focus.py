"""pipeline/focus.py: the merge's weights sharpened by each slice's focus for the all-in-focus image."""

import pytest
import torch
from focal_stacks import two_plane_stack
from tiny import tiny_overrides

from evfocus.config import ConfigError, load_config
from evfocus.events.integration import EventIntegrator
from evfocus.pipeline.aif import AIFPipeline
from evfocus.pipeline.focus import merged_image, sharpen_by_focus
from evfocus.pipeline.settings import pipeline_config
from evfocus.sim.simulator import SweepSimulator


def test_an_even_blend_becomes_the_sharpest_slice_where_focus_is_decisive():
    stack, sharp = two_plane_stack()
    even = torch.full((2, 48, 96), 0.5)
    sharpened = sharpen_by_focus(even, stack, 32.0)
    torch.testing.assert_close(sharpened.sum(dim=0), torch.ones(48, 96))
    assert (sharpened[0, :, :40] > 0.99).all() and (sharpened[1, :, 56:] > 0.99).all()
    blend_error = (merged_image(stack, even) - sharp).abs().mean()
    assert (merged_image(stack, sharpened) - sharp).abs().mean() < 0.2 * blend_error
    assert torch.equal(sharpen_by_focus(even, stack, 0.0), even)


def test_where_slices_tie_the_merges_blend_stays_and_excluded_slices_stay_out():
    flat = torch.rand(1, 3, 32, 32).expand(3, 3, 32, 32)  # three identical slices: no slice is sharper
    weights = torch.tensor([0.7, 0.3, 0.0])[:, None, None].expand(3, 32, 32)
    torch.testing.assert_close(sharpen_by_focus(weights, flat, 32.0), weights)
    stack, _ = two_plane_stack()
    only_far = torch.stack([torch.zeros(48, 96), torch.ones(48, 96)])  # the sharp left slice was given no weight
    assert torch.equal(sharpen_by_focus(only_far, stack, 32.0), only_far)


@pytest.mark.parametrize(("weights", "sharpness", "message"), [
    (torch.full((2, 48, 96), 0.5), -1.0, "sharpness must be >= 0"),
    (torch.full((3, 48, 96), 1 / 3), 32.0, r"must be \(S, H, W\) of the stack"),
])
def test_bad_inputs_are_named(weights, sharpness, message):
    stack, _ = two_plane_stack()
    with pytest.raises(ValueError, match=message):
        sharpen_by_focus(weights, stack, sharpness)


def test_the_pipeline_sharpens_the_image_only_and_can_turn_it_off(tmp_path):
    cfg = load_config(None, tiny_overrides(tmp_path))
    assert cfg.pipeline.focus_sharpness == 32
    sweep = SweepSimulator(cfg.sim, "val").simulate(1)
    on = AIFPipeline(EventIntegrator(0.1), None, pipeline_config(cfg, sweep))(sweep, "cpu")
    off_cfg = load_config(None, tiny_overrides(tmp_path, "pipeline.focus_sharpness=0", "pipeline.recolour=false"))
    off = AIFPipeline(EventIntegrator(0.1), None, pipeline_config(off_cfg, sweep))(sweep, "cpu")
    assert torch.equal(on.stack, off.stack) and torch.equal(on.weights, off.weights)
    # the depth reads the merge's own weights; only its edge-aware filter's guide, the image, changed
    torch.testing.assert_close(on.depth_m, off.depth_m, rtol=0.02, atol=0)
    torch.testing.assert_close(off.aif, merged_image(off.stack, off.weights))
    assert not torch.allclose(on.aif, off.aif)


def test_a_negative_sharpness_in_a_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"pipeline\.focus_sharpness"):
        load_config(None, tiny_overrides(tmp_path, "pipeline.focus_sharpness=-2"))
