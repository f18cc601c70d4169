"""Self-calibrated event contrast: the log-intensity step per event, estimated from one sweep alone.

Refocusing by integration, ``log I(t) = log I(t0) + c·Σ events``, needs the sensor's contrast ``c``;
it differs by sensor and bias settings (ray-traced DVS-Voltmeter sweeps need about 0.2 at DAVIS346
sensitivity, 0.08 at three times that), and no ground truth is at hand on a real capture.

The estimate uses one property of defocus: blurring averages, so every frame of the sweep stays
within the local range of the sharp scene, which the frame's own local range approximates. With the
right ``c`` the refocused values stay (nearly) inside ``[min, max]`` of the frame's neighbourhood;
with a larger ``c`` they overshoot by ``(c/c_true − 1)·|Δ log I|`` at every edge the sweep sharpens.
The total overshoot ``V(c)`` therefore grows slowly (noise events) up to ``c_true`` and steeply after
it: ``c`` is the kink of a two-segment fit ``V(c) ≈ a·c + b·max(0, c − c₀)``.

Measured (docs/simulation_gap.md): 0.216 / 0.222 on the two DAVIS346-density ``efs_dev`` sweeps
(PSNR-best c on their ground-truth frames 0.16–0.24) and 0.093 / 0.093 on the ×3 ones (0.07–0.08);
on our simulated sweeps the kink scatters by about ×2 around the sensor's threshold, more on scenes
with little texture. It is the non-learned reference, and the prior of the refocus net's own
estimate (``models.refocus.ContrastEstimator``).

The kink's overshoot statistic responds sub-linearly to the sensor: the same scene at three times the
sensitivity needs a 3.2× smaller ``c``, the kink moves 2× (docs/results.md). ``method="blur_fit"`` refines it
with a forward model of defocus: where the sweep, at some moment, shows the frame *blurred further* (a tile
moving away from focus), the signed events since the frame must equal ``(log blur_r(frame) − log frame) / c``
for some disc radius r (a lens's defocus blur; chosen over Gaussians because it estimates as close or closer
on the captures and the 260×346 validation sweeps, level on 96-px ones; with either kernel the tiles' contrast
rises with the blur that fits them, docs/results.md). Per tile and time node the best-fitting r is kept; the
tile-times that fit well (R² > BLUR_FIT_MIN_R2) give ``c`` by least squares. The frame's own structure sets
the scale, so the estimate moves with the sensor. The blur acts in linear light (defocus averages photons) on
the frame's grey value, read as sRGB. A frame that is the sweep's blurriest offers no such tiles (fewer than
BLUR_FIT_MIN_TILES): the kink stands. The fit may move the kink by at most BLUR_FIT_MAX_RATIO either way: on
some scenes it locks onto edges the frame alone does not predict (occlusions) and comes out far too small.

Both statistics take the log the sensor responds to (``response``, ``events.integration.EventResponse``):
the contrast they find is the step of that log per event, the one ``integrate_events`` needs with the same
``response``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from evfocus.colour import srgb_decode, srgb_encode
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.integration import EventResponse, to_log_signal

ContrastMethod = Literal["kink", "blur_fit"]
CONTRAST_METHODS: tuple[ContrastMethod, ...] = ("kink", "blur_fit")
DEFAULT_CONTRAST_METHOD: ContrastMethod = "blur_fit"  # closer to the best contrast on 36 of our test sweeps

CANDIDATES = tuple(float(c) for c in torch.logspace(-2, 0, 21, dtype=torch.float64))
KINKS = torch.logspace(-2.5, 0, 200, dtype=torch.float64)
WINDOW_PX = 15  # neighbourhood whose range bounds the sweep's values (efs_dev: blur radii 8-11 px)
MAX_NODES = 64  # time nodes scanned for overshoot (the cumulative stack is subsampled to these)
FALLBACK_CONTRAST = 0.1  # when the sweep shows no overshoot at all (no events, or no edges)
BLUR_RADII_PX = (1.4, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)  # further disc blurs of the frame the fit tries
_DISC_SUBSAMPLES = 4  # per pixel and axis: the disc kernel's edge pixels get their covered fraction
BLUR_FIT_TILE_PX = 16
BLUR_FIT_MIN_R2 = 0.5
BLUR_FIT_MIN_TILES = 3
BLUR_FIT_MAX_RATIO = 2.0


@dataclass(frozen=True)
class ContrastEstimate:
    contrast: float
    candidates: tuple[float, ...]  # the c grid V was measured on
    overshoot: tuple[float, ...]  # V(c): mean over pixels of the worst overshoot over the sweep (log units)
    fallback: bool  # True when V stayed flat and ``contrast`` is FALLBACK_CONTRAST
    kink: float  # the kink estimate (``contrast`` itself with method="kink")
    blur_fit: float | None = None  # the blur fit's own value (method="blur_fit"; None: too few tiles)


def _nodes_since_frame(focal_stack: EventFocalStack, image_time_us: float) -> Tensor:
    """Signed events from the frame's moment to each of ≤ MAX_NODES+1 nodes spanning the sweep: (K, H, W)."""
    step = max(1, focal_stack.num_fine_bins // MAX_NODES)
    cumulative = focal_stack.cumulative[::step]
    start = torch.tensor([float(focal_stack.t_start_us)], dtype=torch.float64, device=focal_stack.device)
    at_frame = torch.tensor([float(image_time_us)], dtype=torch.float64, device=focal_stack.device)
    before_frame = focal_stack.segments(start, at_frame, 1)[0, 0]
    return cumulative - focal_stack.cumulative[0] - before_frame


def overshoot_curve(image: Tensor, focal_stack: EventFocalStack, image_time_us: float,
                    candidates: tuple[float, ...] = CANDIDATES, window_px: int = WINDOW_PX,
                    response: EventResponse = "gamma") -> Tensor:
    """V(c) (len(candidates),) float64 for the frame (C, H, W) in [0, 1] and its sweep's events."""
    log_image = to_log_signal(image.float().mean(dim=0, keepdim=True), response)
    high = F.max_pool2d(log_image[None], window_px, 1, window_px // 2)[0]
    low = -F.max_pool2d(-log_image[None], window_px, 1, window_px // 2)[0]
    events = _nodes_since_frame(focal_stack, image_time_us).to(log_image.dtype)
    curve = []
    for contrast in candidates:
        refocused = log_image + contrast * events
        above, below = (refocused - high).clamp_min_(0), (low - refocused).clamp_min_(0)
        curve.append(float((above + below).amax(dim=0).mean()))
    return torch.tensor(curve, dtype=torch.float64)


def kink(candidates: Tensor, curve: Tensor) -> float | None:
    """c₀ of the best two-segment fit ``a·c + b·max(0, c − c₀)`` with b > 0, or None (no kink)."""
    values = curve - curve[0]
    slopes = torch.stack([candidates.expand(len(KINKS), -1), (candidates[None] - KINKS[:, None]).clamp_min(0)], -1)
    solution = torch.linalg.lstsq(slopes, values.expand(len(KINKS), -1)[..., None]).solution[..., 0]  # (200, 2)
    residual = ((slopes @ solution[..., None])[..., 0] - values).pow(2).sum(dim=1)
    residual[solution[:, 1] <= 0] = torch.inf
    best = int(residual.argmin())
    return None if not torch.isfinite(residual[best]) else float(KINKS[best])


def disc_kernel(radius_px: float) -> Tensor:
    """(1, K, K) normalised uniform disc of ``radius_px``, its edge pixels weighted by the share they cover."""
    half = math.ceil(radius_px)
    offsets = torch.arange(-half, half + 1, dtype=torch.float64)
    sub = (torch.arange(_DISC_SUBSAMPLES, dtype=torch.float64) + 0.5) / _DISC_SUBSAMPLES - 0.5
    along = (offsets[:, None] + sub[None]).flatten()  # every subsample position along one axis
    inside = (along[:, None].square() + along[None].square()) <= radius_px**2
    size = len(offsets)
    coverage = inside.view(size, _DISC_SUBSAMPLES, size, _DISC_SUBSAMPLES).double().mean(dim=(1, 3))
    return (coverage / coverage.sum()).float()[None]


def _disc_blur(x: Tensor, radius_px: float) -> Tensor:
    return kornia.filters.filter2d(x, disc_kernel(radius_px).to(x), border_type="reflect")


def blur_fit_contrast(image: Tensor, focal_stack: EventFocalStack, image_time_us: float,
                      response: EventResponse = "gamma") -> float | None:
    """``c`` from the tile-times where the events show the frame (C, H, W) blurred further, or None (see
    the module doc): least squares of ``predicted log change ≈ c · signed events`` over those tile-times."""
    grey = image.float().mean(dim=0, keepdim=True)[None].clamp(0.0, 1.0)
    linear = srgb_decode(grey)
    log_frame = to_log_signal(grey, response)
    predicted = torch.cat([  # (G, H, W): log change of the frame blurred by each disc
        to_log_signal(srgb_encode(_disc_blur(linear, radius)), response) - log_frame
        for radius in BLUR_RADII_PX], dim=1)[0]
    events = _nodes_since_frame(focal_stack, image_time_us).to(predicted.dtype)  # (K, H, W)
    tile = min(BLUR_FIT_TILE_PX, *events.shape[-2:])
    # one radius at a time: (K, H, W) products, not (K, G, H, W) (1.9 GB at 720×1280)
    cross = torch.stack([F.avg_pool2d(events * change, tile) for change in predicted], dim=1)  # (K, G, h, w)
    predicted_energy = F.avg_pool2d(predicted * predicted, tile)[None].expand_as(cross)
    event_energy = F.avg_pool2d(events * events, tile)[:, None]
    r2 = torch.where(cross > 0, cross.square() / (predicted_energy * event_energy).clamp_min(1e-12),
                     torch.zeros_like(cross))
    best_r2, best_radius = r2.max(dim=1, keepdim=True)
    fits = best_r2 > BLUR_FIT_MIN_R2
    if int(fits.sum()) < BLUR_FIT_MIN_TILES:
        return None
    return float(predicted_energy.gather(1, best_radius)[fits].sum() / cross.gather(1, best_radius)[fits].sum())


def estimate_contrast(image: Tensor, focal_stack: EventFocalStack, image_time_us: float,
                      window_px: int = WINDOW_PX,
                      method: ContrastMethod = DEFAULT_CONTRAST_METHOD,
                      response: EventResponse = "gamma") -> ContrastEstimate:
    """The sweep's event contrast from its frame (C, H, W) and events alone (see the module doc)."""
    if method not in CONTRAST_METHODS:
        raise ValueError(f"contrast method must be one of {CONTRAST_METHODS}, got {method!r}")
    curve = overshoot_curve(image, focal_stack, image_time_us, CANDIDATES, window_px, response)
    found = kink(torch.tensor(CANDIDATES, dtype=torch.float64), curve) if float(curve[-1]) > 1e-6 else None
    kink_contrast = FALLBACK_CONTRAST if found is None else found
    fitted = blur_fit_contrast(image, focal_stack, image_time_us, response) if method == "blur_fit" else None
    contrast = kink_contrast if fitted is None else min(max(fitted, kink_contrast / BLUR_FIT_MAX_RATIO),
                                                        kink_contrast * BLUR_FIT_MAX_RATIO)
    return ContrastEstimate(contrast=contrast, candidates=CANDIDATES, overshoot=tuple(curve.tolist()),
                            fallback=found is None, kink=kink_contrast, blur_fit=fitted)
