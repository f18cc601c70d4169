"""The event focal stack (EFS): a sweep's events once, as cumulative signed counts at K+1 time nodes.

Between nodes the cumulative count is linear in time (events spread uniformly inside a fine bin), so the
events of any segment [t0, t] at any number of bins are two interpolations of it. ``interpolate_cumulative``
is that interpolation, the only one in the package: the focus search reads per-patch crops through it,
``EventFocalStack.segments`` the whole frame or a window, the joint stage a batch of training crops.
The same pass over the events can also count them per cell of a patch grid (``count_grid``): the clock
of the event-domain search and the floor below which a patch keeps the frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from evfocus.events.binning import EventRepresentationError, check_num_bins, chunks, local_index, scatter_sum
from evfocus.events.stream import EventStream

SWEEP_CONTEXT_BINS = 8  # bins of ``EventFocalStack.whole_sweep_bins``: the sweep summary models may read


def grid_edges(size_px: int, grid_size: int) -> Tensor:
    """Integer edges (grid_size+1,) splitting ``size_px`` into near-equal parts (sizes differ by ≤1)."""
    return torch.arange(grid_size + 1, dtype=torch.int64) * size_px // grid_size


def interpolate_cumulative(cumulative: Tensor, node_pos: Tensor, crop_index: Tensor | None = None) -> Tensor:
    """Cumulative event maps linearly interpolated at fractional node positions, one time row per crop.

    ``cumulative`` is (R, K+1, h, w): R crops (or one shared frame/window, R=1) of a cumulative tensor.
    ``node_pos`` is (M, Q) in node units (τ_k ↦ k); positions outside [0, K] clamp, which is exact
    because no events exist outside the sweep. ``crop_index`` (M,) says which crop each query reads
    (default: crop m for query m, or crop 0 for all when R == 1). Returns (M, Q, h, w).
    """
    if cumulative.ndim != 4:
        raise EventRepresentationError(f"cumulative must be (R, K+1, h, w), got shape {tuple(cumulative.shape)}")
    if node_pos.ndim != 2:
        raise EventRepresentationError(f"node_pos must be (M, Q), got shape {tuple(node_pos.shape)}")
    num_crops, num_nodes = cumulative.shape[:2]
    if num_nodes < 2:
        raise EventRepresentationError(f"cumulative needs at least 2 nodes (K >= 1), got {num_nodes}")
    if crop_index is None:
        if num_crops not in (1, node_pos.shape[0]):
            raise EventRepresentationError(f"{node_pos.shape[0]} queries but {num_crops} crops: pass crop_index")
        crop_index = torch.arange(node_pos.shape[0], device=node_pos.device) % num_crops
    pos = node_pos.clamp(0, num_nodes - 1)
    lower = pos.floor().clamp_(max=num_nodes - 2)
    weight = (pos - lower).to(cumulative.dtype)[..., None, None]
    lower = lower.long()
    rows = crop_index[:, None]
    return cumulative[rows, lower].lerp_(cumulative[rows, lower + 1], weight)


def cumulative_segments(cumulative: Tensor, t_start_us: float, t_end_us: float, t0_us: Tensor, t_us: Tensor,
                        num_bins: int, crop_index: Tensor | None = None) -> Tensor:
    """Signed events of each segment t0 → t in ``num_bins`` equal time bins: (M, B, h, w).

    ``cumulative`` (R, K+1, h, w) has its nodes evenly spaced over [t_start_us, t_end_us]; ``t0_us`` and
    ``t_us`` are (M,) in the same unit (µs, or fractions of the sweep with 0 and 1 as its ends). Bin j is
    ``S(s_{j+1}) − S(s_j)`` with ``s_j = t0 + j(t − t0)/B``, so the bins always sum to ``S(t) − S(t0)``;
    for t < t0 they run backwards in time and flip sign, as refocusing to an earlier moment needs.
    Times are float64, so absolute µs timestamps lose nothing.
    """
    check_num_bins(num_bins, "num_bins")
    if not t_end_us > t_start_us:
        raise EventRepresentationError(f"the sweep must last > 0, got t_start_us={t_start_us}, t_end_us={t_end_us}")
    fraction = torch.arange(num_bins + 1, dtype=torch.float64, device=t_us.device) / num_bins
    t0 = t0_us.to(torch.float64)[:, None]
    times = t0 + (t_us.to(torch.float64)[:, None] - t0) * fraction  # (M, B+1)
    node_pos = (times - t_start_us) * ((cumulative.shape[1] - 1) / (t_end_us - t_start_us))
    return torch.diff(interpolate_cumulative(cumulative, node_pos, crop_index), dim=1)


class EventFocalStack:
    """A whole sweep's events as a cumulative signed count at K+1 time nodes (K+1,H,W) float32.

    Nodes ``τ_k = t_start + k(t_end - t_start)/K``; ``cumulative[k]`` = Σ p over events with
    ``t < τ_k``, except ``cumulative[K]`` which also counts events at exactly ``t_end`` (so the
    last node holds every event of the sweep). Memory is (K+1)·H·W·4 bytes. ``patch_counts``
    (P, K+1) float64, when built with a ``count_grid`` of N (P = N²): the *unsigned* events of each
    cell of the N×N grid (``grid_edges``, row-major) before each node, with the same binning.
    """

    def __init__(self, cumulative: Tensor, t_start_us: int, t_end_us: int, patch_counts: Tensor | None = None) -> None:
        if cumulative.ndim != 3 or cumulative.shape[0] < 2:
            raise EventRepresentationError(
                f"cumulative must be (K+1,H,W) with K >= 1, got shape {tuple(cumulative.shape)}")
        if t_end_us <= t_start_us:
            raise EventRepresentationError(
                f"the sweep must last > 0 µs, got t_start_us={t_start_us}, t_end_us={t_end_us}")
        if patch_counts is not None and (patch_counts.ndim != 2 or patch_counts.shape[1] != cumulative.shape[0]):
            raise EventRepresentationError(f"patch_counts must be (P, K+1) with K+1 = {cumulative.shape[0]}, "
                                           f"got shape {tuple(patch_counts.shape)}")
        self.cumulative = cumulative
        self.t_start_us = int(t_start_us)
        self.t_end_us = int(t_end_us)
        self.patch_counts = patch_counts

    @classmethod
    def from_events(cls, events: EventStream, t_start_us: int, t_end_us: int, num_fine_bins: int,
                    count_grid: int | None = None) -> EventFocalStack:
        """Chunked bincounts into K fine bins (exact integer bin edges), then a cumsum over K; with
        ``count_grid``, the same chunks also count events per grid cell and fine bin (``patch_counts``)."""
        check_num_bins(num_fine_bins, "num_fine_bins")
        t_start_us, t_end_us = int(t_start_us), int(t_end_us)
        if t_end_us <= t_start_us:
            raise EventRepresentationError(
                f"{events.source}: the sweep must last > 0 µs, got t_start_us={t_start_us}, "
                f"t_end_us={t_end_us}")
        if len(events) and (int(events.t_us[0]) < t_start_us or int(events.t_us[-1]) > t_end_us):
            raise EventRepresentationError(
                f"{events.source}: events span [{int(events.t_us[0])}, {int(events.t_us[-1])}] µs, "
                f"outside the sweep [{t_start_us}, {t_end_us}] µs; slice the stream with time_slice first"
            )
        if count_grid is not None:
            check_num_bins(count_grid, "count_grid")
            if count_grid > min(events.height, events.width):
                raise EventRepresentationError(f"a {count_grid}x{count_grid} count grid does not fit the "
                                               f"{events.height}x{events.width} sensor")
        num_pixels = events.height * events.width
        cumulative = torch.zeros((num_fine_bins + 1, num_pixels), dtype=torch.float32, device=events.device)
        counter = None if count_grid is None else _PatchCounter(events, count_grid, num_fine_bins)
        for chunk in chunks(len(events)):
            # t < τ_k  <=>  floor((t - t_start)·K / duration) < k, exactly, in integers.
            fine = ((events.t_us[chunk] - t_start_us) * num_fine_bins) // (t_end_us - t_start_us)
            fine.clamp_(max=num_fine_bins - 1)  # events at exactly t_end join the last bin
            first, count, index = local_index(fine, events, chunk)
            cumulative[1 + first:1 + first + count] += scatter_sum(index, events.p[chunk], count, num_pixels)
            if counter is not None:
                counter.add(chunk, fine)
        cumulative.cumsum_(0)
        cumulative = cumulative.view(num_fine_bins + 1, events.height, events.width)
        return cls(cumulative, t_start_us, t_end_us, None if counter is None else counter.cumulative())

    # ------------------------------------------------------------------ properties
    @property
    def num_fine_bins(self) -> int:
        return int(self.cumulative.shape[0]) - 1

    @property
    def height(self) -> int:
        return int(self.cumulative.shape[1])

    @property
    def width(self) -> int:
        return int(self.cumulative.shape[2])

    @property
    def device(self) -> torch.device:
        return self.cumulative.device

    def to(self, device: torch.device | str) -> EventFocalStack:
        counts = None if self.patch_counts is None else self.patch_counts.to(device)
        return EventFocalStack(self.cumulative.to(device), self.t_start_us, self.t_end_us, counts)

    # ------------------------------------------------------------------ time ↔ fraction of the sweep
    def time_us(self, fraction: Tensor | float) -> Tensor | float:
        """The moment (µs) at ``fraction`` of the sweep (0 = start, 1 = end)."""
        return self.t_start_us + fraction * (self.t_end_us - self.t_start_us)

    def fraction(self, t_us: Tensor | float) -> Tensor | float:
        """``time_us`` inverted: where ``t_us`` lies in the sweep, as a fraction of it."""
        return (t_us - self.t_start_us) / (self.t_end_us - self.t_start_us)

    # ------------------------------------------------------------------ queries
    def segment(self, t0_us: float, t_us: float, num_bins: int) -> Tensor:
        """Events from ``t0_us`` to ``t_us`` in ``num_bins`` equal time bins (B,H,W).

        Bin j is ``S(s_{j+1}) - S(s_j)`` with ``s_j = t0 + j(t - t0)/B``; the bins always sum to
        ``S(t) - S(t0)``. For ``t < t0`` the times run backward, so the result is
        ``-segment(t, t0)`` in reversed bin order (every bin has the opposite sign).
        """
        t0 = torch.tensor([t0_us], dtype=torch.float64, device=self.device)
        t = torch.tensor([t_us], dtype=torch.float64, device=self.device)
        return self.segments(t0, t, num_bins)[0]

    def segments(
        self,
        t0_us: Tensor,
        t_us: Tensor,
        num_bins: int,
        window: tuple[int, int, int, int] | None = None,
    ) -> Tensor:
        """Batched ``segment`` (N,B,h,w) for N pairs of times, optionally inside a window.

        ``window = (top, left, height, width)`` restricts the gathers to a crop, so a patch
        search pays for its patch only. Times are µs in any numeric dtype (int64 or float64:
        float32 rounds times beyond 2^24 µs ≈ 16.8 s to whole µs and coarser).
        """
        check_num_bins(num_bins, "num_bins")
        cumulative = self._window(window)
        t0 = self._check_times(t0_us, "t0_us")
        t = self._check_times(t_us, "t_us")
        if t0.shape != t.shape:
            raise EventRepresentationError(
                f"t0_us and t_us must have the same shape (N,), got {tuple(t0.shape)} and {tuple(t.shape)}")
        return cumulative_segments(cumulative[None], self.t_start_us, self.t_end_us, t0, t, num_bins)

    def whole_sweep_bins(self, num_bins: int = SWEEP_CONTEXT_BINS) -> Tensor:
        """The whole sweep's events in ``num_bins`` equal time bins (B,H,W): a sweep-level summary
        (the contrast estimator's input), the same for every refocus query of the sweep."""
        start = torch.tensor([float(self.t_start_us)], dtype=torch.float64, device=self.device)
        end = torch.tensor([float(self.t_end_us)], dtype=torch.float64, device=self.device)
        return self.segments(start, end, num_bins)[0]

    def _window(self, window: tuple[int, int, int, int] | None) -> Tensor:
        if window is None:
            return self.cumulative
        top, left, height, width = (int(v) for v in window)
        if top < 0 or left < 0 or height < 1 or width < 1 or top + height > self.height \
                or left + width > self.width:
            raise EventRepresentationError(
                f"window (top={top}, left={left}, height={height}, width={width}) does not fit the "
                f"{self.height}x{self.width} event focal stack")
        return self.cumulative[:, top:top + height, left:left + width]

    def _check_times(self, times_us: Tensor, name: str) -> Tensor:
        times = torch.as_tensor(times_us, device=self.device).to(torch.float64)
        if times.ndim != 1:
            raise EventRepresentationError(
                f"{name} must be a 1-D tensor (N,), got shape {tuple(times.shape)}")
        outside = (times < self.t_start_us) | (times > self.t_end_us) | times.isnan()
        if bool(outside.any()):
            bad = [(int(i), float(times[i])) for i in torch.nonzero(outside)[:5, 0]]
            raise EventRepresentationError(
                f"{name} outside the sweep [{self.t_start_us}, {self.t_end_us}] µs: "
                + ", ".join(f"{name}[{i}]={value}" for i, value in bad))
        return times


class _PatchCounter:
    """Unsigned event counts per (grid cell, fine bin), accumulated chunk by chunk beside the stack."""

    def __init__(self, events: EventStream, grid_size: int, num_fine_bins: int) -> None:
        self.events, self.grid_size, self.num_fine_bins = events, grid_size, num_fine_bins
        self.row_edges = grid_edges(events.height, grid_size)[1:-1].to(events.device, events.y.dtype)
        self.col_edges = grid_edges(events.width, grid_size)[1:-1].to(events.device, events.x.dtype)
        self.per_bin = torch.zeros(grid_size**2 * num_fine_bins, dtype=torch.int64, device=events.device)

    def add(self, chunk: slice, fine_bin: Tensor) -> None:
        events = self.events
        cell = (torch.bucketize(events.y[chunk], self.row_edges, right=True) * self.grid_size
                + torch.bucketize(events.x[chunk], self.col_edges, right=True))
        self.per_bin += torch.bincount(cell * self.num_fine_bins + fine_bin, minlength=self.per_bin.numel())

    def cumulative(self) -> Tensor:
        per_bin = self.per_bin.reshape(self.grid_size**2, self.num_fine_bins).double()
        return F.pad(per_bin.cumsum(dim=1), (1, 0))
