"""Random layered scenes and the texture bank: contracts, ranges, determinism, held-out splits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import evfocus.sim.textures as textures_module
from evfocus.sim.render import render_depth
from evfocus.sim.scene import Layer, Scene, SceneConfig, SceneConfigError, SceneError, sample_scene
from evfocus.sim.textures import PHOTO_NAMES, SPLITS, TextureBank, TextureError, photo_split

torch.set_num_threads(2)
SIZE = 48


def scene_for(seed: int, config: SceneConfig | None = None, split: str = "train", **bank_args) -> Scene:
    generator = torch.Generator().manual_seed(seed)
    return sample_scene(generator, SIZE, SIZE, config or SceneConfig(), TextureBank(split, **bank_args))


def scenes_equal(a: Scene, b: Scene) -> bool:
    return len(a.layers) == len(b.layers) and all(
        all(torch.equal(getattr(x, name), getattr(y, name)) for name in ("color_lin", "alpha", "depth_m"))
        for x, y in zip(a.layers, b.layers, strict=True))


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(("changes", "field"), [
    ({"min_layers": -1}, "min_layers"),
    ({"min_layers": 4, "max_layers": 3}, "max_layers"),
    ({"near_m": 0.0}, "near_m"),
    ({"near_m": 2.0, "far_m": 1.0}, "far_m"),
    ({"slant_probability": 1.5}, "slant_probability"),
    ({"min_size_fraction": 0.5, "max_size_fraction": 0.2}, "size_fraction"),
    ({"max_feather_px": -1.0}, "max_feather_px"),
    ({"far_m": float("inf")}, "far_m"),
])
def test_bad_scene_config_names_the_field(changes, field):
    with pytest.raises(SceneConfigError, match=field):
        SceneConfig(**changes)


def test_scene_config_round_trips_through_asdict():
    config = SceneConfig(min_layers=1, near_m=0.5)
    assert SceneConfig(**dataclasses.asdict(config)) == config


# ----------------------------------------------------------------------------- scenes
@pytest.mark.parametrize("seed", range(6))
def test_sampled_scene_meets_the_layer_contract(seed):
    config = SceneConfig(min_layers=2, max_layers=6, near_m=0.4, far_m=3.0)
    scene = scene_for(seed, config)
    assert 3 <= len(scene.layers) <= 7  # background + 2..6 occluders
    assert torch.all(scene.layers[0].alpha == 1)
    for layer in scene.layers:
        assert layer.color_lin.shape == (3, SIZE, SIZE) and layer.alpha.shape == (1, SIZE, SIZE)
        assert layer.color_lin.min() >= 0 and layer.color_lin.max() <= 1
        assert layer.alpha.min() >= 0 and layer.alpha.max() <= 1
        assert layer.depth_m.min() >= 0.4 * (1 - 1e-6) and layer.depth_m.max() <= 3.0 * (1 + 1e-6)
    depth = render_depth(scene)
    assert depth.min() >= 0.4 * (1 - 1e-6) and depth.max() <= 3.0 * (1 + 1e-6)


def test_fronto_parallel_layers_are_sorted_far_to_near():
    for seed in range(6):
        scene = scene_for(seed, SceneConfig(slant_probability=0.0))
        diopters = [float(1 / layer.depth_m[0, 0, 0]) for layer in scene.layers]
        assert all(torch.all(layer.depth_m == layer.depth_m[0, 0, 0]) for layer in scene.layers)
        assert diopters == sorted(diopters)  # nearer (more diopters) drawn later


def test_slanted_layers_are_planes_in_inverse_depth():
    """A 3-D plane seen by a pinhole camera has inverse depth affine in pixel coordinates."""
    scene = scene_for(3, SceneConfig(slant_probability=1.0, min_layers=3, max_layers=3))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    design = np.stack([np.ones(SIZE * SIZE), yy.ravel(), xx.ravel()], axis=1)
    slanted = 0
    for layer in scene.layers:
        diopter = (1 / layer.depth_m[0].double()).numpy().ravel()
        coefficients, *_ = np.linalg.lstsq(design, diopter, rcond=None)
        assert np.abs(design @ coefficients - diopter).max() < 1e-5
        slanted += int(np.abs(coefficients[1:]).max() > 1e-6)
    assert slanted >= 2  # the draw does tilt layers (a layer at the range's end cannot tilt)


def test_occluders_have_soft_edges_and_hard_zero_far_away():
    scene = scene_for(4, SceneConfig(min_layers=4, max_layers=4, max_feather_px=2.0))
    alphas = torch.cat([layer.alpha for layer in scene.layers[1:]])
    assert ((alphas > 0.02) & (alphas < 0.98)).any()  # feathered edges
    assert (alphas == 0).any() and (alphas == 1).any()


def test_same_seed_same_scene_and_different_seed_different_scene():
    assert scenes_equal(scene_for(11), scene_for(11))
    assert not scenes_equal(scene_for(11), scene_for(12))


def test_scene_rejects_broken_layers():
    ones = torch.ones(1, 8, 8)
    with pytest.raises(SceneError, match="opaque"):
        Scene([Layer(torch.rand(3, 8, 8), 0.5 * ones, ones)])
    with pytest.raises(SceneError, match="depth_m"):
        Layer(torch.rand(3, 8, 8), ones, -ones)
    with pytest.raises(SceneError, match=r"alpha must lie in \[0, 1\]"):
        Layer(torch.rand(3, 8, 8), 2 * ones, ones)
    with pytest.raises(SceneError, match="alpha must be"):
        Layer(torch.rand(3, 8, 8), torch.ones(1, 8, 9), ones)
    with pytest.raises(SceneError, match="at least"):
        Scene([])


# ----------------------------------------------------------------------------- textures
def test_photo_splits_are_disjoint_and_non_empty():
    by_split = {split: {name for name in PHOTO_NAMES if photo_split(name) == split} for split in SPLITS}
    assert set.union(*by_split.values()) == set(PHOTO_NAMES)
    assert sum(len(names) for names in by_split.values()) == len(PHOTO_NAMES)  # no name in two splits
    assert all(by_split.values())
    assert len(by_split["train"]) >= len(PHOTO_NAMES) // 2


def test_every_split_has_loadable_photos():
    for split in SPLITS:
        assert TextureBank(split).available_photos(), split


def test_texture_draws_only_photos_of_their_split(monkeypatch):
    requested = set()
    load = textures_module._load_photo

    def spy(name):
        requested.add(name)
        return load(name)

    monkeypatch.setattr(textures_module, "_load_photo", spy)
    bank = TextureBank("test", photo_probability=1.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        bank.sample(generator, 24, 24)
    assert requested and all(photo_split(name) == "test" for name in requested)


def test_excluded_photos_are_never_drawn(monkeypatch):
    requested = set()
    load = textures_module._load_photo
    monkeypatch.setattr(textures_module, "_load_photo", lambda name: requested.add(name) or load(name))
    train = [name for name in PHOTO_NAMES if photo_split(name) == "train"]
    kept = train[0]
    bank = TextureBank("train", photo_probability=1.0, excluded_photos=train[1:])
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        bank.sample(generator, 16, 16)
    assert requested == {kept}
    with pytest.raises(TextureError, match=r"sim.excluded_photos: unknown photograph\(s\) \['lena'\]"):
        TextureBank("train", excluded_photos=["lena"])
    emptied = TextureBank("train", photo_probability=1.0, excluded_photos=train)
    with pytest.raises(TextureError, match="excluded_photos"):
        emptied.sample(generator, 16, 16)


@pytest.mark.parametrize("photo_probability", [0.0, 1.0])
def test_textures_are_linear_rgb_in_range_and_deterministic(photo_probability):
    bank = TextureBank("train", photo_probability=photo_probability)
    draws = [bank.sample(torch.Generator().manual_seed(seed), 32, 40) for seed in (5, 5, 6)]
    assert draws[0].shape == (3, 32, 40) and draws[0].dtype == torch.float32
    assert draws[0].min() >= 0 and draws[0].max() <= 1
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_procedural_streams_differ_between_splits():
    same_seed = [TextureBank(split, photo_probability=0.0).sample(torch.Generator().manual_seed(7), 24, 24)
                 for split in SPLITS]
    assert not torch.equal(same_seed[0], same_seed[1]) and not torch.equal(same_seed[0], same_seed[2])


def test_texture_bank_rejects_bad_arguments():
    with pytest.raises(TextureError, match="split"):
        TextureBank("training")
    with pytest.raises(TextureError, match="photo_probability"):
        TextureBank("train", photo_probability=1.2)
    with pytest.raises(TextureError, match="seed_base"):
        TextureBank("train", seed_base=-1)
