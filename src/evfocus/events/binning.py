"""Scatter events into (time slab, pixel) sums: the shared machinery of every event representation.

Every representation is a signed per-pixel sum (+1 ON, -1 OFF) scattered with ``torch.bincount``
over flat (slab, pixel) indices, the fastest scatter measured (10 M sorted events, 346×260, 16 bins, 2 CPU
threads: bincount 0.24 s, ``index_add_`` 0.8 s, ``np.add.at`` 1.8 s); the same code runs on GPU. No per-event
Python loops: events are processed in chunks of ``CHUNK_EVENTS`` (a loop of N/2^20 steps). Chunking is
for speed: on CPU every fresh tensor of 10 M events costs more in page faults than the arithmetic on
it, while 1 M-event temporaries are recycled by the allocator; and since events are sorted in time, a
chunk touches only a few consecutive slabs, so its bincount output stays small and in cache (measured
at 10 M events, B=16, one thread: 0.14 s instead of 0.31 s for one whole-stream pass).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import torch
from torch import Tensor

from evfocus.events.stream import EventStream

CHUNK_EVENTS = 1 << 20


class EventRepresentationError(ValueError):
    """Bad arguments for an event representation (bin counts, time ranges, windows)."""


def chunks(count: int) -> Iterator[slice]:
    """Slices of at most ``CHUNK_EVENTS`` consecutive events covering ``count`` events."""
    return (slice(start, min(start + CHUNK_EVENTS, count)) for start in range(0, count, CHUNK_EVENTS))


def local_index(slab: Tensor, events: EventStream, chunk: slice) -> tuple[int, int, Tensor]:
    """(first slab, number of slabs, flat index relative to the first slab) for one chunk.

    ``slab`` is sorted (time order), so the chunk spans slabs ``first .. first + n - 1`` only.
    The index is int32 (bincount is faster on it) unless the span would overflow it.
    """
    first, count = int(slab[0]), int(slab[-1]) - int(slab[0]) + 1
    num_pixels = events.height * events.width
    dtype = torch.int32 if count * num_pixels < 2**31 else torch.int64
    index = torch.add(events.x[chunk].to(dtype), events.y[chunk].to(dtype), alpha=events.width)
    index.add_((slab - first).to(dtype), alpha=num_pixels)
    return first, count, index


def scatter_sum(index: Tensor, weights: Tensor, num_slabs: int, num_pixels: int) -> Tensor:
    """(num_slabs, num_pixels) float32 sums of ``weights`` at flat ``index``.

    CUDA ``bincount`` with weights refuses to run under ``torch.use_deterministic_algorithms``
    (Lightning ``deterministic=True``), where ``index_add_`` has a deterministic kernel.
    """
    size = num_slabs * num_pixels
    weights = weights.to(torch.float32)
    if index.is_cuda and torch.are_deterministic_algorithms_enabled():
        sums = torch.zeros(size, dtype=torch.float32, device=index.device)
        sums.index_add_(0, index.long(), weights)
    else:
        sums = torch.bincount(index, weights=weights, minlength=size)
    return sums.view(num_slabs, num_pixels)


def check_num_bins(num_bins: int, name: str) -> None:
    if isinstance(num_bins, bool) or not isinstance(num_bins, numbers.Integral) or num_bins < 1:
        raise EventRepresentationError(f"{name} must be a positive integer, got {num_bins!r}")
