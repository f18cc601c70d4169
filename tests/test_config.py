from pathlib import Path

import pytest

from evfocus.config import STAGE_METRICS, STAGES, ConfigError, load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_composes_and_validates(path):
    cfg = load_config(path)
    assert cfg.stage in STAGES


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_compose_in_order_and_overrides_win(tmp_path):
    write(tmp_path, "base.yaml", "seed: 1\ndata:\n  batch_size: 3\n  num_bins: 4\n")
    write(tmp_path, "mid.yaml", "defaults: [base]\ndata:\n  batch_size: 5\n")
    top = write(tmp_path, "top.yaml", "defaults: [mid.yaml]\nseed: 7\n")
    cfg = load_config(top, ["data.num_bins=9"])
    assert (cfg.seed, cfg.data.batch_size, cfg.data.num_bins) == (7, 5, 9)


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "bad.yaml", "data:\n  batch_sise: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid key 'data\.batch_sise'"):
        load_config(path)


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, "bad.yaml", "data:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"data\.batch_size.*many"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"command line 'optim\.lr=fast'"):
        load_config(None, ["optim.lr=fast"])


def test_missing_file_and_missing_default(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    path = write(tmp_path, "top.yaml", "defaults: [ghost]\n")
    with pytest.raises(ConfigError, match=r"top\.yaml: defaults entry 'ghost': config file not found: .*ghost\.yaml"):
        load_config(path)


def test_broken_interpolation_names_key_and_file(tmp_path):
    write(tmp_path, "base.yaml", "run_name: ${missing}\n")
    top = write(tmp_path, "top.yaml", "defaults: [base]\nseed: 3\n")
    with pytest.raises(ConfigError, match=r"base\.yaml: key 'run_name': Interpolation key 'missing' not found"):
        load_config(top)
    with pytest.raises(ConfigError, match=r"command line 'seed=\$\{data\.nope\}': key 'seed'.*'data\.nope'"):
        load_config(None, ["seed=${data.nope}"])
    with pytest.raises(ConfigError, match=r"key 'seed'"):  # resolves to a string in an int field
        load_config(None, ["run_name=abc", "seed=${run_name}"])
    assert load_config(None, ["data.val_sweeps=${data.test_sweeps}"]).data.val_sweeps == 16


def load_train_cli():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_cli", Path(__file__).parents[1] / "src" / "train.py")
    train_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_cli)
    return train_cli


def test_print_config_reports_a_broken_interpolation(capsys):
    assert load_train_cli().main(["--config", str(CONFIGS[0]), "--print-config", "run_name=${nope}"]) == 2
    assert "key 'run_name': Interpolation key 'nope' not found" in capsys.readouterr().err


def test_model_name_must_name_a_registered_network(capsys):
    from evfocus.models.registry import MODELS, build_refocus_net, check_model_name

    message = r"model\.name: 'nope' is not one of \[.*'evrefocusnet'.*\]"
    cfg = load_config(None, ["model.name=nope"])  # the schema cannot see the registry: checked when built
    with pytest.raises(ConfigError, match=message):
        check_model_name(cfg)
    assert load_train_cli().main(["--config", str(CONFIGS[0]), "--print-config", "model.name=nope"]) == 2
    assert "model.name: 'nope' is not one of ['apl', 'drbnet', 'evrefocusnet', 'ifan'" in capsys.readouterr().err
    for name, entry in MODELS.items():
        if "refocus" in entry.stages:
            assert build_refocus_net(load_config(None, [f"model.name={name}"])) is not None


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epochs=abc", r"trainer\.max_epochs: expected int or null, got 'abc'"),
    ("trainer.max_epochs=-5", r"trainer\.max_epochs: must be >= -1, got -5"),
    ("trainer.max_epochs=2.5", r"trainer\.max_epochs: expected int or null, got 2\.5"),
    ("trainer.max_epoch=3", r"trainer\.max_epoch: not an argument of lightning\.Trainer; did you mean "
                            r"'trainer\.max_epochs'\?"),
    ("trainer.enable_progress_bar=maybe", r"trainer\.enable_progress_bar: expected bool or null"),
    ("trainer.precision=33", r"trainer\.precision: expected one of \[64, 32, 16, .*'bf16-mixed'"),
    ("trainer.accumulate_grad_batches=0", r"trainer\.accumulate_grad_batches: must be >= 1"),
    ("trainer.limit_train_batches=1.5", r"trainer\.limit_train_batches: a float is a fraction"),
    ("trainer.gradient_clip_val=.nan", r"trainer\.gradient_clip_val: must be >= 0, got nan"),
    ("trainer.devices=[0,x]", r"trainer\.devices: expected list\[int\] or str or int"),
    ("trainer.strategy=7", r"trainer\.strategy: expected str or Strategy, got 7"),
    ("trainer.callbacks=[]", r"trainer\.callbacks: set by evfocus itself"),
])
def test_trainer_options_are_checked_against_the_trainer_signature(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_trainer_options_without_readable_annotations_are_checked_by_name(monkeypatch):
    """A Lightning whose annotations cannot be evaluated here: names are still checked, values are left to it."""
    import typing

    from evfocus import trainer_options

    def unreadable(*args, **kwargs):
        raise NameError("name '_PRECISION_INPUT' is not defined")

    trainer_options.trainer_parameters.cache_clear()
    monkeypatch.setattr(typing, "get_type_hints", unreadable)
    try:
        assert load_config(None, ["trainer.max_epochs=abc"]).trainer.max_epochs == "abc"
        with pytest.raises(ConfigError, match=r"did you mean 'trainer\.max_epochs'"):
            load_config(None, ["trainer.max_epoch=3"])
    finally:
        trainer_options.trainer_parameters.cache_clear()


def test_usual_trainer_options_pass():
    cfg = load_config(None, ["trainer.max_epochs=-1", "trainer.precision=bf16-mixed", "trainer.devices=[0,1]",
                             "trainer.strategy=ddp", "trainer.accelerator=gpu", "trainer.fast_dev_run=true",
                             "trainer.limit_val_batches=0.25", "trainer.val_check_interval=50",
                             "trainer.deterministic=warn", "trainer.max_time=00:12:00:00", "trainer.num_nodes=2",
                             "trainer.gradient_clip_val=0.5", "trainer.log_every_n_steps=10"])
    assert cfg.trainer.precision == "bf16-mixed" and list(cfg.trainer.devices) == [0, 1]


@pytest.mark.parametrize("overrides, message", [
    (["monitor=val/psnrr"], r"monitor: 'val/psnrr' is not a metric stage 'refocus' logs; one of \['val/psnr'"),
    (["stage=merge", "monitor=val/loss"], r"monitor: 'val/loss' is not a metric stage 'merge' logs"),
    (["stage=nope"], r"stage: 'nope' is not one of \['refocus', 'merge', 'joint', 'baseline'\]"),
    (["stage=baseline", "monitor=val/depth_abs_rel"], r"not a metric stage 'baseline' logs"),
])
def test_monitor_and_stage_must_exist(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_every_stage_metric_is_a_valid_monitor():
    for stage, metrics in STAGE_METRICS.items():
        for metric in metrics:
            assert load_config(None, [f"stage={stage}", f"monitor={metric}"]).monitor == metric


@pytest.mark.parametrize("override, message", [
    ("optim.lr=nan", r"optim\.lr: must be a finite number, got nan"),
    ("loss.l1=inf", r"loss\.l1: must be a finite number, got inf"),
    ("sim.near_m_range=[nan,0.5]", r"sim\.near_m_range\[0\]: must be a finite number"),
])
def test_non_finite_numbers_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_circular_defaults(tmp_path):
    write(tmp_path, "a.yaml", "defaults: [b]\n")
    write(tmp_path, "b.yaml", "defaults: [a]\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("override, message", [
    ("stage=dream", "stage: 'dream' is not one of"),
    ("sim.near_m_range=[2.0,1.0]", "low <= high"),
    ("sim.near_m_range=[1.0,4.0]", "must lie below sim.far_m_range"),
    ("sim.num_frames=1", "at least 2 frames"),
    ("data.crop_size=4096", "larger than the simulated image"),
    ("data.batch_size=0", "must be positive"),
    ("sim.near_m_range=[-1.0,0.2]", "must be positive"),
    ("pipeline.event_contrast=0", r"pipeline\.event_contrast: must be positive \(or null\), got 0"),
    ("pipeline.event_contrast=0.2", r"pipeline\.event_contrast: model\.contrast is null"),
    ("pipeline.given_contrast_gain=0", r"pipeline\.given_contrast_gain: must be a positive number, got 0"),
    ("pipeline.given_contrast_gain=nan", r"pipeline\.given_contrast_gain: must be a positive number, got nan"),
])
def test_semantic_validation(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        load_config(None, ["trainer.max_epochs"])


def test_config_is_read_only():
    cfg = load_config(None)
    with pytest.raises(Exception):  # noqa: B017 - omegaconf's ReadonlyConfigError
        cfg.seed = 3


# ----------------------------------------------------------------------------- sim.scene mirrors SceneConfig
def test_scene_schema_mirrors_scene_config_fields_and_defaults():
    import dataclasses

    from evfocus.sim.scene import PER_SWEEP_FIELDS, SceneConfig

    cfg = load_config(None)
    expected = {f.name: f.default for f in dataclasses.fields(SceneConfig) if f.name not in PER_SWEEP_FIELDS}
    assert dict(cfg.sim.scene) == expected
    assert {"min_size_fraction", "max_size_fraction", "max_feather_px"} <= set(cfg.sim.scene)


def test_ideal_event_model_defaults_are_the_models_own():
    from evfocus.sim.dvs import IdealParams

    ideal = load_config(None).sim.ideal
    for name in ("threshold_sigma", "refractory_us", "shot_noise_hz", "leak_hz"):
        assert ideal[name] == getattr(IdealParams, name), name


@pytest.mark.parametrize("override, field, value", [
    ("sim.scene.min_size_fraction=0.05", "min_size_fraction", 0.05),
    ("sim.scene.max_size_fraction=0.3", "max_size_fraction", 0.3),
    ("sim.scene.max_feather_px=3", "max_feather_px", 3.0),
    ("sim.scene.slant_probability=0.0", "slant_probability", 0.0),
    ("sim.scene.max_layers=4", "max_layers", 4),
])
def test_scene_keys_reach_the_simulators_scene_config(tmp_path, override, field, value):
    from evfocus.sim.simulator import SweepSimulator

    path = write(tmp_path, "exp.yaml", "sim:\n  scene:\n    min_layers: 1\n")
    cfg = load_config(path, [override])
    scene_cfg = SweepSimulator(cfg.sim, "train").scene_cfg
    assert getattr(scene_cfg, field) == value
    assert scene_cfg.min_layers == 1  # the YAML layer reaches it too


def test_excluded_photos_reach_the_simulators_textures():
    from evfocus.sim.simulator import SweepSimulator

    cfg = load_config(None, ["sim.excluded_photos=[coffee,chelsea]"])
    names = SweepSimulator(cfg.sim, "train").textures.photo_names
    assert names and "coffee" not in names and "chelsea" not in names
    assert {"coffee", "chelsea"} <= set(SweepSimulator(load_config(None, []).sim, "train").textures.photo_names)


def _textures_named_in(spec: object) -> set[str]:
    """Every ``tex`` value anywhere in a capture's ``scene_spec``."""
    if isinstance(spec, dict):
        own = {spec["tex"]} if isinstance(spec.get("tex"), str) else set()
        return own.union(*(_textures_named_in(value) for value in spec.values()))
    if isinstance(spec, list):
        return set().union(*(_textures_named_in(value) for value in spec))
    return set()


@pytest.mark.parametrize("folder", ["efs_dev", "efs_dev_dense"])
def test_the_release_config_keeps_the_captures_photographs_out_of_training(folder):
    """The shipped weights' capture scores are for unseen textures: no photograph that textures a development
    capture is among the release config's training photographs (docs/results.md)."""
    import json

    from samples import shared_samples

    from evfocus.sim.simulator import SweepSimulator

    metas = sorted((shared_samples() / folder / "meta").glob("*.json"))
    if not metas:
        pytest.skip(f"development sweeps not found at {shared_samples() / folder}")
    named = set().union(*(_textures_named_in(json.loads(meta.read_text())["scene_spec"]) for meta in metas))
    cfg = load_config(Path(__file__).parents[1] / "configs/release.yaml", [])
    training_photos = set(SweepSimulator(cfg.sim, "train").textures.photo_names)
    every_training_photo = set(SweepSimulator(load_config(None, []).sim, "train").textures.photo_names)
    assert named & every_training_photo, "the captures name none of our photographs: the check checks nothing"
    assert not named & training_photos


def test_zero_occluders_is_a_valid_scene_and_simulates():
    from evfocus.sim.simulator import SweepSimulator

    cfg = load_config(None, ["sim.scene.min_layers=0", "sim.scene.max_layers=0", "sim.height=24", "sim.width=24",
                             "sim.num_frames=4", "data.crop_size=16"])
    simulator = SweepSimulator(cfg.sim, "train")
    assert (simulator.scene_cfg.min_layers, simulator.scene_cfg.max_layers) == (0, 0)
    sweep = simulator.simulate(0)
    # background only: one depth everywhere
    assert sweep.depth_m.shape[-2:] == (24, 24) and float(sweep.depth_m.max() - sweep.depth_m.min()) < 1e-6


@pytest.mark.parametrize("override, message", [
    ("sim.scene.min_layers=-1", r"sim\.scene\.min_layers must be >= 0"),
    ("sim.scene.min_layers=7", r"sim\.scene\.max_layers=6 < min_layers=7"),
    ("sim.scene.max_feather_px=-1", r"sim\.scene\.max_feather_px must be >= 0"),
    ("sim.scene.max_feather_px=nan", r"sim\.scene\.max_feather_px must be finite"),
    ("sim.scene.min_size_fraction=0.9", r"sim\.scene: need 0 < min_size_fraction <= max_size_fraction"),
    ("sim.scene.max_size_fraction=0", r"sim\.scene: need 0 < min_size_fraction <= max_size_fraction"),
    ("sim.scene.slant_probability=1.5", r"sim\.scene\.slant_probability must be in \[0, 1\]"),
    ("sim.scene.near_m=1.0", r"invalid key 'sim\.scene\.near_m'"),  # drawn per sweep from sim.near_m_range
    ("sim.scene.max_feather_px=soft", r"sim\.scene\.max_feather_px"),
])
def test_bad_scene_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
