"""Random layered scenes: an opaque background plus soft-edged occluding layers at known depths.

Layers are drawn back to front (painter's order). Depths are sampled uniformly in diopters,
because defocus blur is linear in diopters: uniform diopters spread the blur sizes evenly
over the sweep. A slanted layer is a 3-D plane; under a pinhole camera a plane's *inverse*
depth is affine in pixel coordinates, so its diopter map is a linear ramp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import kornia
import torch
from torch import Tensor

from evfocus.config import SceneSettings, check_scene_settings
from evfocus.sim.textures import TextureBank, smooth_noise

SHAPE_KINDS = ("ellipse", "rectangle", "polygon", "blob")


class SceneError(ValueError):
    """A layer or scene that breaks the layer contract (shapes, alpha range, depths)."""


class SceneConfigError(ValueError):
    """A scene configuration value out of its valid range (names the field)."""


@dataclass
class Layer:
    """One layer: linear colour (3,H,W), soft coverage ``alpha`` (1,H,W) in [0,1], ``depth_m`` (1,H,W) > 0."""

    color_lin: Tensor
    alpha: Tensor
    depth_m: Tensor

    def __post_init__(self) -> None:
        if self.color_lin.ndim != 3 or self.color_lin.shape[0] != 3:
            raise SceneError(f"Layer.color_lin must be (3,H,W), got {tuple(self.color_lin.shape)}")
        size = tuple(self.color_lin.shape[-2:])
        for name in ("alpha", "depth_m"):
            shape = tuple(getattr(self, name).shape)
            if shape != (1, *size):
                raise SceneError(f"Layer.{name} must be (1,{size[0]},{size[1]}), got {shape}")
        if bool((self.alpha < 0).any() | (self.alpha > 1).any()):
            raise SceneError("Layer.alpha must lie in [0, 1]")
        if not bool((self.depth_m > 0).all()):
            raise SceneError("Layer.depth_m must be positive (metres) everywhere")

    def to(self, device: torch.device | str) -> Layer:
        return Layer(self.color_lin.to(device), self.alpha.to(device), self.depth_m.to(device))


@dataclass
class Scene:
    """Layers ordered back to front; ``layers[0]`` is the full-frame opaque background."""

    layers: list[Layer]

    def __post_init__(self) -> None:
        if not self.layers:
            raise SceneError("a scene needs at least its background layer")
        size = self.layers[0].color_lin.shape[-2:]
        for index, layer in enumerate(self.layers):
            if layer.color_lin.shape[-2:] != size:
                raise SceneError(f"layer {index} is {tuple(layer.color_lin.shape[-2:])}, "
                                 f"the background is {tuple(size)}")
        if not bool((self.layers[0].alpha == 1).all()):
            raise SceneError("layer 0 (the background) must be opaque: alpha == 1 everywhere")

    @property
    def height(self) -> int:
        return int(self.layers[0].color_lin.shape[-2])

    @property
    def width(self) -> int:
        return int(self.layers[0].color_lin.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.layers[0].color_lin.device

    def to(self, device: torch.device | str) -> Scene:
        return Scene([layer.to(device) for layer in self.layers])


PER_SWEEP_FIELDS = ("near_m", "far_m")  # SceneConfig's fields that are not settings: each sweep draws them


@dataclass
class SceneConfig(SceneSettings):
    """One sweep's scene ranges: the ``sim.scene`` settings (fields and defaults in ``config.SceneSettings``,
    checked by ``config.check_scene_settings``) plus the focus range the occluders' depths are drawn in."""

    near_m: float = 0.3
    far_m: float = 5.0

    def __post_init__(self) -> None:
        try:
            check_scene_settings(self, "SceneConfig")
        except ValueError as error:
            raise SceneConfigError(str(error)) from None
        for name in PER_SWEEP_FIELDS:
            if not math.isfinite(getattr(self, name)):
                raise SceneConfigError(f"SceneConfig.{name} must be finite, got {getattr(self, name)}")
        if self.near_m <= 0:
            raise SceneConfigError(f"SceneConfig.near_m must be positive (metres), got {self.near_m}")
        if self.far_m <= self.near_m:
            raise SceneConfigError(f"SceneConfig.far_m={self.far_m} must exceed near_m={self.near_m}")

    @classmethod
    def from_settings(cls, settings: Any, **per_sweep: float) -> SceneConfig:
        """The ``sim.scene`` section (or any object with its fields) as a SceneConfig; ``per_sweep`` sets
        ``near_m``/``far_m`` (their defaults stand in until a sweep draws its own)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(SceneSettings)}, **per_sweep)


def _uniform(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, device=generator.device))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high, (), generator=generator, device=generator.device))


def _shape_mask(kind: str, generator: torch.Generator, yy: Tensor, xx: Tensor,
                centre: tuple[float, float], radius_px: float) -> Tensor:
    """A hard (H,W) float mask of one shape around ``centre`` (y, x) with size ``radius_px``."""
    device = generator.device
    dy, dx = yy - centre[0], xx - centre[1]
    angle = _uniform(generator, 0.0, math.pi)
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    aspect = _uniform(generator, 0.4, 1.0)
    if kind == "ellipse":
        return ((u / radius_px) ** 2 + (v / (aspect * radius_px)) ** 2 <= 1.0).float()
    if kind == "rectangle":
        return ((u.abs() <= radius_px) & (v.abs() <= aspect * radius_px)).float()
    if kind == "polygon":  # star-shaped polygon around the centre, even-odd rule vectorised over edges
        count = _randint(generator, 3, 10)
        vertex_angle = torch.sort(torch.rand(count, generator=generator, device=device) * 2 * math.pi).values
        vertex_radius = radius_px * (0.4 + 0.6 * torch.rand(count, generator=generator, device=device))
        vy = (vertex_radius * torch.sin(vertex_angle)).view(-1, 1, 1)
        vx = (vertex_radius * torch.cos(vertex_angle)).view(-1, 1, 1)
        ny, nx = vy.roll(-1, dims=0), vx.roll(-1, dims=0)
        straddles = (vy > dy) != (ny > dy)
        x_cross = vx + (dy - vy) * (nx - vx) / torch.where(ny == vy, torch.ones_like(ny), ny - vy)
        crossings = (straddles & (dx < x_cross)).sum(dim=0)
        return (crossings % 2 == 1).float()
    # blob: a wobbly disk, thresholded smooth noise pushed down away from the centre
    height, width = yy.shape
    noise = smooth_noise(generator, 1, height, width, cell_px=max(radius_px / 2, 2.0), octaves=2)[0]
    return (1.0 - (dy**2 + dx**2) / radius_px**2 + 1.2 * (noise - 0.5) > 0).float()


def _feather(mask: Tensor, sigma_px: float) -> Tensor:
    """Soften a hard (H,W) mask with a finite Gaussian, so alpha is exactly 0 far from the shape."""
    if sigma_px < 0.1:
        return mask.unsqueeze(0)
    size = 2 * math.ceil(3 * sigma_px) + 1
    blurred = kornia.filters.gaussian_blur2d(mask[None, None], (size, size), (sigma_px, sigma_px))
    return blurred[0].clamp(0.0, 1.0)  # removes float round-off only: a blurred [0,1] mask stays in [0,1]


def _diopter_plane(generator: torch.Generator, yy: Tensor, xx: Tensor, centre: tuple[float, float],
                   diopter: float, low: float, high: float, slanted: bool) -> Tensor:
    """(H,W) diopters: constant, or a ramp through ``diopter`` at ``centre``, in [low, high] on the frame."""
    if not slanted:
        return torch.full_like(yy, diopter)
    angle = _uniform(generator, 0.0, 2 * math.pi)
    along = (xx - centre[1]) * math.cos(angle) + (yy - centre[0]) * math.sin(angle)
    most, least = float(along.max()), float(along.min())
    headroom = [(high - diopter) / most if most > 0 else math.inf,
                (diopter - low) / -least if least < 0 else math.inf]
    slope = _uniform(generator) * min(headroom)  # diopters per pixel along ``angle``
    return (diopter + slope * along).clamp(low, high)  # clamp only absorbs float round-off at the ends


def sample_scene(generator: torch.Generator, height: int, width: int, config: SceneConfig,
                 textures: TextureBank) -> Scene:
    """A random scene (on ``generator.device``): background + occluders, nearer layers drawn later."""
    if height < 8 or width < 8:
        raise SceneError(f"scene must be at least 8x8 pixels, got {height}x{width}")
    device = generator.device
    count = _randint(generator, config.min_layers, config.max_layers + 1)
    low, high = 1.0 / config.far_m, 1.0 / config.near_m
    # Log-uniform in metres (uniform in diopters put half the layers within 2x of the near focus, so
    # the frame taken there was far sharper than in real scenes; docs/simulation_gap.md).
    unit = torch.sort(torch.rand(count + 1, generator=generator, device=device), descending=True).values
    diopters = 1.0 / (config.near_m * (config.far_m / config.near_m) ** unit)
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")

    layers = []
    for index, diopter in enumerate(diopters.tolist()):  # farthest first: index 0 is the background
        slanted = _uniform(generator) < config.slant_probability
        if index == 0:
            centre = ((height - 1) / 2, (width - 1) / 2)
            alpha = torch.ones(1, height, width, device=device)
        else:
            centre = (_uniform(generator, 0, height - 1), _uniform(generator, 0, width - 1))
            size_fraction = _uniform(generator, config.min_size_fraction, config.max_size_fraction)
            radius_px = min(height, width) * size_fraction
            kind = SHAPE_KINDS[_randint(generator, 0, len(SHAPE_KINDS))]
            mask = _shape_mask(kind, generator, yy, xx, centre, radius_px)
            alpha = _feather(mask, _uniform(generator, 0.0, config.max_feather_px))
        plane = _diopter_plane(generator, yy, xx, centre, diopter, low, high, slanted)
        color = textures.sample(generator, height, width)
        layers.append(Layer(color_lin=color, alpha=alpha, depth_m=(1.0 / plane).unsqueeze(0)))
    return Scene(layers)
