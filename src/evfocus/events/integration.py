"""Pure event integration: the non-learned refocus reference every refocus network must beat.

An ideal event sensor fires one event each time log brightness moves by the contrast threshold, so
``log I(t) = log I(t0) + c · Σ events(t0→t)``. Real events break this (threshold spread, noise,
refractory losses, a response that is not the stored image's sRGB curve), which is why the method
learns refocusing; this module measures how far the ideal formula alone gets. One global ``c`` is
fitted by ``fit_contrast``, which must see **validation** pairs only: fitting on test pairs would
tune the baseline on the numbers it is then scored by.

``EventIntegrator(c)`` has the refocus network's call signature ``refocus(images, events)``, so it
drops into ``focus_search`` (and anywhere else a refocus function goes) unchanged.

The log is taken of what the event pixels respond to (``EventResponse``): a sensor fed the frame's stored
values (``"gamma"``: events simulated from sRGB frames, as in efs_dev; the default) integrates in
``log(I + log_eps)`` of those values; a photoreceptor sees linear light (``"linear"``), whose log has a dark
offset (DVS-Voltmeter's ``k2``, 20 of 255): ``log(L + DARK_OFFSET)`` of the frame decoded to linear light.
On our linear-response sweeps the right log gains 1.4 dB per refocused frame at ×3 sensitivity
(docs/results.md, "Where the offset does matter").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from evfocus.colour import srgb_decode, srgb_encode
from evfocus.golden import GOLDEN_RATIO

RefocusPair = tuple[Tensor, Tensor, Tensor]  # image (C,H,W)|(N,C,H,W), events (B,H,W)|(N,B,H,W), target

DEFAULT_CANDIDATES = tuple(float(c) for c in torch.logspace(-3, 0.5, 36, dtype=torch.float64))

EventResponse = Literal["gamma", "linear"]
EVENT_RESPONSES: tuple[EventResponse, ...] = ("gamma", "linear")
DARK_OFFSET = 20.0 / 255.0  # DVS-Voltmeter's photoreceptor offset k2 in full-scale units: log(L + k2)


def check_response(response: str) -> EventResponse:
    """``response`` if it is one of ``EVENT_RESPONSES``, else a ValueError naming them."""
    if response not in EVENT_RESPONSES:
        raise ValueError(f"event response must be one of {list(EVENT_RESPONSES)}, got {response!r}")
    return response  # type: ignore[return-value]


def to_log_signal(image: Tensor, response: EventResponse = "gamma", log_eps: float = 1e-3) -> Tensor:
    """The log of what the event pixels see in ``image`` (sRGB values in [0, 1]): see the module doc."""
    if check_response(response) == "linear":
        return torch.log(srgb_decode(image) + DARK_OFFSET)  # srgb_decode clamps to [0, 1] itself
    return torch.log(image + log_eps)


def from_log_signal(log_signal: Tensor, response: EventResponse = "gamma", log_eps: float = 1e-3) -> Tensor:
    """``to_log_signal``'s inverse, clamped to [0, 1] (modifies ``log_signal`` in place)."""
    if check_response(response) == "linear":
        return srgb_encode(log_signal.exp_().sub_(DARK_OFFSET))  # srgb_encode clamps to [0, 1] first
    return log_signal.exp_().sub_(log_eps).clamp_(0.0, 1.0)


def _check_pair(image: Tensor, events: Tensor) -> None:
    if image.ndim != 4 or events.ndim != 4:
        raise ValueError(f"image must be (N, C, H, W) and events (N, B, H, W), got {tuple(image.shape)} "
                         f"and {tuple(events.shape)}")
    if image.shape[0] != events.shape[0] or tuple(image.shape[-2:]) != tuple(events.shape[-2:]):
        raise ValueError(f"image {tuple(image.shape)} and events {tuple(events.shape)} disagree on N, H or W")


def integrate_events(image: Tensor, events: Tensor, contrast: float, log_eps: float = 1e-3,
                     response: EventResponse = "gamma") -> Tensor:
    """Refocus ``image`` (N,C,H,W) in [0,1] by its events (N,B,H,W): (N,C,H,W) in [0,1].

    ``exp(log(I + ε) + c·Σ_B events) − ε``, clamped to [0,1], in the log the ``response`` names (module
    doc); every channel moves by the same log step (events carry no colour). ``log_eps`` keeps black
    pixels finite (``"gamma"``). ``contrast = 0`` is the identity.
    Events are signed (+1 = brighter) in the segment's direction, as ``EventFocalStack.segment`` cuts
    them, so refocusing backward in time works unchanged.
    """
    _check_pair(image, events)
    if log_eps <= 0:
        raise ValueError(f"log_eps must be > 0, got {log_eps}")
    event_sum = events.sum(dim=1, keepdim=True).to(image.dtype)
    return from_log_signal(to_log_signal(image, response, log_eps) + float(contrast) * event_sum, response, log_eps)


@dataclass(frozen=True)
class EventIntegrator:
    """``integrate_events`` with a fixed contrast, callable as a refocus function ``(images, events)``."""

    contrast: float
    log_eps: float = 1e-3
    response: EventResponse = "gamma"

    def __call__(self, images: Tensor, events: Tensor) -> Tensor:
        return integrate_events(images, events, self.contrast, self.log_eps, self.response)


def _psnr(prediction: Tensor, target: Tensor) -> Tensor:
    """PSNR (dB) per sample, data range 1, over the full image (the metrics' convention)."""
    mse = (prediction - target).pow(2).flatten(1).mean(dim=1).double()
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


def fit_contrast(
    pairs: Sequence[RefocusPair],
    candidates: Sequence[float] | None = None,
    log_eps: float = 1e-3,
    refine_iters: int = 24,
    response: EventResponse = "gamma",
) -> float:
    """The contrast c maximising the mean PSNR of ``integrate_events`` over validation refocus pairs.

    Each pair is ``(image, events, target)``, unbatched (C,H,W)/(B,H,W)/(C,H,W) or batched with a
    leading N; the score is the mean PSNR over all samples. Fit on **validation** pairs, never test.

    Search: every positive ``candidates`` value (default 36 log-spaced values over [1e-3, 10^0.5]) is
    scored, then a golden-section search in log c refines between the best candidate's neighbours
    (mean PSNR vs c is one smooth peak in practice; a grid alone would quantise the answer).
    """
    if not pairs:
        raise ValueError("fit_contrast needs at least one (image, events, target) pair")
    grid = sorted(float(c) for c in (DEFAULT_CANDIDATES if candidates is None else candidates))
    if not grid or grid[0] <= 0:
        raise ValueError(f"candidates must be positive contrasts, got {grid}")
    groups: dict[tuple, list[tuple[Tensor, Tensor, Tensor]]] = {}  # pairs of one shape are scored as one batch
    for index, (image, events, target) in enumerate(pairs):
        if image.ndim == 3:
            image, events, target = image[None], events[None], target[None]
        _check_pair(image, events)
        if tuple(target.shape) != tuple(image.shape):
            raise ValueError(f"pair {index}: target {tuple(target.shape)} must match image {tuple(image.shape)}")
        event_sum = events.sum(dim=1, keepdim=True).to(image.dtype)
        key = (tuple(image.shape[1:]), image.dtype, image.device)
        groups.setdefault(key, []).append((to_log_signal(image, response, log_eps), event_sum, target))
    prepared = [tuple(torch.cat(parts) for parts in zip(*group, strict=True)) for group in groups.values()]

    def score(contrast: float) -> float:
        psnrs = [_psnr(from_log_signal(log_signal + contrast * event_sum, response, log_eps), target)
                 for log_signal, event_sum, target in prepared]
        return float(torch.cat(psnrs).mean())

    scores = [score(c) for c in grid]
    best = max(range(len(grid)), key=scores.__getitem__)
    if len(grid) == 1:
        return grid[0]
    lower, upper = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, len(grid) - 1)])
    best_c, best_score = grid[best], scores[best]
    step = (upper - lower) / GOLDEN_RATIO
    left, right = upper - step, lower + step
    f_left, f_right = score(math.exp(left)), score(math.exp(right))
    for _ in range(refine_iters):
        if f_left >= f_right:  # the peak is left of ``right``
            upper, right, f_right = right, left, f_left
            left = upper - (upper - lower) / GOLDEN_RATIO
            f_left = score(math.exp(left))
        else:
            lower, left, f_left = left, right, f_right
            right = lower + (upper - lower) / GOLDEN_RATIO
            f_right = score(math.exp(right))
    for log_c, value in ((left, f_left), (right, f_right)):
        if value > best_score:
            best_c, best_score = math.exp(log_c), value
    return best_c
