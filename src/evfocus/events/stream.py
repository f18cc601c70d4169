"""The EventStream contract: every reader, simulator and representation speaks it.

Events are kept as four 1-D tensors (structure of arrays) so that every stage can
scatter them on CPU or GPU without Python loops. Polarity is always +1 for a
brightness increase and -1 for a decrease; readers of foreign formats convert to
this and say which convention they assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


class EventStreamError(ValueError):
    """An event stream breaks the contract (names the source and the problem)."""


@dataclass(frozen=True)
class EventStream:
    """Events of one sensor: ``t_us`` int64 µs (sorted), ``x``/``y`` int32 pixels, ``p`` int8 ±1.

    ``source`` names where the events came from (a file path, "simulator", ...) so that
    every validation error can say which input is broken.
    """

    t_us: Tensor
    x: Tensor
    y: Tensor
    p: Tensor
    width: int
    height: int
    source: str = "events"

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        t_us: np.ndarray | Tensor,
        x: np.ndarray | Tensor,
        y: np.ndarray | Tensor,
        p: np.ndarray | Tensor,
        width: int,
        height: int,
        source: str = "events",
    ) -> EventStream:
        """Build a stream from any integer arrays, casting to the contract dtypes.

        ``p`` must already be signed (±1); readers map {0,1} formats themselves so the
        polarity convention is decided in one visible place.
        """

        def as_tensor(a: np.ndarray | Tensor, dtype: torch.dtype) -> Tensor:
            tensor = a if isinstance(a, Tensor) else torch.from_numpy(np.ascontiguousarray(a))
            return tensor.to(dtype)

        return cls(
            t_us=as_tensor(t_us, torch.int64),
            x=as_tensor(x, torch.int32),
            y=as_tensor(y, torch.int32),
            p=as_tensor(p, torch.int8),
            width=int(width),
            height=int(height),
            source=source,
        )

    @classmethod
    def empty(cls, width: int, height: int, source: str = "events") -> EventStream:
        zeros = np.zeros(0, dtype=np.int64)
        return cls.from_arrays(zeros, zeros, zeros, zeros, width, height, source)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise EventStreamError naming the source if any part of the contract is broken."""
        where = f"{self.source}: "
        if self.width <= 0 or self.height <= 0:
            raise EventStreamError(f"{where}sensor size must be positive, got {self.width}x{self.height}")
        fields = {"t_us": (self.t_us, torch.int64), "x": (self.x, torch.int32),
                  "y": (self.y, torch.int32), "p": (self.p, torch.int8)}
        for name, (tensor, dtype) in fields.items():
            if not isinstance(tensor, Tensor) or tensor.ndim != 1:
                raise EventStreamError(f"{where}'{name}' must be a 1-D tensor")
            if tensor.dtype != dtype:
                raise EventStreamError(f"{where}'{name}' must be {dtype}, got {tensor.dtype}")
            if tensor.numel() != self.t_us.numel():
                raise EventStreamError(
                    f"{where}'{name}' has {tensor.numel()} entries but 't_us' has {self.t_us.numel()}"
                )
        if self.t_us.numel() == 0:
            return
        if bool((self.t_us[1:] < self.t_us[:-1]).any()):
            first = int(torch.nonzero(self.t_us[1:] < self.t_us[:-1])[0, 0]) + 1
            raise EventStreamError(
                f"{where}timestamps are not sorted: event {first} has t={int(self.t_us[first])} µs "
                f"after t={int(self.t_us[first - 1])} µs"
            )
        for name, values, size in (("x", self.x, self.width), ("y", self.y, self.height)):
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi >= size:
                raise EventStreamError(
                    f"{where}'{name}' out of range: values span [{lo}, {hi}] but the sensor is "
                    f"{self.width}x{self.height} (valid {name} is 0..{size - 1})"
                )
        if bool(((self.p != 1) & (self.p != -1)).any()):
            bad = sorted({int(v) for v in torch.unique(self.p)} - {-1, 1})
            raise EventStreamError(f"{where}polarity must be +1/-1, found values {bad}")

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return int(self.t_us.numel())

    @property
    def device(self) -> torch.device:
        return self.t_us.device

    def to(self, device: torch.device | str) -> EventStream:
        return EventStream(self.t_us.to(device), self.x.to(device), self.y.to(device),
                           self.p.to(device), self.width, self.height, self.source)

    def time_slice(self, t_begin_us: int, t_end_us: int) -> EventStream:
        """Events with ``t_begin_us <= t < t_end_us`` (binary search, no copy of the rest)."""
        lo, hi = torch.searchsorted(self.t_us, torch.tensor([t_begin_us, t_end_us], device=self.device))
        return self._select(slice(int(lo), int(hi)))

    def crop(self, top: int, left: int, height: int, width: int) -> EventStream:
        """Events inside a window, re-expressed in the window's coordinates."""
        if top < 0 or left < 0 or top + height > self.height or left + width > self.width:
            raise EventStreamError(
                f"{self.source}: crop {height}x{width} at ({top},{left}) exceeds sensor "
                f"{self.height}x{self.width}"
            )
        keep = (self.x >= left) & (self.x < left + width) & (self.y >= top) & (self.y < top + height)
        return EventStream(self.t_us[keep], self.x[keep] - left, self.y[keep] - top, self.p[keep],
                           width, height, self.source)

    def _select(self, index: slice | Tensor) -> EventStream:
        return EventStream(self.t_us[index], self.x[index], self.y[index], self.p[index],
                           self.width, self.height, self.source)
