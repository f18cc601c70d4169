"""Thin-lens defocus and the focal-sweep schedule (a leaf module: numbers in, numbers out).

Defocus is linear in diopters: a point at depth ``d`` seen with the lens focused at
``d_f`` is blurred into a disk whose diameter on the sensor is
``A * v_f * |1/d - 1/d_f|`` (aperture diameter ``A``, lens-to-sensor distance ``v_f``).
With constant magnification (no focus breathing, as in our renderer and the efs_dev
samples) ``v_f`` is the focal length, so blur is ``blur_px_per_diopter * |Δ diopter|``.
The sweep moves the focus linearly in diopters, so blur changes linearly in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

Number = float | Tensor


class OpticsError(ValueError):
    """Physically impossible optics or schedule parameters."""


def _check_finite(value: float, name: str) -> None:
    if not -math.inf < value < math.inf:  # written so that NaN fails too (every comparison with NaN is false)
        raise OpticsError(f"{name} must be finite, got {value}")


def _check_positive_depth(depth_m: Number, name: str) -> None:
    bad = (depth_m <= 0).any() if isinstance(depth_m, Tensor) else depth_m <= 0
    if bool(bad):
        raise OpticsError(f"{name} must be positive (metres), got a value <= 0")


@dataclass(frozen=True)
class ThinLens:
    """A thin lens in front of a pixel sensor."""

    focal_length_mm: float
    f_number: float
    pixel_pitch_um: float

    def __post_init__(self) -> None:
        for name in ("focal_length_mm", "f_number", "pixel_pitch_um"):
            if not 0 < getattr(self, name) < math.inf:  # NaN fails too
                raise OpticsError(f"ThinLens.{name} must be positive and finite, got {getattr(self, name)}")

    @property
    def aperture_diameter_mm(self) -> float:
        return self.focal_length_mm / self.f_number

    @property
    def focal_length_px(self) -> float:
        return self.focal_length_mm * 1000.0 / self.pixel_pitch_um

    @property
    def blur_px_per_diopter(self) -> float:
        """Blur-disk diameter in pixels per diopter of defocus at constant magnification."""
        return (self.aperture_diameter_mm / 1000.0) * self.focal_length_px

    def coc_diameter_px(self, depth_m: Number, focus_m: Number, breathing: bool = True) -> Number:
        """Circle-of-confusion diameter in pixels.

        ``breathing=True`` uses the exact sensor distance ``v_f = f d_f / (d_f - f)``;
        ``False`` keeps ``v_f = f`` (constant magnification, the simulator's model).
        """
        _check_positive_depth(depth_m, "depth_m")
        _check_positive_depth(focus_m, "focus_m")
        f_m = self.focal_length_mm / 1000.0
        focus_min = focus_m.min() if isinstance(focus_m, Tensor) else focus_m
        if focus_min <= f_m:
            raise OpticsError(f"focus distance must exceed the focal length ({f_m} m)")
        sensor_distance_m = f_m * focus_m / (focus_m - f_m) if breathing else f_m
        sensor_distance_px = sensor_distance_m * 1e6 / self.pixel_pitch_um
        defocus_diopter = abs(1.0 / depth_m - 1.0 / focus_m)
        return (self.aperture_diameter_mm / 1000.0) * sensor_distance_px * defocus_diopter


@dataclass(frozen=True)
class FocusSchedule:
    """Focus moving linearly in diopters from ``near_m`` (at ``t_start_us``) to ``far_m``."""

    t_start_us: int
    t_end_us: int
    near_m: float
    far_m: float

    def __post_init__(self) -> None:
        for name in ("t_start_us", "t_end_us", "near_m", "far_m"):
            _check_finite(getattr(self, name), f"FocusSchedule.{name}")
        if self.t_end_us <= self.t_start_us:
            raise OpticsError(f"sweep must last > 0 µs, got t_start_us={self.t_start_us}, "
                              f"t_end_us={self.t_end_us}")
        if self.near_m <= 0 or self.far_m <= 0:
            raise OpticsError(f"focus distances must be positive, got near_m={self.near_m}, "
                              f"far_m={self.far_m}")
        if self.far_m <= self.near_m:
            raise OpticsError(f"inverted focus range: near_m={self.near_m} must be < far_m={self.far_m} "
                              "(the sweep goes near -> far)")

    @property
    def duration_us(self) -> int:
        return self.t_end_us - self.t_start_us

    @property
    def near_diopter(self) -> float:
        return 1.0 / self.near_m

    @property
    def far_diopter(self) -> float:
        return 1.0 / self.far_m

    def focus_diopter(self, t_us: Number) -> Number:
        """Focus (1/m) at time ``t_us``; times outside the sweep extrapolate linearly."""
        fraction = (t_us - self.t_start_us) / self.duration_us
        return self.near_diopter + (self.far_diopter - self.near_diopter) * fraction

    def focus_m(self, t_us: Number) -> Number:
        return 1.0 / self.focus_diopter(t_us)

    def time_us_for_diopter(self, diopter: Number) -> Number:
        fraction = (diopter - self.near_diopter) / (self.far_diopter - self.near_diopter)
        return self.t_start_us + fraction * self.duration_us

    def time_us_for_depth(self, depth_m: Number) -> Number:
        """The moment a plane at ``depth_m`` is in focus (outside [t_start, t_end] if out of range)."""
        _check_positive_depth(depth_m, "depth_m")
        return self.time_us_for_diopter(1.0 / depth_m)

    def to_dict(self) -> dict[str, float]:
        return {"t_start_us": self.t_start_us, "t_end_us": self.t_end_us,
                "near_m": self.near_m, "far_m": self.far_m}


def defocus_diameter_px(depth_m: Tensor, focus_diopter: Number, blur_px_per_diopter: float) -> Tensor:
    """Blur-disk diameter (px) at constant magnification: ``k * |1/depth - focus_diopter|``."""
    _check_positive_depth(depth_m, "depth_m")
    return blur_px_per_diopter * torch.abs(1.0 / depth_m - focus_diopter)
