"""Golden-section focus search: per patch of an N×N grid, the sweep time at which refocusing is sharpest.

Sharpness of a refocused patch is unimodal in the focus time, so a golden-section search finds its
peak with ~log_φ(range/tolerance) probes. The reference implementation searches patch after patch
and re-evaluates both interior points every iteration; here all patches advance together (one
refocus call per iteration on every still-open patch) and each iteration evaluates only the one new
interior point, which the golden ratio makes possible. ``mode="reference"`` keeps the reference's
procedure, sharing every helper, so the two can be benchmarked side by side.

Events reach the refocus network as the segment image-time → probe-time at ``num_bins`` bins, cut
from a per-patch crop of the sweep's cumulative event tensor (``events.focal_stack.cumulative_segments``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from evfocus.events.focal_stack import EventFocalStack, cumulative_segments, grid_edges
from evfocus.golden import GOLDEN_RATIO

Domain = Literal["time", "events"]
SharpnessKind = Literal["variance", "gradient"]
SearchMode = Literal["batched", "reference"]
RefocusFn = Callable[[Tensor, Tensor], Tensor]


# ---------------------------------------------------------------------------------------- patches
@dataclass(frozen=True)
class PatchGrid:
    """An N×N tiling of the image plus, per patch, a crop with ``margin_px`` of context on each side.

    All crops share one size (largest patch + 2·margin) so every probe of an iteration is one batch;
    ``interior_mask`` marks each patch's own pixels inside its crop, where sharpness is measured.
    """

    boxes: Tensor  # (P, 4) int64: top, left, height, width
    grid_size: int
    margin_px: int
    image_height: int
    image_width: int

    @classmethod
    def build(cls, height: int, width: int, grid_size: int, margin_px: int) -> PatchGrid:
        if grid_size < 1:
            raise ValueError(f"grid_size must be >= 1, got {grid_size}")
        if grid_size > min(height, width):
            raise ValueError(f"a {grid_size}x{grid_size} patch grid does not fit a {height}x{width} image "
                             "(patches would be empty)")
        if margin_px < 0:
            raise ValueError(f"margin_px must be >= 0, got {margin_px}")
        rows, cols = grid_edges(height, grid_size), grid_edges(width, grid_size)
        top, left = torch.meshgrid(rows[:-1], cols[:-1], indexing="ij")
        box_h, box_w = torch.meshgrid(torch.diff(rows), torch.diff(cols), indexing="ij")
        boxes = torch.stack([top, left, box_h, box_w], dim=-1).reshape(-1, 4)
        return cls(boxes, grid_size, margin_px, height, width)

    @property
    def num_patches(self) -> int:
        return self.grid_size * self.grid_size

    @property
    def crop_size(self) -> tuple[int, int]:
        border = 2 * self.margin_px
        return int(self.boxes[:, 2].max()) + border, int(self.boxes[:, 3].max()) + border

    def crop(self, planes: Tensor, padding: Literal["replicate", "zeros"]) -> Tensor:
        """(L, H, W) → (P, L, crop_h, crop_w); outside the image: replicate (images) or zeros (events)."""
        if tuple(planes.shape[-2:]) != (self.image_height, self.image_width):
            raise ValueError(f"planes are {tuple(planes.shape[-2:])}, grid is for "
                             f"{(self.image_height, self.image_width)}")
        crop_h, crop_w = self.crop_size
        extra_h = int((self.boxes[:, 0] + crop_h).max()) - 2 * self.margin_px - self.image_height
        extra_w = int((self.boxes[:, 1] + crop_w).max()) - 2 * self.margin_px - self.image_width
        pad = (self.margin_px, self.margin_px + extra_w, self.margin_px, self.margin_px + extra_h)
        mode = "replicate" if padding == "replicate" else "constant"
        padded = F.pad(planes[None], pad, mode=mode)[0]
        # Box tops/lefts in image coordinates are the crop corners in padded coordinates.
        return torch.stack([padded[:, top:top + crop_h, left:left + crop_w]
                            for top, left in self.boxes[:, :2].tolist()])

    def interior_mask(self, device: torch.device | str = "cpu") -> Tensor:
        """(P, 1, crop_h, crop_w) float: 1 on the patch's own pixels, 0 on the context margin."""
        crop_h, crop_w = self.crop_size
        m = self.margin_px
        rows = torch.arange(crop_h, device=device)
        cols = torch.arange(crop_w, device=device)
        box_h, box_w = self.boxes[:, 2].to(device), self.boxes[:, 3].to(device)
        inside_rows = (rows >= m) & (rows[None] < m + box_h[:, None])
        inside_cols = (cols >= m) & (cols[None] < m + box_w[:, None])
        return (inside_rows[:, :, None] & inside_cols[:, None, :]).float()[:, None]


# ---------------------------------------------------------------------------------------- sharpness
def patch_sharpness(images: Tensor, mask: Tensor, kind: SharpnessKind) -> Tensor:
    """Sharpness (M,) of the grey image inside ``mask`` (M, 1, h, w).

    ``variance`` is the reference's measure; ``gradient`` is the mean squared Sobel gradient, which
    ignores smooth shading that variance also rewards.
    """
    grey = images.mean(dim=1, keepdim=True)
    weight = mask / mask.sum(dim=(1, 2, 3), keepdim=True)
    if kind == "variance":
        mean = (grey * weight).sum(dim=(1, 2, 3), keepdim=True)
        return ((grey - mean) ** 2 * weight).sum(dim=(1, 2, 3))
    if kind == "gradient":
        energy = kornia.filters.spatial_gradient(grey, mode="sobel").pow(2).sum(dim=2)
        return (energy * weight).sum(dim=(1, 2, 3))
    raise ValueError(f"unknown sharpness {kind!r}: expected 'variance' or 'gradient'")


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SearchConfig:
    """How to search (``pipeline.settings.search_config`` builds it from the config for one sweep).

    The bracket tolerance that applies is the one in the chosen domain's unit; ``tolerance_us`` is also
    the search's resolution in time in either domain: found times closer than it are one slice.
    ``tolerance_events`` may be None in the time domain, which does not use it.
    """

    num_bins: int
    grid_size: int = 8
    margin_px: int = 8
    domain: Domain = "time"
    sharpness: SharpnessKind = "variance"
    tolerance_us: float = 20_000.0
    tolerance_events: float | None = 1_000.0
    max_iters: int = 30
    min_events: int = 2_000
    max_crops_per_call: int | None = None  # None: all open patches in one network call
    # probes refocus crops averaged down by this factor (1: full resolution): the network's cost falls with
    # the pixel count, but a coarse patch is sharpest at another moment for many patches (45% at 2x on the
    # trained E-refocus run, benchmarks/RESULTS.md), so it is a speed-for-quality option, not a default
    probe_scale: int = 1

    def __post_init__(self) -> None:
        if self.domain not in ("time", "events"):
            raise ValueError(f"domain must be 'time' or 'events', got {self.domain!r}")
        if self.sharpness not in ("variance", "gradient"):
            raise ValueError(f"sharpness must be 'variance' or 'gradient', got {self.sharpness!r}")
        if self.domain == "events" and self.tolerance_events is None:
            raise ValueError("the event domain needs tolerance_events")
        for name in ("tolerance_us", "tolerance_events"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_crops_per_call is not None and self.max_crops_per_call < 1:
            raise ValueError(f"max_crops_per_call must be >= 1 or None, got {self.max_crops_per_call}")
        for name, lowest in (("num_bins", 1), ("grid_size", 1), ("max_iters", 1), ("margin_px", 0),
                             ("min_events", 0), ("probe_scale", 1)):
            if getattr(self, name) < lowest:
                raise ValueError(f"{name} must be >= {lowest}, got {getattr(self, name)}")

    @property
    def tolerance(self) -> float:
        return self.tolerance_us if self.domain == "time" else self.tolerance_events


@dataclass
class SearchResult:
    """Found focus time per patch, plus every probe for inspection (NaN where a patch probed less)."""

    times_us: Tensor  # (N, N) float64
    patch_boxes: Tensor  # (P, 4) int64: top, left, height, width
    probes_t_us: Tensor  # (P, I) float64, in evaluation order
    probes_sharpness: Tensor  # (P, I) float32
    num_refocus_calls: int
    low_event_mask: Tensor  # (N, N) bool: too few events, kept the image time


# ---------------------------------------------------------------------------------------- search
def counts_to_time_us(counts: Tensor, num_events: Tensor, t_start_us: float, t_end_us: float) -> Tensor:
    """Invert each row's cumulative count curve (M, K+1) at ``num_events`` (M,): the time (M,) in µs
    when that many events have arrived (linear inside a fine bin; the earliest time on a plateau)."""
    num_fine_bins = counts.shape[1] - 1
    upper = torch.searchsorted(counts, num_events[:, None].to(counts.dtype)).clamp(1, num_fine_bins)
    below, above = counts.gather(1, upper - 1), counts.gather(1, upper)
    frac = ((num_events[:, None] - below) / (above - below).clamp_min(1e-12)).clamp(0.0, 1.0)
    node_pos = (upper - 1 + frac)[:, 0]
    return t_start_us + node_pos * ((t_end_us - t_start_us) / num_fine_bins)


class _Prober:
    """Refocuses chosen patches at chosen search coordinates, scores them and records every probe."""

    def __init__(self, image: Tensor, image_time_us: float, focal_stack: EventFocalStack,
                 refocus: RefocusFn, grid: PatchGrid, config: SearchConfig, counts: Tensor | None,
                 max_probes: int) -> None:
        scale = config.probe_scale
        self.image_crops = _downsample(grid.crop(image, "replicate"), scale)
        # Event counts are averaged too: a coarse pixel's log brightness moves by its pixels' mean change.
        self.cumulative_crops = _downsample(grid.crop(focal_stack.cumulative.to(image.dtype), "zeros"), scale)
        self.mask = _downsample(grid.interior_mask(image.device), scale)
        self.image_time_us = image_time_us
        self.t_start_us, self.t_end_us = float(focal_stack.t_start_us), float(focal_stack.t_end_us)
        self.refocus, self.config, self.counts = refocus, config, counts
        self.num_calls = 0
        # A refocus net that can encode its image input once (EvRefocusNet.encode_image) is given
        # each crop's image features with every probe: the crops never change, only the events do.
        self.chunk = config.max_crops_per_call or grid.num_patches
        encode = getattr(refocus, "encode_image", None)
        self.image_features = None if encode is None else [
            torch.cat(level) for level in zip(*(encode(c) for c in self.image_crops.split(self.chunk)), strict=True)]
        num_patches = grid.num_patches
        self.probe_t_us = torch.full((num_patches, max_probes), math.nan, dtype=torch.float64,
                                     device=image.device)
        self.probe_sharpness = torch.full((num_patches, max_probes), math.nan, device=image.device)
        self.probe_count = torch.zeros(num_patches, dtype=torch.int64, device=image.device)

    def to_time_us(self, patch_index: Tensor, coord: Tensor) -> Tensor:
        if self.config.domain == "time":
            return coord
        return counts_to_time_us(self.counts[patch_index], coord, self.t_start_us, self.t_end_us)

    def __call__(self, patch_index: Tensor, coord: Tensor) -> Tensor:
        """Sharpness (M,) of patches ``patch_index`` (M,) refocused at search coordinates ``coord``."""
        t_us = self.to_time_us(patch_index, coord)
        t0_us = torch.full_like(t_us, self.image_time_us)
        events = cumulative_segments(self.cumulative_crops, self.t_start_us, self.t_end_us, t0_us, t_us,
                                     self.config.num_bins, crop_index=patch_index)
        # Big batches of small crops run slower per crop on a CPU (measured: 197 ms per 49x60 crop in
        # one call of 64, 124 ms in calls of 8), so the caller may cap the crops per network call.
        refocused = torch.cat([self._refocus(index, events_chunk) for index, events_chunk
                               in zip(patch_index.split(self.chunk), events.split(self.chunk), strict=True)])
        self.num_calls += math.ceil(len(patch_index) / self.chunk)
        expected = (len(patch_index), *self.image_crops.shape[1:])
        if tuple(refocused.shape) != expected:
            raise ValueError(f"refocus returned shape {tuple(refocused.shape)} for input images of shape "
                             f"{expected}; it must keep (N, C, h, w)")
        sharpness = patch_sharpness(refocused, self.mask[patch_index], self.config.sharpness).float()
        slot = self.probe_count[patch_index]
        self.probe_t_us[patch_index, slot] = t_us
        self.probe_sharpness[patch_index, slot] = sharpness
        self.probe_count[patch_index] += 1
        return sharpness

    def _refocus(self, patch_index: Tensor, events: Tensor) -> Tensor:
        images = self.image_crops[patch_index]
        if self.image_features is None:
            return self.refocus(images, events)
        return self.refocus(images, events, image_features=[f[patch_index] for f in self.image_features])


def _downsample(crops: Tensor, scale: int) -> Tensor:
    """(P, L, h, w) averaged over ``scale``×``scale`` blocks (partial blocks at the border: their mean)."""
    if scale == 1:
        return crops
    return F.avg_pool2d(crops, scale, ceil_mode=True, count_include_pad=False)


def _interior_points(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """The two golden-section points of a bracket, left then right."""
    step = (upper - lower) / GOLDEN_RATIO
    return upper - step, lower + step


def _peak_is_right(f_left: Tensor, f_right: Tensor) -> Tensor:
    """Unimodality: the peak lies right of the left point when the right point is sharper."""
    return f_left < f_right


def _search_batched(prober: _Prober, lower: Tensor, upper: Tensor, open_: Tensor,
                    config: SearchConfig) -> tuple[Tensor, Tensor]:
    """All open patches advance together; one new interior point per patch per refocus call.
    Returns the final brackets."""
    left, right = _interior_points(lower, upper)
    f_left = torch.full_like(lower, -math.inf, dtype=torch.float32)
    f_right = f_left.clone()
    patches = open_.nonzero()[:, 0]
    if patches.numel():
        f_left[patches] = prober(patches, left[patches])
        f_right[patches] = prober(patches, right[patches])
    for _ in range(config.max_iters):
        if not bool(open_.any()):
            break
        go_right = open_ & _peak_is_right(f_left, f_right)
        go_left = open_ & ~go_right
        # The surviving interior point becomes the other interior point of the shrunk bracket.
        lower, upper, left, right, f_left, f_right = (
            torch.where(go_right, left, lower), torch.where(go_left, right, upper),
            torch.where(go_right, right, left), torch.where(go_left, left, right),
            torch.where(go_right, f_right, f_left), torch.where(go_left, f_left, f_right),
        )
        new_left, new_right = _interior_points(lower, upper)
        left, right = torch.where(go_left, new_left, left), torch.where(go_right, new_right, right)
        open_ = open_ & (upper - lower > config.tolerance)
        patches = open_.nonzero()[:, 0]
        if patches.numel():
            sharpness = prober(patches, torch.where(go_right, right, left)[patches])
            f_right[patches] = torch.where(go_right[patches], sharpness, f_right[patches])
            f_left[patches] = torch.where(go_left[patches], sharpness, f_left[patches])
    return lower, upper


def _search_reference(prober: _Prober, lower: Tensor, upper: Tensor, open_: Tensor,
                      config: SearchConfig) -> tuple[Tensor, Tensor]:
    """The reference's procedure: patch after patch, both interior points re-evaluated per iteration.
    Returns the final brackets."""
    lower, upper = lower.clone(), upper.clone()
    for patch in open_.nonzero()[:, 0].tolist():
        index = torch.tensor([patch], device=lower.device)
        for _ in range(config.max_iters):
            if float(upper[patch] - lower[patch]) <= config.tolerance:
                break
            left, right = _interior_points(lower[index], upper[index])
            go_right = _peak_is_right(prober(index, left), prober(index, right))
            lower[index] = torch.where(go_right, left, lower[index])
            upper[index] = torch.where(go_right, upper[index], right)
    return lower, upper


def focus_search(
    image: Tensor,
    image_time_us: float,
    focal_stack: EventFocalStack,
    refocus: RefocusFn,
    config: SearchConfig,
    mode: SearchMode = "batched",
) -> SearchResult:
    """Find, per patch, the sweep time whose refocused patch is sharpest.

    ``image`` (C, H, W) in [0, 1] was taken at ``image_time_us``; ``refocus(images (M,C,h,w), events
    (M,B,h,w))`` returns the crops refocused to the end of their event segments. The event domain and
    ``min_events`` read each patch's event count from ``focal_stack.patch_counts`` (build the stack with
    ``count_grid=config.grid_size``).
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    cumulative = focal_stack.cumulative
    if cumulative.ndim != 3 or tuple(cumulative.shape[-2:]) != tuple(image.shape[-2:]):
        raise ValueError(f"cumulative events {tuple(cumulative.shape)} must be (K+1, H, W) with the "
                         f"image's H, W = {tuple(image.shape[-2:])}")
    t_start_us, t_end_us = float(focal_stack.t_start_us), float(focal_stack.t_end_us)
    if not t_start_us <= image_time_us <= t_end_us:
        raise ValueError(f"image_time_us={image_time_us} lies outside the sweep [{t_start_us}, {t_end_us}]: "
                         "the events between them are not in the focal stack")
    if mode not in ("batched", "reference"):
        raise ValueError(f"mode must be 'batched' or 'reference', got {mode!r}")
    grid = PatchGrid.build(image.shape[-2], image.shape[-1], config.grid_size, config.margin_px)
    counts = _checked_counts(focal_stack.patch_counts, config, grid.num_patches, cumulative.shape[0], image.device)

    num_patches = grid.num_patches
    if config.domain == "time":
        lower = torch.full((num_patches,), t_start_us, dtype=torch.float64, device=image.device)
        upper = torch.full_like(lower, t_end_us)
    else:
        lower, upper = counts[:, 0].clone(), counts[:, -1].clone()
    low_events = (torch.zeros(num_patches, dtype=torch.bool, device=image.device) if counts is None
                  else counts[:, -1] - counts[:, 0] < config.min_events)
    open_ = ~low_events & (upper - lower > config.tolerance)

    search = _search_batched if mode == "batched" else _search_reference
    with torch.no_grad():
        prober = _Prober(image, image_time_us, focal_stack, refocus, grid, config, counts,
                         max_probes=2 * config.max_iters + 2)
        lower, upper = search(prober, lower, upper, open_, config)
        found_us = prober.to_time_us(torch.arange(num_patches, device=image.device), (lower + upper) / 2)
    times_us = torch.where(low_events, torch.full_like(found_us, image_time_us), found_us)
    num_probes = int(prober.probe_count.max())
    return SearchResult(
        times_us=times_us.reshape(config.grid_size, config.grid_size),
        patch_boxes=grid.boxes,
        probes_t_us=prober.probe_t_us[:, :num_probes],
        probes_sharpness=prober.probe_sharpness[:, :num_probes],
        num_refocus_calls=prober.num_calls,
        low_event_mask=low_events.reshape(config.grid_size, config.grid_size),
    )


def _checked_counts(patch_counts: Tensor | None, config: SearchConfig, num_patches: int, num_nodes: int,
                    device: torch.device) -> Tensor | None:
    """The per-patch cumulative counts as float64 on ``device``, after checking they fit the search."""
    if patch_counts is None:
        if config.domain == "events" or config.min_events > 0:
            raise ValueError("the event domain and min_events > 0 need the focal stack's patch_counts "
                             "(EventFocalStack.from_events(..., count_grid=grid_size)); or set min_events=0")
        return None
    if tuple(patch_counts.shape) != (num_patches, num_nodes):
        raise ValueError(f"patch_counts must be (P, K+1) = {(num_patches, num_nodes)}, "
                         f"got {tuple(patch_counts.shape)}")
    counts = patch_counts.to(device=device, dtype=torch.float64)
    if bool((torch.diff(counts, dim=1) < 0).any()):
        raise ValueError("patch_counts must be cumulative (non-decreasing along K)")
    return counts
