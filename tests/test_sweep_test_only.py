"""test_ckpt: one trained model tested without training (what sweeps/sensor_robustness.yaml runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_fixtures import ROOT

from evfocus.config import ConfigError, load_config
from evfocus.training.run import train


def test_test_only_run_scores_a_checkpoint_on_other_sensor_settings(tiny_sweep):
    trained = tiny_sweep.root / "evfocus" / "tiny-000"
    before = (trained / "results.json").read_text()
    cfg = load_config(trained / "config.yaml", [f"test_ckpt={trained}", "run_name=sensor", "sim.event_model=ideal",
                                                "sim.ideal.threshold_range=[0.2,0.2]", "sim.ideal.shot_noise_hz=5.0"])
    results, objects = train(cfg)
    assert objects["run_dir"] == tiny_sweep.root / "evfocus" / "sensor" and results["global_step"] == 0
    assert Path(results["test_checkpoint"]).parent == trained / "checkpoints"
    assert results["test"]["psnr"] is not None and results["aif"]["aif"]["pipeline"]["psnr"] is not None
    assert json.loads((objects["run_dir"] / "results.json").read_text())["config"]["sim"]["event_model"] == "ideal"
    assert (trained / "results.json").read_text() == before  # the trained run is left alone


def test_test_only_checks_its_checkpoint_and_excludes_resuming(tmp_path):
    config = ROOT / "configs" / "quickstart.yaml"
    with pytest.raises(ConfigError, match="test_ckpt tests a checkpoint without training"):
        load_config(config, ["test_ckpt=a.ckpt", "ckpt_path=last"])
    cfg = load_config(config, [f"runs_dir={tmp_path}", f"test_ckpt={tmp_path / 'missing.ckpt'}"])
    with pytest.raises(ConfigError, match=r"test_ckpt: checkpoint .*missing\.ckpt does not exist"):
        train(cfg)
