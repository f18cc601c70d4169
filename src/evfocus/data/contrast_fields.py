"""Per-sweep contrast fields of every training sample: what the refocus net's contrast estimator reads
(``sweep_bins``, ``prior_contrast``) and what it is taught to output (``target_contrast``)."""

from __future__ import annotations

import torch
from torch import Tensor

from evfocus.events.contrast import estimate_contrast
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.integration import EventResponse, fit_contrast
from evfocus.sweep import Sweep

TARGET_RANGE = (0.01, 1.0)  # a sweep whose events do not help at all fits c ≈ 0: no useful target
# The full fit was 80% of the training loader's time per quickstart sweep. This one searches only the range the
# target is clipped to (the default grid's spacing, 21 values), refines to 0.4% in c and scores every second pixel
# each way: within 0.5% of the full fit on average (2.7% at most, 16 quickstart sweeps), which the training
# jitters by 20% anyway, at a sixth of the cost (benchmarks/RESULTS.md, "The per-sweep contrast fields").
TARGET_CANDIDATES = tuple(float(c) for c in torch.logspace(-2, 0, 21, dtype=torch.float64))
TARGET_REFINE_ITERS = 12
TARGET_PIXEL_STRIDE = 2


def target_contrast(sweep: Sweep, focal_stack: EventFocalStack, response: EventResponse = "gamma") -> float:
    """The integration contrast (in ``response``'s log) that best turns the frame into the sweep's rendered
    frames (PSNR), from the frame's moment to each of them: known only for simulated sweeps, which render them."""
    if sweep.frames is None:
        raise ValueError(f"{sweep.name}: a target contrast needs the sweep's ground-truth frames")
    t0_us = torch.tensor([float(sweep.image_time_us)], dtype=torch.float64)
    every = (..., slice(None, None, TARGET_PIXEL_STRIDE), slice(None, None, TARGET_PIXEL_STRIDE))
    pairs = [(sweep.image[every], focal_stack.segments(t0_us, t_us.view(1).double(), 1)[0][every], frame[every])
             for frame, t_us in zip(sweep.frames, sweep.frame_times_us, strict=True)
             if int(t_us) != sweep.image_time_us]
    if not pairs:
        raise ValueError(f"{sweep.name}: no rendered frame away from the frame's moment")
    contrast = fit_contrast(pairs, TARGET_CANDIDATES, refine_iters=TARGET_REFINE_ITERS, response=response)
    return min(max(contrast, TARGET_RANGE[0]), TARGET_RANGE[1])


def sweep_contrast_fields(sweep: Sweep, focal_stack: EventFocalStack,
                          response_aware: bool = False) -> dict[str, Tensor]:
    """``sweep_bins`` (SWEEP_CONTEXT_BINS, H, W), ``prior_contrast``, ``target_contrast`` and ``linear_response``
    (scalars): the contrasts in the log of the sweep's sensor (``response_aware``, ``model.event_response_aware``)
    or of the frame, and whether the refocus net integrates this sweep's events in linear light."""
    response = sweep.event_response if response_aware else "gamma"
    prior = estimate_contrast(sweep.image, focal_stack, sweep.image_time_us, response=response).contrast
    return {
        "sweep_bins": focal_stack.whole_sweep_bins(),
        "prior_contrast": torch.tensor(prior, dtype=torch.float32),
        "target_contrast": torch.tensor(target_contrast(sweep, focal_stack, response), dtype=torch.float32),
        "linear_response": torch.tensor(response == "linear"),
    }


def teach_contrast(samples: list[dict[str, Tensor]], jitter: float,
                   generator: torch.Generator) -> list[dict[str, Tensor]]:
    """Training samples of one sweep with ``prior_contrast`` replaced by the sweep's ``target_contrast``
    times exp(``jitter``·N(0, 1)) (one draw per sweep).

    The self-calibration's error depends on the scenes and on the blur size relative to its window
    (×1.6 on our simulated sweeps on average, ×1.0 on efs_dev): a net trained on it learns to undo
    our simulator's bias, which is wrong elsewhere. Taught the right contrast up to a random error,
    it learns log-intensity units and robustness to a misestimate instead.
    """
    factor = float(torch.exp(jitter * torch.randn((), generator=generator)))
    return [{**sample, "prior_contrast": sample["target_contrast"] * factor} for sample in samples]
