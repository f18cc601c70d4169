"""Focal-sweep renderer: disk OTF, borders, occlusion, focus behaviour, sRGB.

References are independent of the code under test: scipy's J1, supersampled spatial disk
kernels convolved with scipy, hand-built scenes with known answers, and physical invariants.
"""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.signal import convolve2d
from scipy.special import j1

import evfocus.sim.render as render_module
from evfocus.colour import srgb_decode, srgb_encode
from evfocus.sim.render import (
    RenderError,
    disk_blur,
    disk_otf,
    luma,
    radial_frequency,
    render_all_in_focus,
    render_depth,
    render_focal_frames,
)
from evfocus.sim.scene import Layer, Scene

torch.set_num_threads(2)


def disk_kernel(diameter_px: float, subsamples: int = 16) -> np.ndarray:
    """Spatial disk PSF: the fraction of each pixel inside the disk (supersampled), unit sum."""
    half = int(np.ceil(diameter_px / 2)) + 1
    offsets = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    coords = (np.arange(-half, half + 1)[:, None] + offsets[None, :]).reshape(-1)
    inside = coords[:, None] ** 2 + coords[None, :] ** 2 <= (diameter_px / 2) ** 2
    kernel = inside.reshape(2 * half + 1, subsamples, 2 * half + 1, subsamples).mean(axis=(1, 3))
    return kernel / kernel.sum()


def spatial_blur(image: np.ndarray, diameter_px: float) -> np.ndarray:
    """Reference: half-sample symmetric padding + direct convolution with the spatial disk."""
    if diameter_px == 0:
        return image
    kernel = disk_kernel(diameter_px)
    pad = kernel.shape[0] // 2
    return convolve2d(np.pad(image, pad, mode="symmetric"), kernel, mode="valid")


def flat_layer(value: float | np.ndarray, alpha: np.ndarray, depth_m: float) -> Layer:
    height, width = alpha.shape
    colour = torch.as_tensor(np.broadcast_to(value, (3, height, width)).copy(), dtype=torch.float32)
    return Layer(colour, torch.as_tensor(alpha, dtype=torch.float32)[None],
                 torch.full((1, height, width), float(depth_m)))


def textured_layer(seed: int, alpha: np.ndarray, depth_m: float) -> Layer:
    rng = np.random.default_rng(seed)
    colour = rng.random((3, *alpha.shape))
    return flat_layer(colour, alpha, depth_m)


def gradient_energy(image: torch.Tensor) -> torch.Tensor:
    """Sum of squared forward differences over the last two dims (a standard focus measure)."""
    return (image.diff(dim=-1) ** 2).sum(dim=(-2, -1)) + (image.diff(dim=-2) ** 2).sum(dim=(-2, -1))


# ----------------------------------------------------------------------------- OTF
def test_disk_otf_matches_analytic_jinc_and_is_one_at_dc():
    diameters = torch.tensor([0.0, 1.3, 4.0, 17.5])
    otf = disk_otf(diameters, 48, 40)
    rho = radial_frequency(48, 40).double().numpy()
    for index, diameter in enumerate(diameters.tolist()):
        x = np.pi * diameter * rho
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = np.where(x == 0, 1.0, 2 * j1(x) / x)
        assert np.abs(otf[index].numpy() - expected).max() < 1e-5
    assert torch.all(otf[:, 0, 0] == 1.0)
    assert torch.all(otf[0] == 1.0)  # a zero-diameter disk passes everything


@pytest.mark.parametrize("diameter_px", [3.0, 6.5, 12.0, 30.0])
def test_disk_blur_matches_spatial_disk_convolution(diameter_px):
    # Mildly smooth like a natural image: at pixel scale the band-limited (analytic) disk and the
    # pixel-coverage disk legitimately differ, which white noise would magnify.
    image = gaussian_filter(np.random.default_rng(0).random((48, 56)), 1.0)
    blurred = disk_blur(torch.tensor(image, dtype=torch.float32)[None, None], torch.tensor([diameter_px]))
    reference = spatial_blur(image, diameter_px)
    wrong_scale = spatial_blur(image, 1.15 * diameter_px)  # a 15% error in D (e.g. radius vs diameter)
    error = blurred[0, 0].double().numpy() - reference
    rms = np.sqrt((error**2).mean())
    assert rms < 0.25 * np.sqrt(((wrong_scale - reference) ** 2).mean())
    assert np.abs(error).max() < 0.005


def test_zero_diameter_blur_is_identity():
    image = torch.rand(2, 3, 33, 47)
    out = disk_blur(image, torch.zeros(2))
    assert torch.allclose(out, image, atol=2e-6, rtol=0)


def test_blur_conserves_mean_and_constant_images():
    image = torch.rand(3, 1, 40, 52)
    diameters = torch.tensor([2.5, 19.0, 140.0])  # the last is wider than the image (one-period path)
    out = disk_blur(image, diameters)
    assert torch.allclose(out.mean(dim=(-2, -1)), image.mean(dim=(-2, -1)), atol=1e-5)
    constant = disk_blur(torch.full((1, 1, 20, 30), 0.37), torch.tensor([9.0]))
    assert torch.allclose(constant, torch.full_like(constant, 0.37), atol=1e-6)


def test_bad_blur_arguments_raise():
    with pytest.raises(RenderError, match="diameter_px"):
        disk_blur(torch.rand(1, 1, 8, 8), torch.tensor([-1.0]))
    with pytest.raises(RenderError, match=r"\(N,C,H,W\)"):
        disk_blur(torch.rand(1, 8, 8), torch.tensor([1.0]))


# ----------------------------------------------------------------------------- scenes
def test_single_layer_frame_in_focus_equals_all_in_focus():
    depth_m = 0.8
    scene = Scene([textured_layer(1, np.ones((40, 44)), depth_m)])
    frames = render_focal_frames(scene, torch.tensor([1 / depth_m, 0.2]), 10.0, channels="rgb")
    aif = render_all_in_focus(scene)
    assert torch.allclose(frames[0], aif, atol=1e-5)
    assert (frames[1] - aif).abs().max() > 0.05  # far out of focus: visibly different


def test_single_opaque_layer_conserves_mean_at_every_focus():
    scene = Scene([textured_layer(2, np.ones((36, 50)), 1.5)])
    focus = torch.linspace(4.0, 0.1, 9)
    frames = render_focal_frames(scene, focus, 30.0, channels="rgb")
    aif_mean = render_all_in_focus(scene).mean(dim=(-2, -1))
    assert torch.allclose(frames.mean(dim=(-2, -1)), aif_mean.expand(9, 3), atol=1e-5)


def test_two_layer_render_matches_spatial_reference():
    """Cropped windows, packed FFTs and compositing vs. full-frame spatial convolution in NumPy."""
    height, width, k = 40, 48, 8.0
    yy, xx = np.mgrid[:height, :width]
    alpha = np.clip(9.5 - np.hypot(yy - 14, xx - 30), 0, 1)  # a soft disk near the top right
    background, occluder = textured_layer(3, np.ones((height, width)), 4.0), textured_layer(4, alpha, 0.5)
    scene = Scene([background, occluder])
    focus = torch.tensor([2.0, 0.7, 1.5])
    frames = render_focal_frames(scene, focus, k, channels="luma")[:, 0].double().numpy()
    weights = np.array([0.2126, 0.7152, 0.0722])[:, None, None]
    bg_luma = (weights * background.color_lin.double().numpy()).sum(0)
    fg_luma = (weights * occluder.color_lin.double().numpy()).sum(0)
    for index, focus_diopter in enumerate(focus.tolist()):
        d_bg, d_fg = k * abs(1 / 4.0 - focus_diopter), k * abs(1 / 0.5 - focus_diopter)
        blurred_alpha = spatial_blur(alpha, d_fg)
        expected = spatial_blur(fg_luma * alpha, d_fg) + (1 - blurred_alpha) * spatial_blur(bg_luma, d_bg)
        error = frames[index] - expected
        assert np.sqrt((error**2).mean()) < 0.01, index
        assert np.abs(error).max() < 0.05, index


def disk_overlap_fraction(distance: np.ndarray, big_radius: float, small_radius: float) -> np.ndarray:
    """Fraction of a disk (small_radius) centred ``distance`` away that overlaps a disk (big_radius)."""
    d = np.clip(distance, big_radius - small_radius + 1e-9, big_radius + small_radius - 1e-9)
    r, R = small_radius, big_radius
    area = (r**2 * np.arccos((d**2 + r**2 - R**2) / (2 * d * r))
            + R**2 * np.arccos((d**2 + R**2 - r**2) / (2 * d * R))
            - 0.5 * np.sqrt((-d + r + R) * (d + r - R) * (d - r + R) * (d + r + R)))
    return np.where(distance >= R + r, 0.0, area / (np.pi * r**2))


def test_blurred_near_occluder_spills_over_background():
    height, width = 64, 64
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot(yy - 32, xx - 32)
    mask = (distance <= 12).astype(float)
    scene = Scene([flat_layer(0.1, np.ones((height, width)), 5.0), flat_layer(1.0, mask, 0.4)])
    k = 8.0
    blur_radius_px = k * (1 / 0.4 - 1 / 5.0) / 2  # 9.2 px: focus on the background, occluder blurred
    frame = render_focal_frames(scene, torch.tensor([1 / 5.0]), k, channels="luma")[0, 0].numpy()
    # blur(α)·1 + (1 − blur(α))·0.1, blur(α) = overlap of the blur disk with the (equal-area) occluder disk
    expected = 0.1 + 0.9 * disk_overlap_fraction(distance, np.sqrt(mask.sum() / np.pi), blur_radius_px)
    assert np.abs(frame - expected).max() < 0.01
    assert (frame[(distance > 13) & (distance < 12 + blur_radius_px - 1)] > 0.11).all()  # spill beyond α
    assert np.allclose(frame[distance > 12 + blur_radius_px + 2], 0.1, atol=0.003)

    frame = render_focal_frames(scene, torch.tensor([1 / 0.4]), k, channels="luma")[0, 0].numpy()
    assert np.allclose(frame[distance > 13], 0.1, atol=0.003)  # occluder sharp: nothing spills
    assert np.allclose(frame[distance < 11], 1.0, atol=1e-4)


def test_sharp_occluder_hides_blurred_background():
    height, width = 48, 48
    alpha = np.zeros((height, width))
    alpha[10:38, 10:38] = 1.0
    scene = Scene([textured_layer(5, np.ones((height, width)), 4.0), flat_layer(0.5, alpha, 0.5)])
    frame = render_focal_frames(scene, torch.tensor([2.0]), 12.0, channels="rgb")[0].numpy()
    assert np.allclose(frame[:, 11:37, 11:37], 0.5, atol=1e-4)


def test_sharpness_peaks_where_focus_matches_layer_depth():
    height, width = 48, 64
    left = np.zeros((height, width))
    left[:, :32] = 1.0
    near_m, far_m = 0.5, 3.0
    scene = Scene([textured_layer(6, np.ones((height, width)), far_m), textured_layer(7, left, near_m)])
    focus = torch.linspace(1 / 0.3, 1 / 5.0, 31)
    frames = render_focal_frames(scene, focus, 6.0, channels="luma")[:, 0]
    near_peak = gradient_energy(frames[:, 8:40, 4:24]).argmax()
    far_peak = gradient_energy(frames[:, 8:40, 40:60]).argmax()
    assert torch.argmin((focus - 1 / near_m).abs()) == near_peak
    assert torch.argmin((focus - 1 / far_m).abs()) == far_peak


def test_slanted_layer_is_sharpest_where_its_local_depth_is_in_focus():
    height, width = 32, 96
    diopter = np.broadcast_to(np.linspace(0.5, 2.5, width), (height, width))
    colour = torch.tensor(np.random.default_rng(8).random((3, height, width)), dtype=torch.float32)
    layer = Layer(colour, torch.ones(1, height, width), torch.tensor(1 / diopter, dtype=torch.float32)[None])
    focus = torch.linspace(3.0, 0.2, 57)
    frames = render_focal_frames(Scene([layer]), focus, 8.0, channels="luma")[:, 0]
    for column in (20, 48, 76):
        peak = gradient_energy(frames[:, 6:26, column - 6:column + 6]).argmax()
        assert abs(float(focus[peak]) - diopter[0, column]) < 0.2, column


def test_luma_render_equals_luma_of_rgb_render():
    alpha = np.zeros((40, 40))
    alpha[5:30, 12:36] = 0.8
    scene = Scene([textured_layer(9, np.ones((40, 40)), 2.0), textured_layer(10, alpha, 0.6)])
    focus = torch.tensor([0.5, 1.0, 1.7])
    rgb = render_focal_frames(scene, focus, 9.0, channels="rgb")
    assert torch.allclose(render_focal_frames(scene, focus, 9.0, channels="luma"), luma(rgb), atol=1e-5)


def test_frames_do_not_depend_on_chunking_or_frame_order(monkeypatch):
    alpha = np.zeros((32, 40))
    alpha[4:20, 6:30] = 1.0
    scene = Scene([textured_layer(11, np.ones((32, 40)), 3.0), textured_layer(12, alpha, 0.7)])
    focus = torch.linspace(3.0, 0.3, 7)  # odd count: exercises the frame-pair packing's padding
    together = render_focal_frames(scene, focus, 7.0)
    reversed_order = render_focal_frames(scene, focus.flip(0), 7.0).flip(0)  # other frame pairs
    monkeypatch.setattr(render_module, "_CHUNK_ELEMENTS", 1)
    chunked = render_focal_frames(scene, focus, 7.0)
    assert torch.allclose(together, chunked, atol=1e-6)
    assert torch.allclose(together, reversed_order, atol=1e-6)


def test_render_depth_takes_front_most_layer_above_half_alpha():
    alpha_a = np.zeros((8, 8))
    alpha_a[:, :4] = 0.6
    alpha_b = np.zeros((8, 8))
    alpha_b[:4, :] = 0.4  # never counts: alpha <= 0.5
    alpha_b[:2, :] = 0.9
    scene = Scene([flat_layer(0.2, np.ones((8, 8)), 5.0), flat_layer(0.3, alpha_a, 2.0),
                   flat_layer(0.4, alpha_b, 1.0)])
    depth = render_depth(scene)[0].numpy()
    expected = np.full((8, 8), 5.0)
    expected[:, :4] = 2.0
    expected[:2, :] = 1.0
    assert np.array_equal(depth, expected)


def test_all_in_focus_composites_back_to_front():
    alpha = np.full((4, 4), 0.25)
    scene = Scene([flat_layer(0.8, np.ones((4, 4)), 3.0), flat_layer(0.0, alpha, 1.0)])
    assert torch.allclose(render_all_in_focus(scene), torch.full((3, 4, 4), 0.6))


def test_bad_render_arguments_raise():
    scene = Scene([flat_layer(0.5, np.ones((8, 8)), 1.0)])
    with pytest.raises(RenderError, match="channels"):
        render_focal_frames(scene, torch.tensor([1.0]), 1.0, channels="xyz")
    with pytest.raises(RenderError, match="1-D"):
        render_focal_frames(scene, torch.tensor([[1.0]]), 1.0)
    with pytest.raises(RenderError, match="finite"):
        render_focal_frames(scene, torch.tensor([float("nan")]), 1.0)
    with pytest.raises(RenderError, match="blur_px_per_diopter"):
        render_focal_frames(scene, torch.tensor([1.0]), -2.0)
    with pytest.raises(RenderError, match="exceeds"):  # focus given in metres·1000 by mistake
        render_focal_frames(scene, torch.tensor([500.0]), 20.0)


# ----------------------------------------------------------------------------- sRGB
def test_srgb_matches_kornia_and_round_trips():
    linear = torch.rand(2, 3, 5, 7)
    assert torch.allclose(srgb_encode(linear), kornia.color.linear_rgb_to_rgb(linear), atol=1e-6)
    assert torch.allclose(srgb_decode(srgb_encode(linear)), linear, atol=1e-5)
    by_hand = torch.tensor([0.0, 1.0, 1.055 * 0.5 ** (1 / 2.4) - 0.055, 12.92 * 0.002])
    assert torch.allclose(srgb_encode(torch.tensor([0.0, 1.0, 0.5, 0.002])), by_hand, atol=1e-6)


def test_srgb_clamps_like_a_saturating_camera():
    assert torch.allclose(srgb_encode(torch.tensor([-0.1, 1.7])), torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
    assert torch.allclose(srgb_decode(torch.tensor([-0.1, 1.7])), torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
    dense = torch.linspace(0.0, 1.0, 100_001)  # both pieces and the knee between them
    for convert in (srgb_encode, srgb_decode):
        out = convert(dense)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0  # the event model rejects negative light
        assert bool((out[1:] >= out[:-1]).all())
    by_kornia = kornia.color.linear_rgb_to_rgb(dense.view(1, 1, 1, -1).expand(1, 3, 1, -1))[0, 0, 0]
    assert torch.allclose(srgb_encode(dense), by_kornia, atol=1e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_render_matches_cpu():
    alpha = np.zeros((32, 32))
    alpha[8:24, 8:24] = 1.0
    scene = Scene([textured_layer(13, np.ones((32, 32)), 2.0), textured_layer(14, alpha, 0.5)])
    focus = torch.linspace(2.5, 0.3, 5)
    cpu = render_focal_frames(scene, focus, 6.0)
    gpu = render_focal_frames(scene.to("cuda"), focus.cuda(), 6.0)
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-5)
