"""One simulated focal sweep from one seed: scene → optics draw → luma frames → events.

Only luminance is rendered for all F frames (the event model needs nothing else); RGB is
rendered just for the frames a caller asks for (training inputs/targets) plus the
conventional frame at the sweep start, which keeps a 120-frame sweep cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor

from evfocus.colour import srgb_encode
from evfocus.events.stream import EventStream
from evfocus.optics import FocusSchedule
from evfocus.sim.dvs import IdealParams, sample_voltmeter_params, simulate_ideal, simulate_voltmeter
from evfocus.sim.render import render_all_in_focus, render_depth, render_focal_frames
from evfocus.sim.scene import SceneConfig, sample_scene
from evfocus.sim.textures import TextureBank
from evfocus.sweep import Sweep

FramePicker = Callable[[Tensor, FocusSchedule, Tensor], Sequence[int]]


@dataclass(frozen=True)
class SweepDraw:
    """The per-sweep random optics and sensor draw (recorded in ``Sweep.meta``)."""

    near_m: float
    far_m: float
    max_blur_radius_px: float
    duration_us: int
    event_response: str

    @property
    def blur_px_per_diopter(self) -> float:
        """Blur *diameter* per diopter so the farthest focus plane seen at the near focus has the max radius."""
        return 2.0 * self.max_blur_radius_px / (1.0 / self.near_m - 1.0 / self.far_m)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _log_uniform(generator: torch.Generator, low: float, high: float) -> float:
    return math.exp(_uniform(generator, math.log(low), math.log(high)))


def add_camera_noise(image: Tensor, noise_std: float, generator: torch.Generator) -> Tensor:
    """Gaussian read noise + 8-bit quantisation: what a conventional frame really looks like."""
    noisy = image + noise_std * torch.randn(image.shape, generator=generator, device=image.device)
    return torch.round(noisy.clamp(0.0, 1.0) * 255.0) / 255.0


class SweepSimulator:
    """Draws sweeps for one data split from the ranges in the ``sim`` config section."""

    def __init__(self, sim_cfg: Any, split: str) -> None:
        self.cfg = sim_cfg
        self.split = split
        self.textures = TextureBank(split, excluded_photos=tuple(sim_cfg.excluded_photos))
        self.scene_cfg = SceneConfig.from_settings(sim_cfg.scene)  # near/far: drawn per sweep

    def draw(self, generator: torch.Generator) -> SweepDraw:
        cfg = self.cfg
        response = cfg.event_response
        if response == "random":
            response = "gamma" if float(torch.rand((), generator=generator)) < 0.5 else "linear"
        return SweepDraw(
            near_m=_uniform(generator, *cfg.near_m_range),
            far_m=_log_uniform(generator, *cfg.far_m_range),
            max_blur_radius_px=_uniform(generator, *cfg.max_blur_radius_px_range),
            duration_us=int(_log_uniform(generator, *cfg.duration_us_range)),
            event_response=response,
        )

    def simulate(self, seed: int, frame_indices: Sequence[int] | FramePicker = (), events: bool = True) -> Sweep:
        """Simulate sweep ``seed``; ``frames`` holds clean RGB targets at ``frame_indices``.

        ``frame_indices`` may be a function of (depth_m, schedule, frame_times_us) — e.g. the frames
        where the scene's layers are in focus — called once the scene is drawn, before any rendering.
        ``events=False`` skips the focal frames and their events (the sweep gets an empty stream): for
        image-only training, which needs the frame and the ground truth alone. The scene, optics and ground
        truth are the same as with events; the frame's camera noise is another draw of the same kind.
        """
        cfg = self.cfg
        generator = torch.Generator().manual_seed(int(seed))
        draw = self.draw(generator)
        scene_cfg = replace(self.scene_cfg, near_m=draw.near_m, far_m=draw.far_m)
        scene = sample_scene(generator, cfg.height, cfg.width, scene_cfg, self.textures)
        schedule = FocusSchedule(0, draw.duration_us, draw.near_m, draw.far_m)
        times_us = torch.linspace(0, draw.duration_us, cfg.num_frames).round().to(torch.int64)
        focus_diopter = schedule.focus_diopter(times_us.to(torch.float64)).to(torch.float32)

        if events:
            luma = render_focal_frames(scene, focus_diopter, draw.blur_px_per_diopter, channels="luma")[:, 0]
            stream = self._events(luma, times_us, draw, generator)
        else:
            stream = EventStream.empty(cfg.width, cfg.height)

        depth_m = render_depth(scene)
        if callable(frame_indices):
            frame_indices = frame_indices(depth_m, schedule, times_us)
        wanted = sorted({0, *(int(i) for i in frame_indices)})
        if wanted[-1] >= cfg.num_frames or wanted[0] < 0:
            raise ValueError(f"frame index out of range: sweep has {cfg.num_frames} frames, asked for {wanted}")
        rgb = srgb_encode(render_focal_frames(scene, focus_diopter[wanted], draw.blur_px_per_diopter, "rgb"))
        image = add_camera_noise(rgb[0], cfg.image_noise_std, generator)
        return Sweep(
            name=f"sim-{self.split}-{seed}",
            image=image,
            image_time_us=0,
            events=stream,
            schedule=schedule,
            aif=srgb_encode(render_all_in_focus(scene)),
            depth_m=depth_m,
            frames=rgb,
            frame_times_us=times_us[wanted],
            meta={"seed": int(seed), "split": self.split, "frame_indices": wanted,
                  "blur_px_per_diopter": draw.blur_px_per_diopter, **asdict(draw)},
        )

    def _events(self, luma: Tensor, times_us: Tensor, draw: SweepDraw, generator: torch.Generator) -> EventStream:
        """Feed the event model what its sensor sees: linear irradiance or an 8-bit-like gamma signal."""
        signal = srgb_encode(luma) if draw.event_response == "gamma" else luma.clamp(0.0, 1.0)
        if self.cfg.event_model == "voltmeter":
            vcfg = self.cfg.voltmeter
            params = sample_voltmeter_params(generator, vcfg.spread, tuple(vcfg.k1_scale_range))
            return simulate_voltmeter(signal.mul_(255.0), times_us, params, generator)
        icfg = self.cfg.ideal
        params = IdealParams(
            threshold=_uniform(generator, *icfg.threshold_range),
            threshold_sigma=icfg.threshold_sigma,
            refractory_us=icfg.refractory_us,
            shot_noise_hz=icfg.shot_noise_hz,
            leak_hz=icfg.leak_hz,
        )
        return simulate_ideal(signal, times_us, params, generator)
