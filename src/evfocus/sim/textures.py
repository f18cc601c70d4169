"""Random RGB textures for simulated layers: bundled photographs + procedural patterns.

Photographs give natural statistics; procedural patterns give edges at every angle and
frequency. Both are drawn in sRGB (as stored) and returned in **linear light**, because
defocus and compositing mix irradiance, not encoded values.

Held-out split: each photograph belongs to exactly one split, decided by a hash of its name
(stable when photos are added or missing), and procedural textures use disjoint seed streams
per split, so validation/test scenes never reuse training material. ``excluded_photos``
(``sim.excluded_photos``) keeps photographs out of every split: the efs_dev captures are
ray-traced scenes textured with these same bundled photographs (docs/results.md, "The captures'
textures are our photographs").
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Literal

import imageio.v3
import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}

# Real photographs that ship with scikit-image / scikit-learn (no network). Synthetic images
# (checkerboard, logo, phantom, ...) and duplicates (``cat`` is ``chelsea``) are left out.
PHOTO_NAMES: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cell", "chelsea", "china", "clock", "coffee", "coins",
    "flower", "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "moon",
    "motorcycle", "page", "retina", "rocket", "text",
)
_MAX_PHOTO_SIDE_PX = 512  # photos are cached at most this large: plenty for 256-px scenes
_MAX_SEED_BASE = 2**20
_PROCEDURAL_KINDS = ("noise", "stripes", "checker", "shapes", "gradient")
_LUMA_WEIGHTS = torch.tensor([0.299, 0.587, 0.114])  # BT.601, the grey event simulators are fed
MIN_LUMA_STEP = 0.15


class TextureError(ValueError):
    """Bad texture-bank arguments or a split without usable photographs."""


def photo_split(name: str) -> Split:
    """The split a photograph belongs to: a fixed function of its name (SHA-256 → [0, 1))."""
    u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 2**32
    if u < SPLIT_FRACTIONS["train"]:
        return "train"
    return "val" if u < SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["val"] else "test"


def _read_photo(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        # Read the JPEG bundled with scikit-learn directly: importing sklearn costs seconds.
        spec = importlib.util.find_spec("sklearn")
        if spec is None or spec.origin is None:
            raise ImportError("scikit-learn is not installed")
        return imageio.v3.imread(Path(spec.origin).parent / "datasets" / "images" / f"{name}.jpg")
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


@cache
def _load_photo(name: str) -> Tensor | None:
    """uint8 (3,h,w) on CPU, longest side <= _MAX_PHOTO_SIDE_PX; None if it cannot be loaded offline."""
    try:
        array = _read_photo(name)
    except (ImportError, OSError, ValueError):  # skimage raises ModuleNotFoundError (an ImportError)
        return None
    image = torch.from_numpy(np.array(array, dtype=np.uint8))  # a writable copy
    image = image.unsqueeze(-1).expand(*image.shape, 3) if image.ndim == 2 else image[..., :3]
    image = image.permute(2, 0, 1).float().unsqueeze(0)
    scale = _MAX_PHOTO_SIDE_PX / max(image.shape[-2:])
    if scale < 1.0:
        image = F.interpolate(image, scale_factor=scale, mode="area")
    return image[0].round().clamp(0, 255).to(torch.uint8)


def _uniform(generator: torch.Generator, low: float, high: float, size: tuple[int, ...] = ()) -> Tensor:
    return low + (high - low) * torch.rand(size, generator=generator, device=generator.device)


def _log_uniform(generator: torch.Generator, low: float, high: float) -> float:
    return math.exp(float(_uniform(generator, math.log(low), math.log(high))))


def _pixel_grid(height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    return torch.meshgrid(ys, xs, indexing="ij")


def smooth_noise(generator: torch.Generator, channels: int, height: int, width: int,
                 cell_px: float, octaves: int = 1, persistence: float = 0.5) -> Tensor:
    """Value noise (channels,H,W) in [0,1]: bicubic random lattices of ``cell_px`` spacing, over octaves."""
    total = torch.zeros(1, channels, height, width, device=generator.device)
    for octave in range(octaves):
        cell = max(cell_px / 2**octave, 1.0)
        lattice = torch.rand(1, channels, math.ceil(height / cell) + 2, math.ceil(width / cell) + 2,
                             generator=generator, device=generator.device)
        size = (round(lattice.shape[-2] * cell), round(lattice.shape[-1] * cell))
        layer = F.interpolate(lattice, size=size, mode="bicubic", align_corners=False)
        total = total + persistence**octave * layer[..., :height, :width]
    low = total.amin(dim=(-2, -1), keepdim=True)
    high = total.amax(dim=(-2, -1), keepdim=True)
    return ((total - low) / (high - low).clamp_min(1e-6))[0]


def _colour_pair(generator: torch.Generator) -> Tensor:
    """Two sRGB colours (2,3,1,1) that differ in *luma*, not just in hue.

    Event pixels see brightness only: two random colours often share their luma (a blue/purple
    checker is nearly invisible to them), which made simulated sweeps fire 3-10x fewer events than
    ray-traced scenes of real textures (docs/simulation_gap.md). The lumas are drawn apart by
    ``MIN_LUMA_STEP``..0.9; the chroma is random around them.
    """
    device = generator.device
    step = float(_uniform(generator, MIN_LUMA_STEP, 0.9))
    low = float(_uniform(generator, 0.0, 1.0 - step))
    lumas = torch.tensor([low, low + step], device=device).view(2, 1)
    if float(_uniform(generator, 0.0, 1.0)) < 0.5:
        lumas = lumas.flip(0)
    chroma = torch.rand(2, 3, generator=generator, device=device) - 0.5
    chroma = chroma - (chroma * _LUMA_WEIGHTS.to(device)).sum(dim=1, keepdim=True)  # zero-luma offsets
    saturation = _uniform(generator, 0.0, 0.8, (2, 1))
    return (lumas + saturation * chroma).clamp(0.0, 1.0).view(2, 3, 1, 1)


def _colour_map(level: Tensor, generator: torch.Generator) -> Tensor:
    """Map a (1,H,W) level in [0,1] between two sRGB colours of different luma → (3,H,W)."""
    colours = _colour_pair(generator)
    return colours[0] + (colours[1] - colours[0]) * level


def _soft_square_wave(phase: Tensor, sharpness: float) -> Tensor:
    """A square wave in [0,1] whose edges are ``1/sharpness`` of a half period wide."""
    return (0.5 + 0.5 * (sharpness * torch.sin(phase)).clamp(-1.0, 1.0))


def _procedural(kind: str, generator: torch.Generator, height: int, width: int) -> Tensor:
    """One procedural sRGB texture (3,H,W) in [0,1]."""
    device = generator.device
    yy, xx = _pixel_grid(height, width, device)
    angle = float(_uniform(generator, 0.0, math.pi))
    period_px = _log_uniform(generator, 3.0, 48.0)
    sharpness = _log_uniform(generator, 1.0, 20.0)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    across = -xx * math.sin(angle) + yy * math.cos(angle)
    if kind == "noise":
        cell_px = _log_uniform(generator, 2.0, 48.0)
        level = smooth_noise(generator, 1, height, width, cell_px, octaves=4,
                             persistence=float(_uniform(generator, 0.35, 0.75)))
        tint = smooth_noise(generator, 3, height, width, cell_px)
        colour = _colour_map(level, generator) * (0.6 + 0.4 * tint)
    elif kind == "stripes":
        level = _soft_square_wave(2 * math.pi * along / period_px, sharpness).unsqueeze(0)
        colour = _colour_map(level, generator)
    elif kind == "checker":
        square_a = _soft_square_wave(2 * math.pi * along / period_px, sharpness)
        square_b = _soft_square_wave(2 * math.pi * across / period_px, sharpness)
        level = (square_a + square_b - 2 * square_a * square_b).unsqueeze(0)  # soft XOR
        colour = _colour_map(level, generator)
    elif kind == "shapes":
        colour = _random_disks(generator, height, width)
    else:  # gradient: linear ramp plus a radial one, each between random colours
        extent = float(along.max() - along.min())
        ramp = ((along - along.min()) / max(extent, 1.0)).unsqueeze(0)
        centre_y, centre_x = float(_uniform(generator, 0, height)), float(_uniform(generator, 0, width))
        radius = (torch.sqrt((yy - centre_y) ** 2 + (xx - centre_x) ** 2) / max(height, width)).clamp(0, 1)
        colour = 0.5 * (_colour_map(ramp, generator) + _colour_map(radius.unsqueeze(0), generator))
    grain = smooth_noise(generator, 1, height, width, cell_px=1.5)
    return (colour * (1.0 - float(_uniform(generator, 0.0, 0.3)) * grain)).clamp(0.0, 1.0)


def _random_disks(generator: torch.Generator, height: int, width: int) -> Tensor:
    """Overlapping random ellipses of random colours, later ones on top (vectorised over shapes)."""
    device = generator.device
    count = int(torch.randint(8, 48, (), generator=generator, device=device))
    ys = torch.arange(height, device=device, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, -1)
    dy = ys - _uniform(generator, 0, height, (count, 1, 1))  # (K,H,1): broadcasting keeps most work 1-D
    dx = xs - _uniform(generator, 0, width, (count, 1, 1))  # (K,1,W)
    radius = _uniform(generator, 0.03, 0.3, (count, 2, 1, 1)) * min(height, width)
    theta = _uniform(generator, 0, math.pi, (count, 1, 1))
    cos, sin = torch.cos(theta), torch.sin(theta)
    inv_a, inv_b = 1 / radius[:, 0] ** 2, 1 / radius[:, 1] ** 2
    # ((dx·cos + dy·sin)/a)² + ((−dx·sin + dy·cos)/b)² as a quadratic form in dx, dy
    xx_coef, yy_coef = cos**2 * inv_a + sin**2 * inv_b, sin**2 * inv_a + cos**2 * inv_b
    xy_coef = 2 * cos * sin * (inv_a - inv_b)
    inside = (xx_coef * dx**2 + yy_coef * dy**2) + (xy_coef * dx) * dy <= 1.0
    order = torch.arange(1, count + 1, device=device).view(-1, 1, 1)
    top = (inside * order).amax(dim=0)  # index of the top-most shape covering each pixel, 0 = none
    palette = torch.rand(count + 1, 3, generator=generator, device=device)
    return palette[top].permute(2, 0, 1)


def _photo_crop(photo_uint8: Tensor, generator: torch.Generator, height: int, width: int) -> Tensor:
    """A random rotated, rescaled, possibly mirrored crop (3,H,W) in sRGB [0,1]; borders reflect."""
    device = generator.device
    photo = photo_uint8.to(device=device, dtype=torch.float32).unsqueeze(0) / 255.0
    photo_h, photo_w = photo.shape[-2:]
    source_px_per_output_px = _log_uniform(generator, 0.7, 3.0)
    angle = float(_uniform(generator, -math.pi, math.pi))
    mirror = -1.0 if float(_uniform(generator, 0, 1)) < 0.5 else 1.0
    centre = _uniform(generator, -0.6, 0.6, (2,))  # normalised [-1,1] coordinates of the crop centre
    # Source px offset = s·R(angle)·diag(mirror,1)·(output px offset); affine_grid speaks [-1,1] units.
    s, cos, sin = source_px_per_output_px, math.cos(angle), math.sin(angle)
    theta = torch.tensor([[s * mirror * cos * width / photo_w, -s * sin * height / photo_w, 0.0],
                          [s * mirror * sin * width / photo_h, s * cos * height / photo_h, 0.0]],
                         device=device)
    theta[:, 2] = centre
    grid = F.affine_grid(theta.unsqueeze(0), [1, 3, height, width], align_corners=False)
    crop = F.grid_sample(photo, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return crop[0]


def _jitter_photo(srgb: Tensor, generator: torch.Generator) -> Tensor:
    """Hue/saturation jitter; greyscale photos get a random tint so they are not all grey."""
    is_grey = bool((srgb.amax(dim=0) - srgb.amin(dim=0)).max() < 1e-6)
    if is_grey:
        tint = _uniform(generator, 0.5, 1.0, (3, 1, 1))
        return srgb * tint / tint.max()
    hue_rad = float(_uniform(generator, -0.5, 0.5))
    saturation = float(_uniform(generator, 0.6, 1.4))
    image = kornia.enhance.adjust_saturation(kornia.enhance.adjust_hue(srgb, hue_rad), saturation)
    return image.clamp(0.0, 1.0)


class TextureBank:
    """Draws linear-light RGB textures (3,H,W) in [0,1] for one data split.

    ``photo_probability`` is the chance a draw is a photograph (else procedural). Photographs
    are loaded lazily, once per process, and kept small.
    """

    def __init__(self, split: Split, seed_base: int = 0, photo_probability: float = 0.5,
                 excluded_photos: Sequence[str] = ()) -> None:
        if split not in SPLITS:
            raise TextureError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0 <= seed_base < _MAX_SEED_BASE:
            raise TextureError(f"seed_base must be in [0, {_MAX_SEED_BASE}), got {seed_base}")
        if not 0.0 <= photo_probability <= 1.0:
            raise TextureError(f"photo_probability must be in [0, 1], got {photo_probability}")
        self.split = split
        self.seed_base = seed_base
        self.photo_probability = photo_probability
        unknown = sorted(set(excluded_photos) - set(PHOTO_NAMES))
        if unknown:
            raise TextureError(f"sim.excluded_photos: unknown photograph(s) {unknown}; known: {PHOTO_NAMES}")
        self.excluded_photos = tuple(excluded_photos)
        self.photo_names = tuple(name for name in PHOTO_NAMES
                                 if photo_split(name) == split and name not in self.excluded_photos)

    def available_photos(self) -> tuple[str, ...]:
        """This split's photographs that load offline (loads and caches them)."""
        return tuple(name for name in self.photo_names if _load_photo(name) is not None)

    def _texture_generator(self, generator: torch.Generator) -> torch.Generator:
        """A private stream per draw; seeds are ≡ split index (mod 3), so splits never share a stream."""
        draw = int(torch.randint(0, 2**40, (), generator=generator, device=generator.device))
        seed = (self.seed_base * 2**40 + draw) * len(SPLITS) + SPLITS.index(self.split)
        return torch.Generator(device=generator.device).manual_seed(seed)

    def sample(self, generator: torch.Generator, height: int, width: int) -> Tensor:
        """One texture (3,height,width), linear light in [0,1], on ``generator.device``."""
        if height < 1 or width < 1:
            raise TextureError(f"texture size must be positive, got {height}x{width}")
        local = self._texture_generator(generator)
        if float(_uniform(local, 0, 1)) < self.photo_probability:
            photos = self.available_photos()
            if not photos:
                raise TextureError(f"no photograph of split {self.split!r} loads offline "
                                   f"(tried {self.photo_names}, sim.excluded_photos {self.excluded_photos}); "
                                   f"set photo_probability=0")
            name = photos[int(torch.randint(0, len(photos), (), generator=local, device=local.device))]
            srgb = _jitter_photo(_photo_crop(_load_photo(name), local, height, width), local)
        else:
            kind = _PROCEDURAL_KINDS[int(torch.randint(0, len(_PROCEDURAL_KINDS), (), generator=local,
                                                       device=local.device))]
            srgb = _procedural(kind, local, height, width)
        exposure = float(_uniform(local, 0.5, 1.0))
        return kornia.color.rgb_to_linear_rgb(srgb) * exposure
