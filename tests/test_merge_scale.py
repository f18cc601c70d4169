"""pipeline/aif.merge_weights: the merge net at a reduced resolution, its weights back at full size."""

import pytest
import torch
from focal_stacks import two_plane_stack
from tiny import tiny_overrides

from evfocus.config import ConfigError, load_config
from evfocus.events.integration import EventIntegrator
from evfocus.models.merge import EvMergeNet, MergeOutput, gradient_energy_merge
from evfocus.pipeline.aif import AIFPipeline, PipelineConfig, merge_weights
from evfocus.pipeline.search import SearchConfig
from evfocus.pipeline.settings import pipeline_config
from evfocus.sim.simulator import SweepSimulator


class SpyMerge:
    """The Sobel-energy merge, remembering what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, stack: torch.Tensor, events: torch.Tensor) -> MergeOutput:
        self.seen.append((stack, events))
        return gradient_energy_merge(stack)


def stack_of_two_planes(height: int = 48, width: int = 96) -> torch.Tensor:
    """(1, 2, 3, H, W): ``focal_stacks.two_plane_stack`` as a batch of one for the merge."""
    return two_plane_stack(height, width)[0][None]


def test_at_scale_one_the_weights_are_the_merges_own():
    stack, events = stack_of_two_planes(), torch.rand(1, 2, 4, 48, 96)
    spy = SpyMerge()
    torch.testing.assert_close(merge_weights(spy, stack, events, 1), gradient_energy_merge(stack).weights)
    assert spy.seen[0][0] is stack and spy.seen[0][1] is events


def test_the_merge_sees_averaged_inputs_and_its_weights_come_back_full_size():
    stack = stack_of_two_planes(45, 95)  # odd sizes: the last row and column are averaged too
    events = torch.full((1, 2, 4, 45, 95), 3.0)
    spy = SpyMerge()
    weights = merge_weights(spy, stack, events, 2)
    small_stack, small_events = spy.seen[0]
    assert small_stack.shape == (1, 2, 3, 23, 48) and small_events.shape == (1, 2, 4, 23, 48)
    torch.testing.assert_close(small_events, torch.full_like(small_events, 3.0))  # counts per pixel keep their density
    torch.testing.assert_close(small_stack.mean(), stack.mean(), atol=0.01, rtol=0)
    assert weights.shape == (1, 2, 45, 95) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(1, 45, 95))
    # away from the seam each half still goes to its sharp slice, as at full resolution
    full = merge_weights(spy, stack, events, 1)
    assert weights[0, 0, :, 8:36].mean() > 0.9 and weights[0, 1, :, 60:88].mean() > 0.9
    for half in (slice(8, 36), slice(60, 88)):
        gap = (weights[..., half].mean(dim=(-2, -1)) - full[..., half].mean(dim=(-2, -1))).abs().max()
        assert float(gap) < 0.1


def test_a_real_merge_net_runs_at_half_size():
    net = EvMergeNet(4, width=8, depth=2).eval()
    stack, events = stack_of_two_planes(), torch.rand(1, 2, 4, 48, 96)
    with torch.no_grad():
        weights = merge_weights(net, stack, events, 2)
    assert weights.shape == (1, 2, 48, 96) and torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(1, 48, 96))


def test_the_pipeline_passes_its_scale_and_rejects_a_bad_one(tmp_path):
    cfg = load_config(None, tiny_overrides(tmp_path))
    assert cfg.pipeline.merge_scale == 2
    sweep = SweepSimulator(cfg.sim, "val").simulate(1)
    spy = SpyMerge()
    result = AIFPipeline(EventIntegrator(0.1), spy, pipeline_config(cfg, sweep))(sweep, "cpu")
    assert spy.seen[0][0].shape[-2:] == (-(-sweep.height // 2), -(-sweep.width // 2))
    assert result.weights.shape[-2:] == (sweep.height, sweep.width)
    with pytest.raises(ConfigError, match=r"pipeline\.merge_scale"):
        load_config(None, tiny_overrides(tmp_path, "pipeline.merge_scale=0"))
    with pytest.raises(ValueError, match="merge_scale must be >= 1"):
        PipelineConfig(search=SearchConfig(num_bins=4), merge_scale=0)
