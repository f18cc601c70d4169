"""The Sweep contract: one focal sweep, simulated or captured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from evfocus.events.integration import EVENT_RESPONSES, EventResponse
from evfocus.events.stream import EventStream
from evfocus.optics import FocusSchedule


class SweepError(ValueError):
    """A sweep whose parts disagree (sizes, times)."""


@dataclass
class Sweep:
    """A conventional frame + the events of a near→far focus sweep (+ ground truth when known).

    Images are float (C,H,W) in [0,1], sRGB-encoded as a camera stores them.
    ``frames`` are ground-truth refocus targets (F,C,H,W) at ``frame_times_us`` (F,);
    ``meta`` records how the sweep was made (simulator draw or capture metadata); its ``event_response``
    (``"gamma"`` when absent) says what the event pixels respond to (``events.integration``).
    """

    name: str
    image: Tensor
    image_time_us: int
    events: EventStream
    schedule: FocusSchedule
    aif: Tensor | None = None
    depth_m: Tensor | None = None
    frames: Tensor | None = None
    frame_times_us: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image.ndim != 3:
            raise SweepError(f"{self.name}: image must be (C,H,W), got shape {tuple(self.image.shape)}")
        height, width = self.image.shape[-2:]
        if (self.events.height, self.events.width) != (height, width):
            raise SweepError(
                f"{self.name}: image is {height}x{width} (HxW) but the events' sensor is "
                f"{self.events.height}x{self.events.width}"
            )
        for label, tensor in (("aif", self.aif), ("depth_m", self.depth_m), ("frames", self.frames)):
            if tensor is not None and tuple(tensor.shape[-2:]) != (height, width):
                raise SweepError(f"{self.name}: {label} is {tuple(tensor.shape[-2:])}, image is {(height, width)}")
        start_us, end_us = self.schedule.t_start_us, self.schedule.t_end_us
        if not start_us <= self.image_time_us <= end_us:
            raise SweepError(f"{self.name}: the frame was taken at {self.image_time_us} µs, outside its sweep "
                             f"[{start_us}, {end_us}] µs (the refocus net starts from the frame's moment)")
        if (self.frames is None) != (self.frame_times_us is None):
            raise SweepError(f"{self.name}: frames and frame_times_us must be given together")
        if self.frames is not None and self.frames.shape[0] != self.frame_times_us.shape[0]:
            raise SweepError(f"{self.name}: {self.frames.shape[0]} frames but "
                             f"{self.frame_times_us.shape[0]} frame times")
        if self.meta.get("event_response", "gamma") not in EVENT_RESPONSES:
            raise SweepError(f"{self.name}: meta 'event_response' must be one of {list(EVENT_RESPONSES)}, "
                             f"got {self.meta['event_response']!r}")

    @property
    def event_response(self) -> EventResponse:
        """What the event pixels respond to: the frame's own values (``"gamma"``) or linear light."""
        return self.meta.get("event_response", "gamma")

    @property
    def height(self) -> int:
        return int(self.image.shape[-2])

    @property
    def width(self) -> int:
        return int(self.image.shape[-1])
