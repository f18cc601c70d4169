"""Time-binned event tensors of an EventStream: the E2VID voxel grid and the reference's equal-count stack.

The sweep-long event focal stack, which serves every refocus query, is ``events.focal_stack``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from evfocus.events.binning import EventRepresentationError, check_num_bins, chunks, local_index, scatter_sum
from evfocus.events.stream import EventStream


def voxel_grid(
    events: EventStream, num_bins: int, t_begin_us: int | None = None, t_end_us: int | None = None
) -> Tensor:
    """E2VID voxel grid (B,H,W) float32: signed polarity splatted bilinearly in time.

    ``τ = (B-1)(t - t_first)/(t_last - t_first)`` with t_first/t_last = ``t_begin_us``/``t_end_us``
    when given, else the first/last event; each event adds ``p(1-frac)`` to bin ``floor(τ)`` and
    ``p·frac`` to the next, so the last event lands wholly in bin B-1 (kept, unlike tonic's
    ToVoxelGrid) and every pixel's bins sum to its polarity sum. All-equal timestamps put
    everything in bin 0; an empty stream gives zeros. Events outside a given
    [t_begin_us, t_end_us] raise (slice the stream first) instead of being dropped.
    """
    check_num_bins(num_bins, "num_bins")
    num_pixels = events.height * events.width
    # one spare slab: at τ = B-1, floor(τ) = B-1 and its right neighbour gets p·0
    grid = torch.zeros((num_bins + 1, num_pixels), dtype=torch.float32, device=events.device)
    if len(events) == 0:
        return grid[:num_bins].view(num_bins, events.height, events.width)
    t_us = events.t_us
    t_first = int(t_us[0]) if t_begin_us is None else int(t_begin_us)
    t_last = int(t_us[-1]) if t_end_us is None else int(t_end_us)
    if t_last < t_first:
        raise EventRepresentationError(f"{events.source}: voxel_grid window ends before it begins "
                                       f"(t_begin_us={t_first}, t_end_us={t_last})")
    if int(t_us[0]) < t_first or int(t_us[-1]) > t_last:
        raise EventRepresentationError(
            f"{events.source}: events span [{int(t_us[0])}, {int(t_us[-1])}] µs, outside the voxel "
            f"window [{t_first}, {t_last}] µs; slice the stream with time_slice first"
        )
    scale = (num_bins - 1) / (t_last - t_first) if t_last > t_first else 0.0
    for chunk in chunks(len(events)):
        tau = (t_us[chunk] - t_first).to(torch.float32).mul_(scale).clamp_(0.0, num_bins - 1)
        left = tau.to(torch.int32)  # floor, as τ >= 0
        first, count, index = local_index(left, events, chunk)
        polarity = events.p[chunk].to(torch.float32)
        on_right = scatter_sum(index, tau.sub_(left).mul_(polarity), count, num_pixels)  # Σ p·frac
        total = scatter_sum(index, polarity, count, num_pixels)  # Σ p
        grid[first:first + count] += total.sub_(on_right)
        grid[first + 1:first + count + 1] += on_right
    return grid[:num_bins].view(num_bins, events.height, events.width)


# ---------------------------------------------------------------------------------- equal count
def equal_count_stack(events: EventStream, num_chunks: int) -> Tensor:
    """The reference release's representation (num_chunks,H,W): signed sums over equal-count chunks.

    Chunks follow ``np.array_split``: with N events, the first ``N % num_chunks`` chunks hold
    ``N // num_chunks + 1`` events and the rest ``N // num_chunks`` (trailing chunks are empty
    when N < num_chunks).
    """
    check_num_bins(num_chunks, "num_chunks")
    num_pixels = events.height * events.width
    stack = torch.zeros((num_chunks, num_pixels), dtype=torch.float32, device=events.device)
    base, remainder = divmod(len(events), num_chunks)
    long_span = remainder * (base + 1)  # events in the longer chunks
    for chunk in chunks(len(events)):
        order = torch.arange(chunk.start, chunk.stop, device=events.device)
        part = torch.where(order < long_span, order // (base + 1),
                           remainder + (order - long_span) // max(base, 1))
        first, count, index = local_index(part, events, chunk)
        stack[first:first + count] += scatter_sum(index, events.p[chunk], count, num_pixels)
    return stack.view(num_chunks, events.height, events.width)
