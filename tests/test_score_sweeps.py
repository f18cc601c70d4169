"""benchmarks/score_sweeps.py: simulated inputs come from the split asked for, at the sensitivity asked for;
``--pipeline`` changes are parsed like config overrides; ``--true-contrast-scales`` gives the net K times each
simulated sweep's true contrast, and refuses what has none."""

import sys
from pathlib import Path

import pytest
import torch
from omegaconf.errors import ConfigKeyError
from tiny import tiny_overrides

from evfocus.config import load_config
from evfocus.data.contrast_fields import target_contrast
from evfocus.events.focal_stack import EventFocalStack
from evfocus.models.refocus import EvRefocusNet
from evfocus.pipeline.settings import pipeline_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from compare_search import with_variant  # noqa: E402
from score_sweeps import check_true_contrast_inputs, sweeps_of, true_contrast_runs  # noqa: E402


def test_sim_inputs_come_from_the_split_asked_for(tmp_path):
    cfg = load_config(ROOT / "configs/quickstart.yaml", tiny_overrides(tmp_path))
    test = list(sweeps_of("sim:1", cfg, 2))
    val = list(sweeps_of("sim:1", cfg, 2, "val"))
    assert [sweep.meta["split"] for sweep in test] == ["test", "test"]
    assert [sweep.meta["split"] for sweep in val] == ["val", "val"]
    assert {sweep.name for sweep in test}.isdisjoint(sweep.name for sweep in val)
    assert not torch.equal(test[0].image, val[0].image)
    denser = next(sweeps_of("sim:3", cfg, 1, "val"))  # the same scene, three times the sensitivity
    assert denser.name == val[0].name and len(denser.events) > len(val[0].events)


def test_pipeline_changes_parse_their_values_and_unknown_keys_are_refused():
    cfg = load_config(None)
    changed = with_variant(cfg, "anchor_sigma_fraction=null,search.grid_size=12,contrast_estimator=kink")
    assert changed.pipeline.anchor_sigma_fraction is None and cfg.pipeline.anchor_sigma_fraction == 0.05
    assert changed.pipeline.search.grid_size == 12 and changed.pipeline.contrast_estimator == "kink"
    with pytest.raises(ConfigKeyError, match="nonsense"):
        with_variant(cfg, "nonsense=1")


def test_true_contrast_runs_give_the_net_k_times_the_sweeps_own_true_contrast(tmp_path):
    cfg = load_config(ROOT / "configs/quickstart.yaml", tiny_overrides(tmp_path, "pipeline.given_contrast_gain=2"))
    sweep = next(sweeps_of("sim:2", cfg, 1, "val", all_frames=True))
    net = EvRefocusNet(num_bins=cfg.data.num_bins, width=8, depth=2, event_gain_init=1.0, contrast="prior",
                       response_aware=cfg.model.event_response_aware)
    response = sweep.event_response if cfg.model.event_response_aware else "gamma"
    schedule = sweep.schedule
    truth = target_contrast(sweep, EventFocalStack.from_events(sweep.events, schedule.t_start_us, schedule.t_end_us,
                                                               cfg.data.efs_fine_bins), response)
    stripped, runs = true_contrast_runs(sweep, cfg, net, None, pipeline_config(cfg, sweep), [1.0, 1.5])
    assert stripped.frames is None and stripped.frame_times_us is None and stripped.name == sweep.name
    with torch.no_grad():
        contrasts = [run(stripped, "cpu").contrast for run in runs.values()]
    assert list(runs) == ["pipeline at 1x the true contrast", "pipeline at 1.5x the true contrast"]
    assert contrasts == pytest.approx([truth, 1.5 * truth], rel=1e-5)
    with pytest.raises(ValueError, match="rendered frames"):
        true_contrast_runs(stripped, cfg, net, None, pipeline_config(cfg, sweep), [1.0])


def test_true_contrast_scales_refuse_captures_fixed_gain_nets_and_non_positive_k():
    per_sweep = EvRefocusNet(num_bins=4, width=8, depth=2, event_gain_init=1.0, contrast="prior")
    check_true_contrast_inputs(["sim:1", "sim:3"], per_sweep, [0.8, 1.2])
    with pytest.raises(ValueError, match="captures/efs_dev is not simulated"):
        check_true_contrast_inputs(["sim:1", "captures/efs_dev"], per_sweep, [1.0])
    with pytest.raises(ValueError, match="no per-sweep contrast"):
        check_true_contrast_inputs(["sim:1"], EvRefocusNet(num_bins=4, width=8, depth=2, event_gain_init=1.0), [1.0])
    with pytest.raises(ValueError, match="no per-sweep contrast"):
        check_true_contrast_inputs(["sim:1"], None, [1.0])
    with pytest.raises(ValueError, match="every K must be > 0"):
        check_true_contrast_inputs(["sim:1"], per_sweep, [1.0, 0.0])
