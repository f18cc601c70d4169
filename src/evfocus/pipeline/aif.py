"""Search → focal stack → merge: one sweep in, an all-in-focus image and a depth map out.

The method (docs/architecture.md) as plain functions over tensors, so the test step of every training
stage, ``src/aif.py`` and the benchmarks run the very same code:

1. ``find_slices``: ``focus_search`` finds each patch's sharpest moment (batched golden section), and
   ``cluster_times`` folds the N×N found times into at most ``max_slices`` distinct slice times (the
   reference refocuses once per patch, duplicates included: 64 full-image passes). The joint stage
   asks the same function for the slices of each training crop.
2. ``refocus_stack`` refocuses the whole frame at every slice time (batched, tiled when large) and
   keeps each slice's local mean light at the frame's (``pipeline.anchor``).
3. ``merge_events`` cuts the events of a window around each slice time for the merge net.
4. A merge (EvMergeNet, or the Sobel-energy reference) weights the slices per pixel; the depth reads
   those weights, the image the same weights sharpened by each slice's focus (``pipeline.focus``).

``mode="reference"`` keeps the reference's costs for benchmarking: sequential search probing both
interior points, one slice per patch (no clustering) and one full-image refocus call per slice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evfocus.events.contrast import CONTRAST_METHODS, DEFAULT_CONTRAST_METHOD, ContrastMethod, estimate_contrast
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.integration import EventIntegrator, EventResponse
from evfocus.models.merge import MergeOutput, gradient_energy_merge
from evfocus.models.runtime import Runtime, autocast, check_runtime, prepared
from evfocus.optics import FocusSchedule
from evfocus.pipeline.anchor import anchor_to_frame
from evfocus.pipeline.depth import depth_confidence, fuse_depths, patch_depth_map, regularise_depth, weighted_depth_map
from evfocus.pipeline.depth_fusion import fusion_features, learned_depth
from evfocus.pipeline.focus import merged_image, sharpen_by_focus, sharpest_slice_weights
from evfocus.pipeline.recolour import recolour
from evfocus.pipeline.search import RefocusFn, SearchConfig, SearchResult, focus_search
from evfocus.sweep import Sweep

MergeFn = Callable[[Tensor, Tensor], MergeOutput]  # (stack (N,S,C,H,W), events (N,S,B,H,W)) → output
PipelineMode = Literal["batched", "reference"]
SearchProbe = Literal["net", "integration"]
SEARCH_PROBES: tuple[str, ...] = ("net", "integration")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the pipeline needs besides the nets (``pipeline.settings.pipeline_config`` builds it).

    ``merge_window_fraction``: the merge net sees the events within ± this fraction of the sweep
    around each slice time (the reference uses ±sweep/64). ``tile_px``: full-image nets run on
    overlapping tiles of at most this size (``None``: whole image at once). ``search_probe``: what
    refocuses the search's probes (``search_refocus``); the stack is always the net's.
    """

    search: SearchConfig
    efs_fine_bins: int = 256
    max_slices: int = 8
    merge_num_bins: int | None = None  # None: the search's num_bins
    merge_window_fraction: float = 1.0 / 64.0
    slices_per_batch: int = 8
    tile_px: int | None = None
    tile_overlap_px: int = 16
    mode: PipelineMode = "batched"
    runtime: Runtime = "torch"  # how the nets run (models.runtime): torch, channels_last, bf16_stack or bf16
    search_probe: SearchProbe = "net"
    contrast_estimator: ContrastMethod = DEFAULT_CONTRAST_METHOD  # self-calibration of per-sweep nets, probes
    event_contrast: float | None = None  # a known (calibrated) contrast instead of the self-calibrated estimate
    given_contrast_gain: float = 1.0  # a per-sweep-contrast net takes event_contrast times this (not the estimate)
    anchor_sigma_px: float | None = None  # stack slices keep the frame's local mean light (pipeline.anchor); None: off
    recolour: bool = False  # the AIF's chroma refitted from the frame's colour lines (pipeline.recolour), RGB only
    focus_sharpness: float = 0.0  # the image's weights: the merge's × focus energy ** this (pipeline.focus); 0: off
    merge_scale: int = 1  # the merge net runs on the stack averaged down by this factor (merge_weights)

    def __post_init__(self) -> None:
        if self.mode not in ("batched", "reference"):
            raise ValueError(f"mode must be 'batched' or 'reference', got {self.mode!r}")
        if self.search_probe not in SEARCH_PROBES:
            raise ValueError(f"search_probe must be one of {SEARCH_PROBES}, got {self.search_probe!r}")
        if self.contrast_estimator not in CONTRAST_METHODS:
            raise ValueError(f"contrast_estimator must be one of {CONTRAST_METHODS}, "
                             f"got {self.contrast_estimator!r}")
        if self.event_contrast is not None and not (math.isfinite(self.event_contrast) and self.event_contrast > 0):
            raise ValueError(f"event_contrast must be a positive number (or None: estimate it per sweep), "
                             f"got {self.event_contrast}")
        if not (math.isfinite(self.given_contrast_gain) and self.given_contrast_gain > 0):
            raise ValueError(f"given_contrast_gain must be a positive number, got {self.given_contrast_gain}")
        check_runtime(self.runtime)
        for name in ("efs_fine_bins", "max_slices", "slices_per_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.merge_window_fraction <= 0.5:
            raise ValueError(f"merge_window_fraction must be in (0, 0.5], got {self.merge_window_fraction}")
        if not self.focus_sharpness >= 0:
            raise ValueError(f"focus_sharpness must be >= 0 (0: off), got {self.focus_sharpness}")
        if self.merge_scale < 1:
            raise ValueError(f"merge_scale must be >= 1 (1: full resolution), got {self.merge_scale}")
        if self.anchor_sigma_px is not None and not self.anchor_sigma_px > 0:
            raise ValueError(f"anchor_sigma_px must be positive (or None), got {self.anchor_sigma_px}")
        if self.tile_px is not None and self.tile_px <= 2 * self.tile_overlap_px:
            raise ValueError(f"tile_px={self.tile_px} must exceed twice tile_overlap_px={self.tile_overlap_px}")

    @property
    def merge_bins(self) -> int:
        return self.merge_num_bins or self.search.num_bins


@dataclass
class AIFResult:
    """One sweep's outputs; tensors on the pipeline's device, images (C,H,W) in [0, 1]."""

    aif: Tensor  # (C, H, W)
    depth_m: Tensor  # (1, H, W): per pixel, from the merge weights, regularised along image edges
    depth_confidence: Tensor  # (1, H, W) in [0, 1]: see pipeline.depth.depth_confidence
    patch_depth_m: Tensor  # (1, H, W): per patch, from the search alone
    slice_times_us: Tensor  # (S,) float64, ascending
    weights: Tensor  # (S, H, W), sum to 1 per pixel
    stack: Tensor  # (S, C, H, W): the frame refocused at each slice time
    search: SearchResult
    focal_stack: EventFocalStack  # the sweep's events as the pipeline read them (on its device)
    refocus: RefocusFn  # the refocus function as fitted to this sweep (e.g. at its estimated contrast)
    seconds: dict[str, float] = field(default_factory=dict)
    num_refocus_calls: int = 0  # calls of the refocus function (integration probes not counted)
    contrast: float | None = None  # the event contrast the refocus function used, when it estimated one
    search_contrast: float | None = None  # the contrast of integration probes (search_probe="integration")

    @property
    def slice_index(self) -> Tensor:
        """(H, W) int64: the slice with the largest weight at each pixel."""
        return self.weights.argmax(dim=0)


def cluster_times(times_us: Tensor, max_slices: int, min_separation_us: float) -> Tensor:
    """Distinct slice times (S,) ascending, S = min(``max_slices``, the number of distinct times), from the
    found patch times.

    Times closer than ``min_separation_us`` (the search tolerance: the search cannot tell them apart) merge
    into their mean; while more remain than ``max_slices``, the two neighbours whose merge moves the fewest
    patches the least (Ward's criterion: the k-means cost it adds) merge into their patch-weighted mean.
    A k-means started at quantiles of the patch times, the former rule, collapsed to 3–5 slices when many
    patches shared one time (docs/results.md, "Slices that cover the sweep").
    """
    if max_slices < 1:
        raise ValueError(f"max_slices must be >= 1, got {max_slices}")
    values = times_us.flatten().to(torch.float64).sort().values
    if values.numel() == 0:
        raise ValueError("no patch times to cluster")
    breaks = torch.diff(values) > min_separation_us
    cluster = torch.cat([values.new_zeros(1, dtype=torch.int64), breaks.cumsum(0)])
    count = int(cluster[-1]) + 1
    totals = torch.zeros(count, dtype=torch.float64, device=values.device).index_add_(0, cluster, values)
    sizes = torch.bincount(cluster, minlength=count).to(torch.float64)
    centres, sizes = (totals / sizes).tolist(), sizes.tolist()
    while len(centres) > max_slices:
        cheapest = min(range(len(centres) - 1), key=lambda i: (centres[i + 1] - centres[i]) ** 2
                       * sizes[i] * sizes[i + 1] / (sizes[i] + sizes[i + 1]))
        size = sizes[cheapest] + sizes[cheapest + 1]
        centres[cheapest] = (centres[cheapest] * sizes[cheapest] + centres[cheapest + 1] * sizes[cheapest + 1]) / size
        sizes[cheapest] = size
        del centres[cheapest + 1], sizes[cheapest + 1]
    return torch.tensor(centres, dtype=torch.float64, device=values.device)


def find_slices(image: Tensor, image_time_us: float, focal_stack: EventFocalStack, refocus: RefocusFn,
                search: SearchConfig, max_slices: int, mode: PipelineMode = "batched") -> tuple[SearchResult, Tensor]:
    """The focal stack's slice times (S,) µs for ``image`` (C, H, W), taken at ``image_time_us``, and the
    search that found them.

    Each patch's sharpest moment comes from ``focus_search``; times closer than the search's resolution
    (``search.tolerance_us``) are one slice, and at most ``max_slices`` remain (``cluster_times``). In
    ``mode="reference"`` every patch keeps its own slice, duplicates included, as the reference does.
    """
    found = focus_search(image, image_time_us, focal_stack, refocus, search, mode=mode)
    if mode == "reference":
        return found, found.times_us.flatten().to(torch.float64)
    return found, cluster_times(found.times_us, max_slices, search.tolerance_us)


def has_fixed_event_gain(refocus: RefocusFn) -> bool:
    """A refocus net with one global event gain, not a per-sweep contrast: it would ignore a given contrast."""
    return getattr(refocus, "for_sweep", None) is not None and getattr(refocus, "contrast_source", None) is None


def search_refocus(probe: SearchProbe, refocus: RefocusFn, image: Tensor, focal_stack: EventFocalStack,
                   image_time_us: float, contrast_estimator: ContrastMethod = DEFAULT_CONTRAST_METHOD,
                   event_contrast: float | None = None) -> RefocusFn:
    """What refocuses the search's probes: event integration without a network, or the net itself.

    The net's probes are most of the pipeline's time, and the image barely depends on them: integration
    probes find other times for ~40% of the patches, yet the merge, which picks each pixel's sharpest slice,
    gives the same all-in-focus image within 0.03 dB on average (docs/results.md, "Network-free search probes
    by default"). Integration runs at the contrast the net uses for this sweep when it estimates one, else at
    ``event_contrast`` when the sensor's is known, else at the sweep's self-calibrated contrast
    (``events.contrast``).
    """
    if probe == "net" or isinstance(refocus, EventIntegrator):
        return refocus
    contrast = getattr(refocus, "contrast", None) or event_contrast
    if contrast is None:
        contrast = estimate_contrast(image, focal_stack, image_time_us, method=contrast_estimator).contrast
    return EventIntegrator(float(contrast), response=getattr(refocus, "response", "gamma"))


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - 2 * overlap
    starts = [*range(0, size - tile, step), size - tile]
    return sorted(set(starts))


def run_tiled(fn: Callable[..., Tensor], inputs: list[Tensor], tile_px: int | None, overlap_px: int) -> Tensor:
    """Apply a fully convolutional ``fn`` over overlapping spatial tiles of ``inputs`` (…, H, W).

    Each tile keeps only its centre (``overlap_px`` trimmed where a neighbour covers it), so the
    seams see the same context a whole-image pass would, up to ``overlap_px``.
    """
    height, width = inputs[0].shape[-2:]
    if tile_px is None or (height <= tile_px and width <= tile_px):
        return fn(*inputs)
    output: Tensor | None = None
    rows, cols = _tile_starts(height, tile_px, overlap_px), _tile_starts(width, tile_px, overlap_px)
    for top in rows:
        for left in cols:
            crops = [x[..., top:top + tile_px, left:left + tile_px] for x in inputs]
            result = fn(*crops)
            if output is None:
                output = result.new_zeros((*result.shape[:-2], height, width))
            keep_top = 0 if top == 0 else overlap_px
            keep_left = 0 if left == 0 else overlap_px
            output[..., top + keep_top:top + result.shape[-2], left + keep_left:left + result.shape[-1]] = \
                result[..., keep_top:, keep_left:]
    return output


def refocus_stack(refocus: RefocusFn, image: Tensor, image_time_us: float, focal_stack: EventFocalStack,
                  times_us: Tensor, num_bins: int, slices_per_batch: int = 8, tile_px: int | None = None,
                  tile_overlap_px: int = 16, anchor_sigma_px: float | None = None) -> tuple[Tensor, int]:
    """The frame (C,H,W) refocused at every time in ``times_us`` (S,) → ((S,C,H,W), refocus calls).

    Untiled, a refocus net with ``encode_image`` encodes the frame once for all slices. With
    ``anchor_sigma_px``, every slice keeps the frame's local mean light (``pipeline.anchor``).
    """
    encode = getattr(refocus, "encode_image", None)
    tiled = tile_px is not None and max(image.shape[-2:]) > tile_px
    features = None if encode is None or tiled else encode(image[None])
    slices, calls = [], 0
    for chunk in times_us.split(slices_per_batch):
        t0 = torch.full_like(chunk, float(image_time_us), dtype=torch.float64)
        events = focal_stack.segments(t0, chunk.to(torch.float64), num_bins)
        images = image[None].expand(len(chunk), *image.shape)
        if features is None:
            slices.append(run_tiled(refocus, [images, events], tile_px, tile_overlap_px))
        else:
            cached = [level.expand(len(chunk), *level.shape[1:]) for level in features]
            slices.append(refocus(images, events, image_features=cached))
        calls += 1
    stack = torch.cat(slices)
    if anchor_sigma_px is not None:
        stack = anchor_to_frame(stack, image, anchor_sigma_px)
    return stack, calls



def configured_stack(refocus: RefocusFn, image: Tensor, image_time_us: float, focal_stack: EventFocalStack,
                     times_us: Tensor, config: PipelineConfig) -> tuple[Tensor, int]:
    """``refocus_stack`` batched, tiled and anchored as ``config`` says (the reference mode: one slice per call),
    so every caller that wants the pipeline's own slices (the stack, the refocus video, benchmarks) gets them."""
    slices_per_batch = 1 if config.mode == "reference" else config.slices_per_batch
    return refocus_stack(refocus, image, image_time_us, focal_stack, times_us, config.search.num_bins,
                         slices_per_batch, config.tile_px, config.tile_overlap_px, config.anchor_sigma_px)

def merge_events(focal_stack: EventFocalStack, times_us: Tensor, window_us: float, num_bins: int) -> Tensor:
    """The events within ± ``window_us`` of each slice time (clipped to the sweep): (S, B, H, W)."""
    times = times_us.to(torch.float64)
    start = (times - window_us).clamp(focal_stack.t_start_us, focal_stack.t_end_us)
    end = (times + window_us).clamp(focal_stack.t_start_us, focal_stack.t_end_us)
    return focal_stack.segments(start, end, num_bins)


class AIFPipeline:
    """Sweep → ``AIFResult`` with a refocus function and a merge function (None: Sobel-energy merge).

    Networks are used as given (call ``.eval()`` first), in ``config.runtime``'s memory format while it
    runs (``models.runtime.prepared``); the pipeline runs without gradients. A ``depth_head``
    (``models.depth_head``, trained for this merge) mixes the two depths from focus instead of the fixed
    rule (``pipeline.depth_fusion``).
    """

    def __init__(self, refocus: RefocusFn, merge: MergeFn | None, config: PipelineConfig,
                 depth_head: nn.Module | None = None) -> None:
        if config.event_contrast is not None and has_fixed_event_gain(refocus):
            raise ValueError("event_contrast: this refocus net has one global event gain, not a per-sweep "
                             "contrast, so a given contrast would be ignored (use a net trained with "
                             "model.contrast=prior, e.g. the shipped weights)")
        self.refocus = refocus
        self.merge = merge
        self.config = config
        self.depth_head = depth_head

    @torch.no_grad()
    def __call__(self, sweep: Sweep, device: torch.device | str | None = None) -> AIFResult:
        device = torch.device(device) if device is not None else sweep.image.device
        with prepared((self.refocus, self.merge), self.config.runtime):
            return self._run(sweep, device)

    def _prior_contrast(self, image: Tensor, focal_stack: EventFocalStack, image_time_us: float,
                        response: EventResponse) -> float | None:
        """The contrast a per-sweep-contrast net starts from: the given one times ``given_contrast_gain``, else the
        self-calibrated estimate (None: the net has no per-sweep contrast)."""
        if getattr(self.refocus, "contrast_source", None) is None:
            return None
        if self.config.event_contrast is not None:
            return self.config.event_contrast * self.config.given_contrast_gain
        return estimate_contrast(image, focal_stack, image_time_us, method=self.config.contrast_estimator,
                                 response=response).contrast

    def _run(self, sweep: Sweep, device: torch.device) -> AIFResult:
        cfg = self.config
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        schedule = sweep.schedule
        events = sweep.events.to(device)
        image = sweep.image.to(device)
        focal_stack = EventFocalStack.from_events(events, schedule.t_start_us, schedule.t_end_us,
                                                  cfg.efs_fine_bins, count_grid=cfg.search.grid_size)
        image_time_us = float(sweep.image_time_us)
        for_sweep = getattr(self.refocus, "for_sweep", None)
        response = sweep.event_response if getattr(self.refocus, "response_aware", False) else "gamma"
        refocus = self.refocus if for_sweep is None else for_sweep(
            image, focal_stack, image_time_us,
            prior_contrast=self._prior_contrast(image, focal_stack, image_time_us, response), response=response)
        seconds["events"] = _lap(started, device)

        mark = time.perf_counter()
        probe = search_refocus(cfg.search_probe, refocus, image, focal_stack, image_time_us, cfg.contrast_estimator,
                               cfg.event_contrast)
        with autocast(cfg.runtime, device, "search"):  # the nets' steps only: the rest stays float32
            search, slice_times = find_slices(image, image_time_us, focal_stack, probe, cfg.search,
                                              cfg.max_slices, cfg.mode)
        seconds["search"] = _lap(mark, device)

        mark = time.perf_counter()
        with autocast(cfg.runtime, device, "stack"):
            stack, calls = configured_stack(refocus, image, image_time_us, focal_stack, slice_times, cfg)
        seconds["stack"] = _lap(mark, device)

        mark = time.perf_counter()
        window_us = cfg.merge_window_fraction * schedule.duration_us
        slice_events = merge_events(focal_stack, slice_times, window_us, cfg.merge_bins)
        if self.merge is None:
            weights = gradient_energy_merge(stack[None]).weights[0]
        else:
            with autocast(cfg.runtime, device, "merge"):
                weights = run_tiled(lambda s, e: merge_weights(self.merge, s, e, cfg.merge_scale),
                                    [stack[None], slice_events[None]], cfg.tile_px, cfg.tile_overlap_px)[0].float()
        aif = _image(stack, weights, cfg.focus_sharpness, image if cfg.recolour else None)
        seconds["merge"] = _lap(mark, device)

        patch_depth, _ = patch_depth_map(search.times_us, search.patch_boxes, schedule, *image.shape[-2:])
        confidence = depth_confidence(stack)
        depth = _per_pixel_depth(weights, stack, slice_times, schedule, confidence, aif, self.depth_head)
        seconds["total"] = _lap(started, device)
        return AIFResult(aif=aif, depth_m=depth, depth_confidence=confidence, patch_depth_m=patch_depth,
                         slice_times_us=slice_times, weights=weights, stack=stack, search=search,
                         focal_stack=focal_stack, refocus=refocus, seconds=seconds,
                         num_refocus_calls=(search.num_refocus_calls if probe is refocus else 0) + calls,
                         contrast=getattr(refocus, "contrast", None),
                         search_contrast=getattr(probe, "contrast", None) if probe is not refocus else None)


def sobel_remerge(result: AIFResult, schedule: FocusSchedule, recolour_from: Tensor | None = None,
                  focus_sharpness: float = 0.0) -> AIFResult:
    """The same search and stack merged by Sobel energy instead: the reference's ablation, without
    paying for the search and the stack a second time (they do not depend on the merge). With
    ``recolour_from`` (the RGB frame), its colour is refitted as the pipeline's (``pipeline.recolour``);
    ``focus_sharpness`` sharpens its weights for the image as the pipeline's (``pipeline.focus``)."""
    started = time.perf_counter()
    weights = gradient_energy_merge(result.stack[None]).weights[0]
    aif = _image(result.stack, weights, focus_sharpness, recolour_from)
    depth = _per_pixel_depth(weights, result.stack, result.slice_times_us, schedule, result.depth_confidence, aif)
    seconds = {**result.seconds, "merge": time.perf_counter() - started}
    seconds["total"] = result.seconds["total"] - result.seconds["merge"] + seconds["merge"]
    return replace(result, aif=aif, weights=weights, depth_m=depth, seconds=seconds)


def _image(stack: Tensor, weights: Tensor, focus_sharpness: float, frame: Tensor | None) -> Tensor:
    """The all-in-focus image: the ``stack`` merged with ``weights`` sharpened by focus (``pipeline.focus``),
    its colour refitted from the RGB ``frame`` (``pipeline.recolour``); grey sweeps have no colour to refit."""
    aif = merged_image(stack, sharpen_by_focus(weights, stack, focus_sharpness))
    return recolour(aif, frame) if frame is not None and frame.shape[0] == 3 else aif


def _per_pixel_depth(weights: Tensor, stack: Tensor, slice_times_us: Tensor, schedule: FocusSchedule,
                     confidence: Tensor, aif: Tensor, depth_head: nn.Module | None = None) -> Tensor:
    """(1, H, W) metres: the sharpest slice's depth where focus is decisive, else the merge weights' diopter
    average (mixed by ``depth_head`` when given); then smoothed by confidence along the AIF's edges."""
    if depth_head is not None:
        features = fusion_features(stack, weights, slice_times_us, schedule, confidence, aif)
        return regularise_depth(learned_depth(depth_head, features, schedule), confidence, aif)
    merge_depth = weighted_depth_map(weights, slice_times_us, schedule).reshape(1, *weights.shape[-2:])
    focus_depth = weighted_depth_map(sharpest_slice_weights(stack), slice_times_us, schedule)
    return regularise_depth(fuse_depths(merge_depth, focus_depth, confidence), confidence, aif)


def merge_weights(merge: MergeFn, stack: Tensor, events: Tensor, scale: int = 1) -> Tensor:
    """The merge's weights (N, S, H, W) for a stack (N, S, C, H, W) and its events (N, S, B, H, W); the image
    is made from them after sharpening (``_image``).

    With ``scale`` > 1 the merge sees the stack and the events averaged over ``scale``² pixels (event counts
    per pixel keep their density) and its weights are upsampled bilinearly: they blend smoothly and the
    sharpening by focus runs at full resolution, so the image barely changes while the merge, a full-image
    net per slice, costs ``scale``² times less (docs/results.md, "The merge at half resolution").
    """
    if scale == 1:
        return merge(stack, events).weights
    height, width = stack.shape[-2:]
    size = (-(-height // scale), -(-width // scale))
    small_stack = F.adaptive_avg_pool2d(stack.flatten(0, 1), size).unflatten(0, stack.shape[:2])
    small_events = F.adaptive_avg_pool2d(events.flatten(0, 1), size).unflatten(0, events.shape[:2])
    weights = merge(small_stack, small_events).weights
    return F.interpolate(weights.float(), size=(height, width), mode="bilinear", align_corners=False)


def _lap(mark: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - mark

