"""The learned depth fusion: its features, its bounds, the untrained head *being* the fixed rule, its place in a
weights file, and ``src/train_depth_head.py`` end to end (features cached, best and last checkpoints, resume)."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import tiny_overrides

from evfocus.checkpoints import (
    CheckpointError,
    StageCheckpoint,
    load_depth_head,
    load_nets,
    load_stage_checkpoint,
    nets_fingerprint,
    save_weights,
    with_depth_head,
)
from evfocus.config import load_config
from evfocus.models.depth_head import NUM_FUSION_FEATURES, DepthHead
from evfocus.models.registry import build_merge_net, build_refocus_net
from evfocus.pipeline.aif import AIFPipeline
from evfocus.pipeline.depth_fusion import (
    CONFIDENCE,
    FOCUS_POSITION,
    MAX_SHIFT,
    MERGE_POSITION,
    fused_position,
    fusion_features,
    position_depth_m,
    slice_positions,
)
from evfocus.pipeline.settings import pipeline_config
from evfocus.sim.simulator import SweepSimulator

ROOT = Path(__file__).parents[1]


def _checkpoint(tmp: Path, stage: str = "merge") -> StageCheckpoint:
    cfg = load_config(ROOT / "configs/merge.yaml", tiny_overrides(tmp, "logging.wandb.enabled=false", f"stage={stage}"))
    torch.manual_seed(0)
    nets = {"refocus_net": build_refocus_net(cfg), "merge_net": build_merge_net(cfg)}
    state = {f"{prefix}.{key}": value for prefix, net in nets.items() for key, value in net.state_dict().items()}
    return StageCheckpoint(tmp / "random.ckpt", stage, cfg, state)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A merge-stage weights file of random tiny nets (48-px sweeps): the pipeline runs in well under a second."""
    tmp = tmp_path_factory.mktemp("weights")
    return save_weights(_checkpoint(tmp), tmp / "random.pt")


@pytest.fixture(scope="module")
def run(weights):
    """The pipeline of ``weights`` on one of its simulator's sweeps, with its nets."""
    checkpoint = load_stage_checkpoint(weights)
    nets = load_nets(checkpoint)
    sweep = SweepSimulator(checkpoint.cfg.sim, "test").simulate(5)
    config = pipeline_config(checkpoint.cfg, sweep, "cpu")
    return checkpoint, nets, sweep, config, AIFPipeline(*nets, config)(sweep, "cpu")


def _features(run) -> torch.Tensor:
    _, _, sweep, _, result = run
    return fusion_features(result.stack, result.weights, result.slice_times_us, sweep.schedule,
                           result.depth_confidence, result.aif)


def test_an_untrained_head_gives_the_fixed_rules_depth(run):
    # the head's last layer starts at zero, and fused_position with a zero correction is fuse_depths in sweep
    # units: the pipeline's depth must not move until the head has learned something
    _, nets, sweep, config, rule = run
    learned = AIFPipeline(*nets, config, depth_head=DepthHead().eval())(sweep, "cpu")
    assert torch.allclose(learned.depth_m, rule.depth_m, rtol=1e-4)
    assert torch.equal(learned.aif, rule.aif)  # the head changes the depth only


def test_a_trained_head_changes_the_depth_and_keeps_it_within_the_sweep(run):
    _, nets, sweep, config, rule = run
    head = DepthHead().eval()
    torch.manual_seed(1)
    torch.nn.init.normal_(head.layers[-1].weight, std=1.0)
    learned = AIFPipeline(*nets, config, depth_head=head)(sweep, "cpu")
    assert not torch.allclose(learned.depth_m, rule.depth_m, rtol=1e-2)
    schedule = sweep.schedule
    nearest_m, farthest_m = 1.0 / schedule.near_diopter, 1.0 / schedule.far_diopter
    assert learned.depth_m.min() >= nearest_m * (1 - 1e-4) and learned.depth_m.max() <= farthest_m * (1 + 1e-4)


def test_fusion_features_are_finite_and_positions_lie_within_the_sweep(run):
    _, _, sweep, _, result = run
    features = _features(run)
    assert features.shape == (NUM_FUSION_FEATURES, *sweep.image.shape[-2:]) and features.dtype == torch.float32
    assert torch.isfinite(features).all()
    for channel in (FOCUS_POSITION, MERGE_POSITION):
        assert features[channel].min() >= 0 and features[channel].max() <= 1
    assert torch.equal(features[CONFIDENCE], result.depth_confidence[0].float())


def test_slice_positions_run_far_to_near_linearly_in_diopters(run):
    _, _, sweep, _, _ = run
    schedule = sweep.schedule
    times = torch.tensor([schedule.t_start_us, schedule.t_end_us], dtype=torch.float64)
    positions = slice_positions(times, schedule).tolist()
    near_end = int(schedule.focus_diopter(times).argmax())  # the sweep's end focused nearest: position 1
    assert positions[near_end] == pytest.approx(1.0, abs=1e-6)
    assert positions[1 - near_end] == pytest.approx(0.0, abs=1e-6)
    depth = position_depth_m(torch.tensor([0.0, 0.5, 1.0]), schedule.near_diopter, schedule.far_diopter)
    middle_diopter = (schedule.near_diopter + schedule.far_diopter) / 2
    assert depth.tolist() == pytest.approx([1 / schedule.far_diopter, 1 / middle_diopter, 1 / schedule.near_diopter])


def test_fused_position_is_bounded_and_its_share_picks_either_depth():
    torch.manual_seed(0)
    features = torch.rand(2, NUM_FUSION_FEATURES, 5, 7)
    focus, merge = features[:, FOCUS_POSITION:FOCUS_POSITION + 1], features[:, MERGE_POSITION:MERGE_POSITION + 1]
    no_shift = torch.zeros(2, 1, 5, 7)
    all_focus = fused_position(features, torch.cat([torch.full_like(no_shift, 10.0), no_shift], dim=1))
    all_merge = fused_position(features, torch.cat([torch.full_like(no_shift, -10.0), no_shift], dim=1))
    assert torch.allclose(all_focus, focus) and torch.allclose(all_merge, merge)
    wild = fused_position(features, 1e6 * torch.randn(2, 2, 5, 7))
    assert wild.min() >= 0 and wild.max() <= 1
    rule = fused_position(features, torch.zeros(2, 2, 5, 7))
    pushed = fused_position(features, torch.cat([no_shift, torch.full_like(no_shift, 1e6)], dim=1))
    assert (pushed - rule).max() <= MAX_SHIFT + 1e-6


def test_a_weights_file_carries_the_head_and_loads_it(tmp_path, run):
    checkpoint = run[0]
    assert load_depth_head(checkpoint) is None  # none: the pipeline keeps the rule
    head = DepthHead()
    torch.nn.init.normal_(head.layers[-1].weight)
    head_file = tmp_path / "head.ckpt"
    torch.save({"state_dict": {f"depth_head.{key}": value for key, value in head.state_dict().items()},
                "hyper_parameters": {"settings": {"nets_sha256": nets_fingerprint(checkpoint)}}}, head_file)
    saved = save_weights(with_depth_head(checkpoint, head_file), tmp_path / "with_head.pt")
    loaded = load_depth_head(load_stage_checkpoint(saved))
    assert loaded is not None and not loaded.training
    for key, value in head.state_dict().items():  # fp16 on disk
        assert torch.allclose(loaded.state_dict()[key], value.half().float()), key


def test_a_depth_head_that_does_not_fit_or_is_missing_is_refused_by_name(tmp_path, run):
    checkpoint = run[0]
    no_head = tmp_path / "no_head.ckpt"
    torch.save({"state_dict": {"merge_net.x": torch.zeros(1)}}, no_head)
    with pytest.raises(CheckpointError, match=r"no_head\.ckpt: no depth head weights"):
        with_depth_head(checkpoint, no_head)
    narrow = tmp_path / "narrow.ckpt"
    state = {f"depth_head.{key}": value for key, value in DepthHead(hidden=8).state_dict().items()}
    torch.save({"state_dict": state}, narrow)
    with pytest.raises(CheckpointError, match=r"narrow\.ckpt: its depth head does not fit"):
        with_depth_head(checkpoint, narrow)
    unchecked = tmp_path / "unchecked.ckpt"
    state = {f"depth_head.{key}": value for key, value in DepthHead().state_dict().items()}
    torch.save({"state_dict": state}, unchecked)
    with pytest.warns(UserWarning, match=r"unchecked\.ckpt: records no fingerprint"):
        with_depth_head(checkpoint, unchecked)
    other_nets = tmp_path / "other_nets.ckpt"
    retrained = {key: value + 1e-2 if key.startswith("merge_net.") and value.is_floating_point() else value
                 for key, value in checkpoint.state_dict.items()}
    trained_for = nets_fingerprint(StageCheckpoint(checkpoint.path, "merge", checkpoint.cfg, retrained))
    torch.save({"state_dict": state, "hyper_parameters": {"settings": {"nets_sha256": trained_for}}}, other_nets)
    with pytest.raises(CheckpointError, match=r"other_nets\.ckpt: this depth head was trained on the outputs of other"):
        with_depth_head(checkpoint, other_nets)
    refocus_only = StageCheckpoint(tmp_path / "refocus.ckpt", "refocus", checkpoint.cfg, checkpoint.state_dict)
    with pytest.raises(CheckpointError, match="'refocus' checkpoint; a depth head mixes the depths of a merge net"):
        with_depth_head(refocus_only, narrow)


def _train_depth_head():
    spec = importlib.util.spec_from_file_location("train_depth_head_cli", ROOT / "src" / "train_depth_head.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_depth_head_caches_features_checkpoints_resumes_and_exports(tmp_path, weights):
    script = _train_depth_head()
    run_dir = tmp_path / "head"
    common = ["--weights", str(weights), "--run-dir", str(run_dir), "--train-sweeps", "4", "--val-sweeps", "2",
              "--val-k1-scales", "1", "--batch-size", "2", "--val-every-epochs", "1", "--workers", "0"]
    assert script.main([*common, "--steps", "4"]) == 0
    chunks = sorted(path.name for path in (run_dir / "features").iterdir())
    assert chunks == ["train-00000-00003.pt", "val-k1-00000-00001.pt"]
    stamps = {path: path.stat().st_mtime_ns for path in (run_dir / "features").iterdir()}
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and list((run_dir / "checkpoints").glob("best-*.ckpt"))
    wandb_id = (run_dir / "wandb_id.txt").read_text()
    assert script.main([*common, "--steps", "6", "--resume"]) == 0
    # one wandb run (offline here), continued on resume: each start's folder ends in the run's id
    assert (run_dir / "wandb_id.txt").read_text() == wandb_id
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert runs and all(run.name.endswith(wandb_id) and list(run.glob("*.wandb")) for run in runs)
    assert {path: path.stat().st_mtime_ns for path in (run_dir / "features").iterdir()} == stamps  # reused
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 6
    with (run_dir / "metrics.csv").open() as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/abs_rel")]
    assert len(rows) == 3 and all(float(row["val/val-k1/rule_abs_rel"]) > 0 for row in rows)

    exported = tmp_path / "with_head.pt"
    done = subprocess.run([sys.executable, str(ROOT / "src" / "export_weights.py"), str(weights), str(exported),
                           "--depth-head", str(run_dir)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert load_depth_head(load_stage_checkpoint(exported)) is not None
    # the head knows its nets: a float32 checkpoint and its float16 weights file share the fingerprint
    fingerprint = json.loads((run_dir / "run.json").read_text())["settings"]["nets_sha256"]
    assert fingerprint == nets_fingerprint(load_stage_checkpoint(weights)) == nets_fingerprint(_checkpoint(tmp_path))


def test_train_depth_head_refuses_bad_settings_by_name(tmp_path, weights, capsys):
    script = _train_depth_head()
    with pytest.raises(SystemExit):
        script.main(["--weights", str(weights), "--run-dir", str(tmp_path), "--steps", "0"])
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert script.main(["--weights", str(weights), "--run-dir", str(tmp_path), "--resume"]) == 2
    assert "last.ckpt does not exist" in capsys.readouterr().err
    refocus = save_weights(_checkpoint(tmp_path, "refocus"), tmp_path / "refocus.pt")
    assert script.main(["--weights", str(refocus), "--run-dir", str(tmp_path / "x")]) == 2
    assert "--weights" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps({"settings": {"nets_sha256": "0" * 64}}))
    assert script.main(["--weights", str(weights), "--run-dir", str(tmp_path / "old")]) == 2
    assert "holds features and checkpoints of other nets" in capsys.readouterr().err
