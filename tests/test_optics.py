import math

import pytest
import torch

from evfocus.optics import FocusSchedule, OpticsError, ThinLens, defocus_diameter_px


def test_coc_matches_hand_computation():
    # 50 mm f/2 lens, 5 µm pixels, focused at 2 m, point at 1 m.
    lens = ThinLens(focal_length_mm=50.0, f_number=2.0, pixel_pitch_um=5.0)
    aperture_m, f_m = 0.025, 0.05
    sensor_m = f_m * 2.0 / (2.0 - f_m)  # 0.051282...
    expected_px = aperture_m * sensor_m * abs(1 / 1.0 - 1 / 2.0) / 5e-6  # 128.2 px
    assert lens.coc_diameter_px(1.0, 2.0) == pytest.approx(expected_px, rel=1e-9)
    assert lens.coc_diameter_px(1.0, 2.0, breathing=False) == pytest.approx(0.025 * 0.05 * 0.5 / 5e-6)
    assert lens.coc_diameter_px(2.0, 2.0) == 0.0


def test_blur_per_diopter_matches_efs_dev_model():
    # efs_dev README: radius = focal_length_px * aperture_radius * |Δ diopter|.
    lens = ThinLens(focal_length_mm=1.0, f_number=1.0, pixel_pitch_um=1.0)  # f_px = 1000, A = 1 mm
    radius = 0.5 * defocus_diameter_px(torch.tensor([0.5]), 1 / 3.0, lens.blur_px_per_diopter)
    assert float(radius) == pytest.approx(1000 * 0.0005 * abs(2.0 - 1 / 3.0))


def test_schedule_is_linear_in_diopters_and_invertible():
    schedule = FocusSchedule(t_start_us=0, t_end_us=1_000_000, near_m=0.25, far_m=4.0)
    assert schedule.focus_m(0) == pytest.approx(0.25)
    assert schedule.focus_m(1_000_000) == pytest.approx(4.0)
    # Halfway in time is halfway in diopters: (4 + 0.25) / 2 = 2.125 D.
    assert schedule.focus_diopter(500_000) == pytest.approx(2.125)
    assert schedule.time_us_for_depth(1 / 2.125) == pytest.approx(500_000)
    t = torch.linspace(0, 1_000_000, 7, dtype=torch.float64)
    assert torch.allclose(schedule.time_us_for_depth(schedule.focus_m(t)), t)


@pytest.mark.parametrize("kwargs, message", [
    ({"t_start_us": 0, "t_end_us": 100, "near_m": 2.0, "far_m": 1.0}, "inverted focus range"),
    ({"t_start_us": 100, "t_end_us": 100, "near_m": 1.0, "far_m": 2.0}, "must last"),
    ({"t_start_us": 0, "t_end_us": 100, "near_m": -1.0, "far_m": 2.0}, "positive"),
])
def test_bad_schedule_is_rejected(kwargs, message):
    with pytest.raises(OpticsError, match=message):
        FocusSchedule(**kwargs)


def test_non_positive_depth_is_rejected():
    lens = ThinLens(50.0, 2.0, 5.0)
    with pytest.raises(OpticsError, match="depth_m must be positive"):
        lens.coc_diameter_px(0.0, 2.0)
    with pytest.raises(OpticsError, match="depth_m must be positive"):
        defocus_diameter_px(torch.tensor([1.0, -2.0]), 1.0, 10.0)
    schedule = FocusSchedule(0, 10, 0.5, 5.0)
    with pytest.raises(OpticsError):
        schedule.time_us_for_depth(-1.0)
    assert math.isfinite(lens.blur_px_per_diopter)


@pytest.mark.parametrize("field", ["t_start_us", "t_end_us", "near_m", "far_m"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_schedule_is_rejected(field, value):
    """Comparisons with NaN are always false, so each check must be written to fail on it."""
    kwargs = {"t_start_us": 0, "t_end_us": 100, "near_m": 0.5, "far_m": 2.0, field: value}
    with pytest.raises(OpticsError, match=rf"FocusSchedule\.{field} must be finite"):
        FocusSchedule(**kwargs)


@pytest.mark.parametrize("field", ["focal_length_mm", "f_number", "pixel_pitch_um"])
def test_non_finite_lens_is_rejected(field):
    kwargs = {"focal_length_mm": 50.0, "f_number": 2.0, "pixel_pitch_um": 5.0, field: float("nan")}
    with pytest.raises(OpticsError, match=rf"ThinLens\.{field} must be"):
        ThinLens(**kwargs)


@pytest.mark.parametrize("image_time_us", [float("nan"), float("inf"), float("-inf")])
def test_sweep_rejects_a_non_finite_frame_time(image_time_us):
    from evfocus.events.stream import EventStream
    from evfocus.sweep import Sweep, SweepError

    with pytest.raises(SweepError, match="outside its sweep"):
        Sweep("s", torch.zeros(3, 4, 5), image_time_us, EventStream.empty(5, 4), FocusSchedule(0, 100, 0.5, 2.0))
