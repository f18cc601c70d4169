"""The offline sweep runner (src/sweep.py, evfocus.sweeps): trials as wandb agent runs them, bayes fed
with the trials' metrics, resume, grid exhaustion, hyperband, and errors before any trial runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from sweep_fixtures import ROOT, write_sweep

from evfocus.sweeps.engine import TrialView, propose
from evfocus.sweeps.runner import SweepInterrupted, _trial_env, run_offline
from evfocus.sweeps.spec import SweepSpecError, load_spec
from evfocus.sweeps.store import SweepStore
from evfocus.training.cli import TrainArgsError, parse_train_args

FAKE = str(ROOT / "tests" / "fake_trial.py")


def fake_sweep(tmp_path: Path, parameters: dict, **extra) -> Path:
    """A sweep of tests/fake_trial.py (same command line as src/train.py) writing under tmp_path."""
    return write_sweep(tmp_path / "fake.yaml", {"runs_dir": {"value": str(tmp_path / "runs")}, **parameters},
                       program=FAKE, **extra)


def test_tiny_sweep_runs_three_trials_end_to_end(tiny_sweep):
    store = SweepStore(tiny_sweep.folder)
    trials = store.trials()
    assert [t["trial"] for t in trials] == ["tiny-000", "tiny-001", "tiny-002"]
    assert all(t["state"] == "finished" and t["returncode"] == 0 for t in trials)
    for trial in trials:
        run_dir = Path(trial["run_dir"])
        assert run_dir == tiny_sweep.root / "evfocus" / trial["trial"] and (run_dir / "results.json").is_file()
        assert trial["argv"][:3] == ["/usr/bin/env", sys.executable, str(ROOT / "src" / "train.py")]
        config = OmegaConf.load(run_dir / "config.yaml")
        # sampled values reach the trial's config exactly (float repr, bool, int)
        assert config.optim.lr == trial["params"]["optim.lr"] and type(config.optim.lr) is float
        assert config.data.flip is trial["params"]["data.flip"] and config.model.width == trial["params"]["model.width"]
        assert trial["summary"]["test/aif/pipeline/psnr"] > 0 and trial["summary"]["val/psnr"] > 0
    lines = (tiny_sweep.folder / "summary.csv").read_text().splitlines()
    psnr = [float(line.split(",")[2]) for line in lines[1:]]
    assert len(psnr) == 3 and psnr == sorted(psnr, reverse=True)
    assert (tiny_sweep.folder / "summary.md").read_text().count("| tiny-") == 3


def test_values_round_trip_exactly_through_the_agent_argv(tmp_path):
    spec = load_spec(write_sweep(tmp_path / "rt.yaml", {"optim.lr": {"values": [1e-3]}}))
    params = {"optim.lr": np.float64(1 / 3), "data.flip": np.bool_(False), "model.width": np.int64(12),
              "sim.near_m_range": np.array([1 / 7, 0.3]), "sim.event_model": "ideal"}
    argv = spec.argv(params)
    assert "optim.lr=0.3333333333333333" in argv and "data.flip=False" in argv
    assert "sim.near_m_range=[0.14285714285714285, 0.3]" in argv  # str(value), as wandb agent writes it
    cfg = spec.trial_config(params, "rt-000")
    assert cfg.optim.lr == 1 / 3 and cfg.data.flip is False and cfg.model.width == 12
    assert list(cfg.sim.near_m_range) == [1 / 7, 0.3] and cfg.run_name == "rt-000"


def test_bayes_proposal_follows_the_reported_metrics(tmp_path):
    spec = load_spec(write_sweep(tmp_path / "bayes.yaml", {
        "optim.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
        "model.width": {"values": [8, 16, 32]}}, method="bayes", metric={"name": "val/psnr", "goal": "maximize"}))
    configs = [(1e-4, 8), (3e-4, 32), (1e-3, 16), (3e-3, 8), (1e-2, 32)]

    def trials(psnr_of_lr) -> list[TrialView]:
        return [TrialView(f"t{i}", {"optim.lr": lr, "model.width": width}, "finished",
                          {"val/psnr": psnr_of_lr(lr)}, [{"val/psnr": psnr_of_lr(lr)}])
                for i, (lr, width) in enumerate(configs)]

    rising = trials(lambda lr: 20 + 10 * np.log10(lr / 1e-4))
    falling = trials(lambda lr: 40 - 10 * np.log10(lr / 1e-4))
    assert propose(spec, rising) == propose(spec, rising)  # seeded: only the metrics differ below
    assert propose(spec, rising) != propose(spec, falling)
    assert propose(spec, rising)["optim.lr"] > propose(spec, falling)["optim.lr"]


def test_interrupted_sweep_resumes_without_repeating_finished_trials(tmp_path, monkeypatch):
    path = fake_sweep(tmp_path, {"seed": {"values": [1, 2, 3, 4]}})
    first = run_offline(load_spec(path), count=2, poll_s=0.05)
    assert first.ran == 2
    marker = tmp_path / "interrupt"
    marker.touch()
    monkeypatch.setenv("FAKE_INTERRUPT", str(marker))
    with pytest.raises(SweepInterrupted, match="fake-002"):
        run_offline(load_spec(path), poll_s=0.05)
    resumed = run_offline(load_spec(path), poll_s=0.05)
    assert resumed.ran == 2
    trials = SweepStore(first.folder).trials()
    assert [t["trial"] for t in trials] == ["fake-000", "fake-001", "fake-003", "fake-004"]
    assert sorted(t["params"]["seed"] for t in trials) == [1, 2, 3, 4]  # the interrupted one ran again, once


def test_grid_exhausts_and_stops(tmp_path):
    path = fake_sweep(tmp_path, {"seed": {"values": [1, 2]}, "data.flip": {"values": [True, False]}},
                      metric={"name": "test/aif/pipeline/psnr", "goal": "maximize"})
    outcome = run_offline(load_spec(path), poll_s=0.05)
    assert outcome.ran == 4 and [row["seed"] for row in outcome.trials] == [2, 2, 1, 1]  # best first
    assert run_offline(load_spec(path), count=10, poll_s=0.05).ran == 0


def test_hyperband_stops_a_trailing_trial(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_EPOCH_S", "0.3")
    path = fake_sweep(tmp_path, {"seed": {"values": [9, 8, 1]}, "trainer.max_epochs": {"value": 6}},
                      metric={"name": "val/psnr", "goal": "maximize"},
                      early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2})
    outcome = run_offline(load_spec(path), poll_s=0.05)
    states = {row["seed"]: row["state"] for row in outcome.trials}
    assert states == {9: "finished", 8: "finished", 1: "stopped"}  # hyperband keeps the top half at each band
    assert len(SweepStore(outcome.folder).trials()[2]["history"]) < 6


def test_trials_share_the_sweep_group_and_run_as_the_agent_names_them(tmp_path):
    spec = load_spec(fake_sweep(tmp_path, {"seed": {"values": [1]}}))
    env = _trial_env(spec, "fake-007")
    assert env["WANDB_RUN_GROUP"] == "fake" and env["WANDB_RUN_ID"] == "fake-007"


@pytest.mark.parametrize(("body", "message"), [
    ("method: grid\nparameters: {seed: {values: [1, 2]}\n", "not valid YAML"),
    ("method: nope\nprogram: p\nparameters: {seed: {values: [1]}}\n", "not a valid wandb sweep"),
])
def test_bad_yaml_is_a_clear_error(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(SweepSpecError, match=message) as error:
        load_spec(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(("parameters", "message"), [
    ({"optim.lrr": {"values": [0.1]}}, "invalid key 'optim.lrr'"),
    ({"model.norm": {"values": ["group", "layer"]}}, "model.norm: 'layer' is not one of"),
    ({"optim.lr": {"distribution": "uniform", "min": -1.0, "max": 1.0}}, "optim.lr: must be positive"),
    ({"model.contrast": {"values": [None, "prior"]}}, "parameters.model.contrast: null"),
    ({"run_name": {"value": "x"}}, "parameters.run_name"),
])
def test_parameters_the_config_rejects_stop_before_any_trial(tmp_path, parameters, message):
    path = fake_sweep(tmp_path, parameters)
    with pytest.raises(SweepSpecError, match=message):
        load_spec(path)
    assert not (tmp_path / "runs").exists()


def test_command_must_pass_key_values_and_name_the_run(tmp_path):
    path = fake_sweep(tmp_path, {"seed": {"values": [1]}})
    config = yaml.safe_load(path.read_text())
    config["command"] = ["${env}", "${interpreter}", "${program}", "--config", "c.yaml", "${args}"]
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SweepSpecError, match="args_no_hyphens"):
        load_spec(path)
    config["command"][-1] = "${args_no_hyphens}"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SweepSpecError, match=r"run_name=\$\{oc.env:WANDB_RUN_ID,null\}"):
        load_spec(path)


def test_cli_reports_sweep_errors_with_status_2(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "src"))
    import sweep

    path = fake_sweep(tmp_path, {"optim.lrr": {"values": [0.1]}})
    assert sweep.main([str(path)]) == 2
    assert "sweep error" in capsys.readouterr().err
    assert sweep.main([str(fake_sweep(tmp_path, {"seed": {"values": [1]}}, method="random"))]) == 2
    assert "--count" in capsys.readouterr().err


def test_shipped_sweeps_are_valid(tmp_path):
    for name in ("refocus_tune", "sensor_robustness"):
        spec = load_spec(ROOT / "sweeps" / f"{name}.yaml")
        assert "${args_no_hyphens}" in spec.command
    config = yaml.safe_load((ROOT / "sweeps" / "compare_baselines.yaml").read_text())
    assert config["method"] == "grid" and config["parameters"]["seed"]["values"] == [0, 1, 2]
    methods = config["parameters"]["config"]["values"]
    assert [Path(m).stem for m in methods] == ["pipeline", "drbnet", "ifan", "kpac", "apl", "unet_image"]
    # the pipeline's entry loads today; the baselines' configs come with their training stage
    spec_path = tmp_path / "pipeline_only.yaml"
    config["parameters"]["config"]["values"] = [methods[0]]
    spec_path.write_text(yaml.safe_dump(config))
    cfg = load_spec(spec_path).trial_config({"config": methods[0], "seed": 1}, "compare-000")
    assert cfg.stage == "joint" and cfg.stack.merge_ckpt is None and cfg.seed == 1


def test_config_override_names_the_config_file():
    args = parse_train_args(["config=configs/quickstart.yaml", "seed=3"])
    assert args.config == "configs/quickstart.yaml" and args.overrides == ["seed=3"]
    with pytest.raises(TrainArgsError, match="exactly one config"):
        parse_train_args(["--config", "a.yaml", "config=b.yaml"])
    with pytest.raises(TrainArgsError, match="exactly one config"):
        parse_train_args(["seed=3"])


def test_summary_json_lists_are_kept(tmp_path):
    path = fake_sweep(tmp_path, {"sim.near_m_range": {"values": [[0.25, 0.3], [0.3, 0.5]]}})
    outcome = run_offline(load_spec(path), poll_s=0.05)
    assert [json.loads(row["sim.near_m_range"]) for row in outcome.trials] == [[0.25, 0.3], [0.3, 0.5]]
