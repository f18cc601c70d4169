"""benchmarks/score_sweeps.py: simulated inputs come from the split asked for, at the sensitivity asked for;
``--pipeline`` changes are parsed like config overrides."""

import sys
from pathlib import Path

import pytest
import torch
from omegaconf.errors import ConfigKeyError
from tiny import tiny_overrides

from evfocus.config import load_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from compare_search import with_variant  # noqa: E402
from score_sweeps import sweeps_of  # noqa: E402


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
