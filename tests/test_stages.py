"""Stages merge and joint: the chain refocus → merge → joint, gradients, checkpoint hand-over and errors."""

import json
from pathlib import Path

import pytest
import torch
from tiny import tiny_overrides
from torch.utils.data import default_collate

from evfocus.checkpoints import CheckpointError, load_stage_checkpoint, resolve_checkpoint
from evfocus.config import ConfigError, load_config
from evfocus.data.stack_samples import stack_samples
from evfocus.sim.simulator import SweepSimulator
from evfocus.training.run import train
from evfocus.training.stack_module import StackModule
from evfocus.training.stages import build_stage

ROOT = Path(__file__).parents[1]


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    return tiny_overrides(tmp_path, "data.test_sweeps=2", "stack.max_slices=3", "trainer.max_epochs=1",
                          "logging.wandb.enabled=false", "logging.image_every_n_steps=0", *extra)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """refocus → merge → joint with the quickstart chain configs at tiny sizes; the three results."""
    tmp_path = tmp_path_factory.mktemp("chain")
    results = {}
    for config in ("quickstart", "quickstart_merge", "quickstart_joint"):
        results[config], _ = train(load_config(ROOT / f"configs/{config}.yaml", tiny(tmp_path)))
    return tmp_path, results


def test_each_stage_leaves_its_own_run_folder_named_by_stage(chain):
    _, results = chain
    names = [Path(r["run_dir"]).name for r in results.values()]
    assert names == ["quickstart-refocus", "quickstart-merge", "quickstart-joint"]
    assert [r["stage"] for r in results.values()] == ["refocus", "merge", "joint"]


def test_every_stage_scores_the_whole_aif_task_with_references(chain):
    _, results = chain
    for result in results.values():
        aif = result["aif"]
        assert {"pipeline", "gradient_merge", "integration", "integration_sim_fit", "identity"} <= aif["aif"].keys()
        assert all(aif["aif"][m]["psnr"] is not None for m in aif["aif"])
        assert set(aif["depth"]["pipeline"]) == {"abs_rel", "rmse_m", "rmse_diopter", "abs_rel_confident",
                                                 "confident_fraction"}
        assert aif["depth"]["mid_sweep"]["abs_rel"] > 0  # the constant-depth floor, for comparison
        assert aif["seconds_per_sweep"]["pipeline"] > 0 and aif["num_sweeps"] == 2
        assert aif["integration_contrast"] > 0 and aif["contrast_per_sweep"]["integration"] > 0
        assert result["refocus"]["model"]["psnr"] is not None
    joint = results["quickstart_joint"]
    assert joint["test"] == joint["aif"]["aif"]["pipeline"]
    assert {"identity", "gradient_merge", "integration"} <= joint["baselines"].keys()
    saved = json.loads((Path(joint["run_dir"]) / "results.json").read_text())
    assert saved["aif"]["aif"]["pipeline"]["psnr"] == pytest.approx(joint["test"]["psnr"])
    assert list((Path(joint["run_dir"]) / "samples").glob("test_aif_*.png"))


def test_merge_starts_from_the_refocus_run_and_keeps_it_frozen(chain):
    _, results = chain
    refocus = load_stage_checkpoint(Path(results["quickstart"]["run_dir"]), ("refocus",))
    merge = load_stage_checkpoint(Path(results["quickstart_merge"]["run_dir"]), ("merge",))
    for key, value in refocus.state_dict.items():
        if key.startswith("refocus_net."):
            assert torch.equal(value, merge.state_dict[key]), key
    joint = load_stage_checkpoint(Path(results["quickstart_joint"]["run_dir"]), ("joint",))
    assert joint.cfg.stack.slice_source == "search"


def test_the_stages_config_accepts_are_the_stages_built_and_log_their_monitor_metrics(chain):
    import csv

    from evfocus.config import STAGE_METRICS
    from evfocus.training.stages import STAGE_BUILDERS

    assert set(STAGE_BUILDERS) == set(STAGE_METRICS)
    _, results = chain
    for result in results.values():
        with (Path(result["run_dir"]) / "metrics.csv").open(newline="") as file:
            logged = {key for row in csv.DictReader(file) for key, value in row.items() if value}
        lpips_missing = result["refocus"]["model"]["lpips"] is None  # no backbone weights: LPIPS is not logged
        expected = {m for m in STAGE_METRICS[result["stage"]] if not (lpips_missing and m == "val/lpips")}
        assert expected <= logged, (result["stage"], expected - logged)


def test_merge_and_joint_gradients_reach_the_right_nets(tmp_path):
    cfg = load_config(ROOT / "configs/quickstart_merge.yaml", tiny(tmp_path, "stack.teacher_forcing=true"))
    sweep = SweepSimulator(cfg.sim, "train").simulate(0, list(range(16)))
    samples = stack_samples(sweep, 2, 32, torch.Generator().manual_seed(0), 3, 4, crop_size=32)
    batch = default_collate(samples)
    assert bool((batch["valid"].sum(dim=1) >= 2).all()), "the test needs slices to choose between"
    for stage, refocus_gets_gradients in (("merge", False), ("joint", True)):
        overrides = [f"stage={stage}", "stack.slice_source=search"] if stage == "joint" else []
        module = StackModule(dict(load_config(ROOT / "configs/quickstart_merge.yaml",
                                               tiny(tmp_path, "stack.teacher_forcing=true", *overrides))),
                             load_init_weights=False)
        module.train()
        loss = module.training_step(batch, 0)["loss"]
        loss.backward()
        assert torch.isfinite(loss)
        if stage == "merge":  # (the joint stage's searched slices may collapse to one: nothing to weigh)
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.merge_net.parameters())
        refocus_grads = [p.grad for p in module.refocus_net.parameters() if p.grad is not None]
        assert bool(refocus_grads and any(g.abs().sum() > 0 for g in refocus_grads)) == refocus_gets_gradients


def test_merge_without_a_refocus_checkpoint_is_a_config_error(tmp_path):
    cfg = load_config(ROOT / "configs/quickstart_merge.yaml", tiny(tmp_path, "stack.refocus_ckpt=null"))
    with pytest.raises(ConfigError, match=r"stack\.refocus_ckpt"):
        build_stage(cfg)


def test_checkpoint_errors_name_the_problem(tmp_path, chain):
    _, results = chain
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(CheckpointError, match="not a run folder"):
        resolve_checkpoint(tmp_path / "folder")
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_stage_checkpoint(tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="'refocus' checkpoint; expected a merge or joint"):
        load_stage_checkpoint(Path(results["quickstart"]["run_dir"]), ("merge", "joint"))
    cfg = load_config(ROOT / "configs/quickstart_merge.yaml",
                      tiny(tmp_path, "model.width=12", f"stack.refocus_ckpt={results['quickstart']['run_dir']}"))
    with pytest.raises(ConfigError, match="does not fit this config"):
        build_stage(cfg)


def test_checkpoints_from_before_the_event_gain_still_load(tmp_path, chain):
    from evfocus.checkpoints import load_weights
    from evfocus.models.registry import build_refocus_net

    _, results = chain
    source = resolve_checkpoint(Path(results["quickstart"]["run_dir"]))
    content = torch.load(source, weights_only=True)
    del content["hyper_parameters"]["cfg"]["model"]["event_gain_init"]
    del content["hyper_parameters"]["cfg"]["model"]["contrast"]  # added after the event gain
    del content["hyper_parameters"]["cfg"]["model"]["event_response_aware"]  # added later still
    del content["hyper_parameters"]["cfg"]["pipeline"]  # a section added later as well
    content["state_dict"] = {k: v for k, v in content["state_dict"].items() if not k.endswith("event_gain")}
    torch.save(content, tmp_path / "old.ckpt")
    old = load_stage_checkpoint(tmp_path / "old.ckpt", ("refocus",))
    assert old.cfg.model.event_gain_init is None and old.cfg.model.contrast is None
    assert old.cfg.model.event_response_aware is False  # integrated every sensor in the frame's log
    assert old.cfg.pipeline.search.grid_size > 0
    net = load_weights(build_refocus_net(old.cfg), old, "refocus_net.", "refocus net")
    assert net.event_gain is None


def test_the_merge_stage_can_train_on_the_slices_the_search_finds(tmp_path, monkeypatch):
    """``stack.slice_source=search`` is honoured by the merge stage too (it was silently ignored there)."""
    cfg = load_config(ROOT / "configs/quickstart_merge.yaml", tiny(tmp_path, "stack.slice_source=search"))
    sweep = SweepSimulator(cfg.sim, "train").simulate(0, list(range(16)))
    batch = default_collate(stack_samples(sweep, 2, 32, torch.Generator().manual_seed(0), 3, 4, crop_size=32))
    module = StackModule(dict(cfg), load_init_weights=False)
    module.train()
    searched = []
    original = module._searched_slices
    monkeypatch.setattr(module, "_searched_slices", lambda b: searched.append(1) or original(b))
    loss = module.training_step(batch, 0)["loss"]
    loss.backward()
    assert searched and torch.isfinite(loss)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in module.refocus_net.parameters())  # still frozen


def test_teacher_forcing_and_searched_slices_exclude_each_other(tmp_path):
    with pytest.raises(ConfigError, match="teacher_forcing"):
        load_config(ROOT / "configs/quickstart_merge.yaml",
                    tiny(tmp_path, "stack.teacher_forcing=true", "stack.slice_source=search"))


def test_the_refocus_stage_fine_tunes_from_another_runs_refocus_net(tmp_path, chain):
    _, results = chain
    source = load_stage_checkpoint(Path(results["quickstart_merge"]["run_dir"]), ("merge",))
    cfg = load_config(ROOT / "configs/quickstart.yaml",
                      tiny(tmp_path, f"stack.refocus_ckpt={results['quickstart_merge']['run_dir']}"))
    module, _ = build_stage(cfg)
    for name, value in module.refocus_net.state_dict().items():
        assert torch.equal(value, source.state_dict[f"refocus_net.{name}"].to(value.dtype)), name
    fresh, _ = build_stage(load_config(ROOT / "configs/quickstart.yaml", tiny(tmp_path)))
    assert not torch.equal(fresh.refocus_net.to_residual.weight, module.refocus_net.to_residual.weight)
    mismatched = load_config(ROOT / "configs/quickstart.yaml",
                             tiny(tmp_path, "model.width=12", f"stack.refocus_ckpt={results['quickstart']['run_dir']}"))
    with pytest.raises(ConfigError, match=r"stack\.refocus_ckpt: .*does not fit this config"):
        build_stage(mismatched)
