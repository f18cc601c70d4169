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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from evfocus.events.focal_stack import EventFocalStack

CANDIDATES = tuple(float(c) for c in torch.logspace(-2, 0, 21, dtype=torch.float64))
KINKS = torch.logspace(-2.5, 0, 200, dtype=torch.float64)
WINDOW_PX = 15  # neighbourhood whose range bounds the sweep's values (efs_dev: blur radii 8-11 px)
MAX_NODES = 64  # time nodes scanned for overshoot (the cumulative stack is subsampled to these)
FALLBACK_CONTRAST = 0.1  # when the sweep shows no overshoot at all (no events, or no edges)


@dataclass(frozen=True)
class ContrastEstimate:
    contrast: float
    candidates: tuple[float, ...]  # the c grid V was measured on
    overshoot: tuple[float, ...]  # V(c): mean over pixels of the worst overshoot over the sweep (log units)
    fallback: bool  # True when V stayed flat and ``contrast`` is FALLBACK_CONTRAST


def _nodes_since_frame(focal_stack: EventFocalStack, image_time_us: float) -> Tensor:
    """Signed events from the frame's moment to each of ≤ MAX_NODES+1 nodes spanning the sweep: (K, H, W)."""
    step = max(1, focal_stack.num_fine_bins // MAX_NODES)
    cumulative = focal_stack.cumulative[::step]
    start = torch.tensor([float(focal_stack.t_start_us)], dtype=torch.float64, device=focal_stack.device)
    at_frame = torch.tensor([float(image_time_us)], dtype=torch.float64, device=focal_stack.device)
    before_frame = focal_stack.segments(start, at_frame, 1)[0, 0]
    return cumulative - focal_stack.cumulative[0] - before_frame


def overshoot_curve(image: Tensor, focal_stack: EventFocalStack, image_time_us: float,
                    candidates: tuple[float, ...] = CANDIDATES, window_px: int = WINDOW_PX) -> Tensor:
    """V(c) (len(candidates),) float64 for the frame (C, H, W) in [0, 1] and its sweep's events."""
    log_image = torch.log(image.float().mean(dim=0, keepdim=True) + 1e-3)
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


def estimate_contrast(image: Tensor, focal_stack: EventFocalStack, image_time_us: float,
                      window_px: int = WINDOW_PX) -> ContrastEstimate:
    """The sweep's event contrast from its frame (C, H, W) and events alone (see the module doc)."""
    curve = overshoot_curve(image, focal_stack, image_time_us, CANDIDATES, window_px)
    found = kink(torch.tensor(CANDIDATES, dtype=torch.float64), curve) if float(curve[-1]) > 1e-6 else None
    return ContrastEstimate(contrast=FALLBACK_CONTRAST if found is None else found, candidates=CANDIDATES,
                            overshoot=tuple(curve.tolist()), fallback=found is None)
