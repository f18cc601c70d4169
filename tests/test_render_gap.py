"""benchmarks/render_gap.py: a capture's sweep frames against our renderer given its all-in-focus image and depth."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evfocus.colour import srgb_encode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from render_gap import boundary_band, compare_capture, grey_frames, layered_scene  # noqa: E402

FRAMES = 6


def _two_plane_scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A textured near card (0.5 m) over a textured far wall (3 m): (sRGB AIF (3, 48, 64), depth (1, 48, 64))."""
    generator = torch.Generator().manual_seed(0)
    aif = srgb_encode(torch.rand(3, 48, 64, generator=generator))
    depth_m = torch.full((1, 48, 64), 3.0)
    depth_m[:, 12:36, 16:40] = 0.5
    return aif, depth_m


def _capture(root: Path, frames: torch.Tensor, aif: torch.Tensor, depth_m: torch.Tensor) -> None:
    """A capture folder in efs_dev's layout with the given grey sweep frames."""
    for sub in ("meta", "aif", "depth", "sweep_frames/scene"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    meta = {"focus_start_m": 0.3, "focus_end_m": 5.0, "simulator": {"n_input_frames": FRAMES},
            "renderer": {"focal_length_px": 100.0, "aperture_radius_m": 0.01, "max_coc_radius_px": 3.0}}
    (root / "meta/scene.json").write_text(json.dumps(meta))
    Image.fromarray((aif.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(root / "aif/scene.png")
    np.save(root / "depth/scene.npy", depth_m[0].numpy())
    for index, frame in enumerate(frames):
        grey = Image.fromarray((frame.numpy() * 255).round().astype(np.uint8))
        grey.save(root / f"sweep_frames/scene/{index:05d}.png")


def _focus() -> torch.Tensor:
    return torch.linspace(1 / 0.3, 1 / 5.0, FRAMES)


def test_frames_our_renderer_made_score_as_exact_and_another_lens_does_not(tmp_path):
    aif, depth_m = _two_plane_scene()
    aif = (aif * 255).round() / 255  # as the PNG will hold it
    blur_px_per_diopter = 2 * 100.0 * 0.01
    ours = grey_frames(layered_scene(aif, depth_m, 4), _focus(), blur_px_per_diopter)
    _capture(tmp_path / "same", ours, aif, depth_m)
    same = compare_capture(tmp_path / "same", "scene", 4)
    assert min(same["all"]) > 60  # identical up to float rounding at the 8-bit steps
    wider = grey_frames(layered_scene(aif, depth_m, 4), _focus(), 2 * blur_px_per_diopter)  # twice the aperture
    _capture(tmp_path / "wider", wider, aif, depth_m)
    other = compare_capture(tmp_path / "wider", "scene", 4)
    assert max(other["all"]) < 40
    assert len(other["all"]) == FRAMES and 0 < other["band_share"][0] < 1


def test_the_boundary_band_surrounds_the_depth_step_only():
    _, depth_m = _two_plane_scene()
    band = boundary_band(depth_m, 3)
    assert band[12, 16] and band[24, 16] and band[9, 20]  # on the card's edge and 3 px outside it
    assert not band[24, 28] and not band[2, 60]  # the card's middle, the wall's far corner
    assert not bool(boundary_band(torch.full((1, 20, 20), 2.0), 3).any())  # no step, no band


def test_a_capture_without_sweep_frames_is_named(tmp_path):
    aif, depth_m = _two_plane_scene()
    _capture(tmp_path, torch.zeros(0, 48, 64), aif, depth_m)
    (tmp_path / "sweep_frames/scene").rmdir()
    with pytest.raises(SystemExit, match="no sweep frames"):
        compare_capture(tmp_path, "scene", 4)
