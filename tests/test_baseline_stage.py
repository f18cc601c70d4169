"""Stage ``baseline``: configs, the model.name check, training data, each paper's loss, a run through
``src/train.py`` per baseline, and ``src/aif.py`` on a baseline checkpoint.

The CLI runs call ``main`` of ``src/train.py`` / ``src/aif.py`` in-process (the code ``__main__`` runs): a
subprocess per baseline would pay its imports five times over.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from tiny import tiny_overrides
from torch.utils.data import default_collate

from evfocus.checkpoints import CheckpointError, load_baseline, load_nets, load_stage_checkpoint
from evfocus.config import ConfigError, load_config
from evfocus.data.baseline_samples import UnpairedSharpPool, baseline_samples, signed_defocus_px
from evfocus.events.stream import EventStream
from evfocus.models.baselines import BASELINES
from evfocus.models.registry import check_model_name
from evfocus.optics import FocusSchedule
from evfocus.sim.simulator import SweepSimulator
from evfocus.sweep import Sweep
from evfocus.training.aif_eval import AIF_METHODS, DEPTH_KEYS
from evfocus.training.baseline_module import BaselineModule
from evfocus.training.run import train

ROOT = Path(__file__).parents[1]
NAMES = sorted(BASELINES)


def slow_except(*fast: str) -> list:
    """NAMES with every name but ``fast`` marked slow (their runs take over 20 s on a shared 2-core CPU)."""
    return [name if name in fast else pytest.param(name, marks=pytest.mark.slow) for name in NAMES]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_cli", ROOT / "src" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    return tiny_overrides(tmp_path, "logging.wandb.enabled=false", "data.test_sweeps=1", *extra)


# --- configs and the registry -------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_each_baseline_has_a_cpu_and_a_paper_config(name):
    for suffix, preset in (("", "cpu"), ("_paper", "paper")):
        cfg = load_config(ROOT / "configs" / "baselines" / f"{name}{suffix}.yaml")
        assert (cfg.stage, cfg.model.name, cfg.model.preset) == ("baseline", name, preset)
        check_model_name(cfg)
    cpu = load_config(ROOT / "configs" / "baselines" / f"{name}.yaml")
    quickstart = load_config(ROOT / "configs" / "quickstart.yaml")
    assert cpu.sim == quickstart.sim and cpu.data.crop_size == quickstart.data.crop_size  # the pipeline's data


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.name=nope"], r"model\.name: 'nope' is not one of \['apl', 'drbnet', 'evrefocusnet', 'ifan', 'kpac', "
                          r"'unet_image'\]"),
    (["model.name=evrefocusnet"], r"'evrefocusnet' is trained by stage refocus or merge or joint, not 'baseline'; "
                                  r"stage 'baseline' trains \['apl', 'drbnet', 'ifan', 'kpac', 'unet_image'\]"),
    (["stage=refocus"], r"'kpac' is trained by stage baseline, not 'refocus'"),
    (["model.preset=huge"],
     r"model\.preset: 'huge' is not a preset of kpac; one of \['cpu', 'paper', 'paper_3level'\]"),
    (["model.options.widht=3"], r"model\.options: \['widht'\] are not arguments of kpac"),
])
def test_model_name_preset_and_options_are_checked_before_anything_runs(overrides, message, capsys):
    cfg = load_config(ROOT / "configs" / "baselines" / "kpac.yaml", overrides)
    with pytest.raises(ConfigError, match=message):
        check_model_name(cfg)
    args = ["--config", str(ROOT / "configs" / "baselines" / "kpac.yaml"), "--print-config", *overrides]
    assert load_script("train").main(args) == 2
    assert "config error: model." in capsys.readouterr().err


# --- training data -----------------------------------------------------------------------------------

def two_plane_sweep() -> Sweep:
    """A 4×4 sweep focused at 0.5 m when its frame is taken: the left half at 0.25 m, the right at 2 m."""
    depth = torch.full((1, 4, 4), 2.0)
    depth[..., :2] = 0.25
    image = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    return Sweep("planes", image, 0, EventStream.empty(4, 4), FocusSchedule(0, 1000, 0.5, 4.0), aif=image,
                 depth_m=depth, meta={"blur_px_per_diopter": 3.0})


def test_signed_defocus_is_the_blur_diameter_nearer_positive():
    defocus = signed_defocus_px(two_plane_sweep())
    assert torch.allclose(defocus[..., :2], torch.tensor(3.0 * (4.0 - 2.0)))  # nearer than the focus
    assert torch.allclose(defocus[..., 2:], torch.tensor(3.0 * (0.5 - 2.0)))  # farther


def test_unpaired_sharp_crops_come_from_earlier_sweeps():
    generator = torch.Generator().manual_seed(0)
    pool = UnpairedSharpPool(capacity=3, generator=generator)
    first = pool.attach(baseline_samples(two_plane_sweep(), 2, generator, crop_size=2))
    assert first[0]["sharp"] is first[1]["aif"] and first[1]["sharp"] is first[0]["aif"]  # no predecessor yet
    second = pool.attach(baseline_samples(two_plane_sweep(), 4, generator, crop_size=2))
    earlier = [sample["aif"] for sample in first]
    assert all(any(sample["sharp"] is crop for crop in earlier) for sample in second)
    assert len(pool.crops) == 3


def test_sweeps_simulated_without_events_keep_their_scene_and_truth(tmp_path):
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", tiny(tmp_path))
    simulator = SweepSimulator(cfg.sim, "train")
    full, image_only = simulator.simulate(5), simulator.simulate(5, events=False)
    assert len(full.events) > 0 and len(image_only.events) == 0
    assert torch.equal(full.aif, image_only.aif) and torch.equal(full.depth_m, image_only.depth_m)
    assert (full.image - image_only.image).abs().mean() < 0.02  # the same frame, another camera-noise draw


# --- each paper's loss -------------------------------------------------------------------------------

def tiny_batch(cfg) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    pool = UnpairedSharpPool(8, generator)
    simulator = SweepSimulator(cfg.sim, "train")
    samples = [s for seed in (1, 2) for s in pool.attach(baseline_samples(simulator.simulate(seed, events=False), 2,
                                                                          generator, crop_size=32))]
    return default_collate(samples)


@pytest.mark.parametrize("name", slow_except("apl"))
def test_each_baseline_loss_falls_on_a_fixed_tiny_batch(name, tmp_path):
    """The stage's own loss (with IFAN's reblurring and defocus terms, APL's adversarial one against a frozen
    discriminator) falls under a few optimizer steps; APL's discriminator loss falls too."""
    torch.manual_seed(0)
    cfg = load_config(ROOT / "configs" / "baselines" / f"{name}.yaml", tiny(tmp_path))
    module = BaselineModule(dict(cfg))
    batch = tiny_batch(cfg)
    expected = {"ifan": {"l1", "ssim", "reblur", "defocus"}, "apl": {"adversarial"}}.get(name, {"l1", "ssim"})
    assert set(module.network_loss(batch)[1]) == expected
    params = [p for n, p in module.named_parameters() if not n.startswith("discriminator.")]
    optimizer = torch.optim.Adam(params, lr=cfg.optim.lr)  # IFAN's config has its paper's 1e-4
    losses = []
    for _ in range(15):
        total, _, _ = module.network_loss(batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert min(losses[-3:]) < 0.9 * losses[0], losses
    if module.discriminator is not None:
        with torch.no_grad():
            pred = module.net(batch["image"])
        optimizer = torch.optim.Adam(module.discriminator.parameters(), lr=2e-3)
        losses = []
        for _ in range(15):
            loss = module.discriminator_loss(batch, pred)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert min(losses[-3:]) < 0.9 * losses[0], losses


# --- through src/train.py and src/aif.py -------------------------------------------------------------

@pytest.mark.parametrize("name", slow_except("drbnet", "ifan", "kpac", "unet_image"))
def test_fast_dev_run_through_src_train_py_fills_the_pipelines_results_schema(name, tmp_path):
    config = ROOT / "configs" / "baselines" / f"{name}.yaml"
    assert load_script("train").main(["--config", str(config), *tiny(tmp_path, "trainer.fast_dev_run=true")]) == 0
    results = json.loads((tmp_path / "runs" / "evfocus" / f"baseline-{name}" / "results.json").read_text())
    aif = results["aif"]
    assert results["stage"] == "baseline" and results["config"]["model"]["name"] == name
    assert list(aif["aif"]) == list(AIF_METHODS)
    assert aif["aif"]["pipeline"]["psnr"] is not None and results["test"] == aif["aif"]["pipeline"]
    assert all(aif["aif"]["gradient_merge"][key] is None for key in ("psnr", "ssim", "lpips"))  # no stack to merge
    assert aif["aif"]["integration"]["psnr"] is not None and aif["aif"]["identity"]["psnr"] is not None
    assert set(aif["depth"]["pipeline"]) == set(DEPTH_KEYS)
    assert all(value is None for value in aif["depth"]["pipeline"].values())  # baselines report no depth
    assert aif["depth"]["integration"]["abs_rel"] is not None
    assert aif["seconds_per_sweep"]["pipeline"] > 0 and aif["num_sweeps"] == 1
    assert aif["refocus_calls_per_sweep"] is None and aif["slices_per_sweep"] is None
    assert {"identity", "integration"} <= results["baselines"].keys()
    assert results["refocus"]["model"]["psnr"] is None


@pytest.fixture(scope="module")
def kpac_run(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("kpac")
    results, _ = train(load_config(ROOT / "configs" / "baselines" / "kpac.yaml",
                                   tiny(tmp_path, "trainer.max_epochs=1", "logging.image_every_n_steps=0")))
    return Path(results["run_dir"])


def test_aif_py_runs_a_baseline_checkpoint_and_says_which_model_ran(kpac_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert load_script("aif").main(["--ckpt", str(kpac_run), "--input", "sim:3", "--out", str(out)]) == 0
    folder = out / "sim-test-3"
    assert sorted(p.name for p in folder.iterdir()) == ["aif.png", "report.json"]
    report = json.loads((folder / "report.json").read_text())
    assert report["checkpoint"]["model"] == "kpac" and report["checkpoint"]["stage"] == "baseline"
    assert "no depth map" in report["checkpoint"]["note"] and report["outputs"] == ["aif.png", "report.json"]
    assert report["metrics"]["aif"]["psnr"] > 0 and "depth" not in report["metrics"]
    assert "image only (kpac)" in capsys.readouterr().err


def test_baseline_checkpoints_load_as_baselines_only(kpac_run):
    checkpoint = load_stage_checkpoint(kpac_run, ("baseline",))
    net = load_baseline(checkpoint)
    assert net(torch.rand(1, 3, 13, 17)).shape == (1, 3, 13, 17)
    with pytest.raises(CheckpointError, match="image-only baseline"):
        load_nets(checkpoint)
