"""Network-free refocusing the learned pipeline is scored against (``training.aif_eval``, benchmarks)."""

from __future__ import annotations

import torch

from evfocus.events.contrast import DEFAULT_CONTRAST_METHOD, ContrastMethod, estimate_contrast
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.integration import EventIntegrator
from evfocus.sweep import Sweep

SELF_CALIBRATION_BINS = 128  # time nodes of the focal stack the self-calibration reads


def self_calibrated_integrator(sweep: Sweep, device: torch.device,
                               method: ContrastMethod = DEFAULT_CONTRAST_METHOD) -> EventIntegrator:
    """Event integration at the contrast the sweep's own frame and events give (no ground truth), in the
    log its sensor responds to (``Sweep.event_response``)."""
    schedule = sweep.schedule
    focal_stack = EventFocalStack.from_events(sweep.events.to(device), schedule.t_start_us, schedule.t_end_us,
                                              SELF_CALIBRATION_BINS)
    response = sweep.event_response
    return EventIntegrator(estimate_contrast(sweep.image.to(device), focal_stack, sweep.image_time_us,
                                             method=method, response=response).contrast, response=response)
