from pathlib import Path

import pytest

from evfocus.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_composes_and_validates(path):
    cfg = load_config(path)
    assert cfg.stage in ("refocus", "merge", "joint", "baseline")


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
    with pytest.raises(ConfigError, match=r"ghost\.yaml"):
        load_config(path)


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

    from evfocus.config import SCENE_PER_SWEEP_FIELDS
    from evfocus.sim.scene import SceneConfig

    cfg = load_config(None)
    expected = {f.name: f.default for f in dataclasses.fields(SceneConfig) if f.name not in SCENE_PER_SWEEP_FIELDS}
    assert dict(cfg.sim.scene) == expected
    assert {"min_size_fraction", "max_size_fraction", "max_feather_px"} <= set(cfg.sim.scene)


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
