"""Event representations against independent NumPy references and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evfocus.events import binning
from evfocus.events.binning import EventRepresentationError
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.stream import EventStream
from evfocus.events.voxel import equal_count_stack, voxel_grid

WIDTH, HEIGHT = 7, 5


def make_events(t_us, x, y, p, width: int = WIDTH, height: int = HEIGHT) -> EventStream:
    return EventStream.from_arrays(np.asarray(t_us, np.int64), np.asarray(x), np.asarray(y),
                                   np.asarray(p), width, height, source="test")


def random_events(rng: np.random.Generator, count: int, t_lo: int, t_hi: int) -> EventStream:
    t_us = np.sort(rng.integers(t_lo, t_hi + 1, count))
    return make_events(t_us, rng.integers(0, WIDTH, count), rng.integers(0, HEIGHT, count),
                       rng.choice([-1, 1], count))


def as_numpy(events: EventStream) -> tuple[np.ndarray, ...]:
    return tuple(a.numpy().astype(np.int64) for a in (events.t_us, events.x, events.y, events.p))


# ---------------------------------------------------------------------------------- references
def voxel_reference(events: EventStream, num_bins: int, t_first=None, t_last=None) -> np.ndarray:
    """E2VID's original formulation: float64, np.add.at, out-of-range neighbours dropped."""
    t, x, y, p = as_numpy(events)
    grid = np.zeros(num_bins * HEIGHT * WIDTH)
    if len(t) == 0:
        return grid.reshape(num_bins, HEIGHT, WIDTH)
    t_first = t[0] if t_first is None else t_first
    t_last = t[-1] if t_last is None else t_last
    span = t_last - t_first
    tau = (num_bins - 1) * (t - t_first) / span if span > 0 else np.zeros(len(t))
    left = np.floor(tau).astype(np.int64)
    frac = tau - left
    for bins, weight in ((left, p * (1.0 - frac)), (left + 1, p * frac)):
        valid = bins < num_bins
        np.add.at(grid, x[valid] + y[valid] * WIDTH + bins[valid] * HEIGHT * WIDTH, weight[valid])
    return grid.reshape(num_bins, HEIGHT, WIDTH)


def histogram_reference(events: EventStream, t_lo: int, t_hi: int, include_end: bool) -> np.ndarray:
    """Signed per-pixel count of events with t_lo <= t < t_hi (or <= t_hi)."""
    t, x, y, p = as_numpy(events)
    keep = (t >= t_lo) & ((t <= t_hi) if include_end else (t < t_hi))
    image = np.zeros((HEIGHT, WIDTH))
    np.add.at(image, (y[keep], x[keep]), p[keep])
    return image


def cumulative_reference(events: EventStream, t_start: int, t_end: int, num_fine: int) -> np.ndarray:
    """cumulative[k] = Σ p over t < τ_k (integer comparison), cumulative[K] over t <= t_end."""
    t, x, y, p = as_numpy(events)
    out = np.zeros((num_fine + 1, HEIGHT, WIDTH))
    for k in range(num_fine + 1):
        keep = (t <= t_end) if k == num_fine else ((t - t_start) * num_fine < k * (t_end - t_start))
        np.add.at(out[k], (y[keep], x[keep]), p[keep])
    return out


def interpolated_reference(cumulative: np.ndarray, t_start: int, t_end: int, time_us: float) -> np.ndarray:
    """S(time) by np.interp of every pixel's node values."""
    nodes = np.linspace(t_start, t_end, cumulative.shape[0])
    flat = cumulative.reshape(cumulative.shape[0], -1)
    return np.array([np.interp(time_us, nodes, flat[:, i]) for i in range(flat.shape[1])]).reshape(
        HEIGHT, WIDTH)


# ---------------------------------------------------------------------------------- voxel grid
def test_voxel_hand_computed() -> None:
    # τ = 2(t - 0)/10: 0 -> bin 0; 4 -> 0.8 (0.2 bin 0, 0.8 bin 1); 10 -> bin 2 (last event kept)
    events = make_events([0, 4, 10], [1, 2, 1], [0, 3, 0], [1, -1, 1])
    grid = voxel_grid(events, 3)
    expected = np.zeros((3, HEIGHT, WIDTH))
    expected[0, 0, 1] = 1.0
    expected[0, 3, 2] = -0.2
    expected[1, 3, 2] = -0.8
    expected[2, 0, 1] = 1.0
    assert grid.dtype == torch.float32 and grid.shape == (3, HEIGHT, WIDTH)
    np.testing.assert_allclose(grid.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("num_bins", [1, 2, 5, 16])
def test_voxel_matches_numpy_reference(num_bins: int) -> None:
    events = random_events(np.random.default_rng(num_bins), 3000, 1_000, 91_000)
    np.testing.assert_allclose(voxel_grid(events, num_bins).numpy(), voxel_reference(events, num_bins),
                               atol=1e-4)


def test_voxel_explicit_window() -> None:
    events = random_events(np.random.default_rng(3), 500, 2_000, 8_000)
    grid = voxel_grid(events, 4, t_begin_us=0, t_end_us=10_000)
    np.testing.assert_allclose(grid.numpy(), voxel_reference(events, 4, 0, 10_000), atol=1e-5)


def test_voxel_equal_timestamps_and_empty() -> None:
    events = make_events([5, 5, 5], [0, 1, 1], [0, 0, 0], [1, -1, -1])
    grid = voxel_grid(events, 4)
    assert grid[0, 0, 0] == 1 and grid[0, 0, 1] == -2 and float(grid[1:].abs().sum()) == 0
    empty = voxel_grid(EventStream.empty(WIDTH, HEIGHT), 3)
    assert empty.shape == (3, HEIGHT, WIDTH) and float(empty.abs().sum()) == 0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.lists(st.tuples(st.integers(0, 50), st.integers(0, WIDTH - 1),
                                             st.integers(0, HEIGHT - 1), st.sampled_from([-1, 1])),
                                   min_size=1, max_size=60))
def test_voxel_property_reference_and_mass(num_bins: int, rows: list[tuple[int, int, int, int]]) -> None:
    rows = sorted(rows)
    events = make_events(*zip(*rows, strict=True))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(binning, "CHUNK_EVENTS", 7)  # several chunks, some sharing a bin
        grid = voxel_grid(events, num_bins).numpy()
    np.testing.assert_allclose(grid, voxel_reference(events, num_bins), atol=1e-5)
    mass = np.zeros((HEIGHT, WIDTH))
    for _, x, y, p in rows:
        mass[y, x] += p
    np.testing.assert_allclose(grid.sum(0), mass, atol=1e-5)  # every event kept, sign kept


def test_voxel_errors() -> None:
    events = make_events([10, 20], [0, 1], [0, 0], [1, 1])
    for bad in (0, 2.0, True):
        with pytest.raises(EventRepresentationError, match="num_bins"):
            voxel_grid(events, bad)
    with pytest.raises(EventRepresentationError, match="ends before it begins"):
        voxel_grid(events, 2, t_begin_us=30, t_end_us=0)
    with pytest.raises(EventRepresentationError, match=r"outside the voxel window \[15, 30\]"):
        voxel_grid(events, 2, t_begin_us=15, t_end_us=30)


@pytest.mark.parametrize("chunk_events", [1, 13, 999])
def test_chunked_scatter_matches_references(monkeypatch: pytest.MonkeyPatch, chunk_events: int) -> None:
    """Streams longer than a processing chunk: chunk edges inside a bin, a bin spanning chunks."""
    monkeypatch.setattr(binning, "CHUNK_EVENTS", chunk_events)
    events = random_events(np.random.default_rng(chunk_events), 1000, 100, 1100)
    np.testing.assert_allclose(voxel_grid(events, 6).numpy(), voxel_reference(events, 6), atol=1e-4)
    stack = EventFocalStack.from_events(events, 100, 1100, 10)
    np.testing.assert_array_equal(stack.cumulative.numpy(), cumulative_reference(events, 100, 1100, 10))
    _, x, y, p = as_numpy(events)
    expected = np.zeros((7, HEIGHT, WIDTH))
    for i, part in enumerate(np.array_split(np.arange(1000), 7)):
        np.add.at(expected[i], (y[part], x[part]), p[part])
    np.testing.assert_array_equal(equal_count_stack(events, 7).numpy(), expected)


# ---------------------------------------------------------------------------------- equal count
@pytest.mark.parametrize(("count", "chunks"), [(100, 10), (103, 10), (7, 10), (0, 4), (50, 1)])
def test_equal_count_matches_array_split(count: int, chunks: int) -> None:
    events = random_events(np.random.default_rng(count), count, 0, 1000)
    _, x, y, p = as_numpy(events)
    expected = np.zeros((chunks, HEIGHT, WIDTH))
    for i, part in enumerate(np.array_split(np.arange(count), chunks)):
        np.add.at(expected[i], (y[part], x[part]), p[part])
    np.testing.assert_array_equal(equal_count_stack(events, chunks).numpy(), expected)


# ---------------------------------------------------------------------------------- focal stack
T_START, T_END, FINE = 1_000, 5_800, 48  # node spacing 100 µs


@pytest.fixture(scope="module")
def sweep_events() -> EventStream:
    rng = np.random.default_rng(7)
    events = random_events(rng, 4000, T_START, T_END)
    # force events on node times and on both sweep ends (boundary cases)
    t, x, y, p = as_numpy(events)
    t[:3], t[-3:] = T_START, T_END
    t[100:110] = 1_500
    return make_events(np.sort(t), x, y, p)


@pytest.fixture(scope="module")
def stack(sweep_events: EventStream) -> EventFocalStack:
    return EventFocalStack.from_events(sweep_events, T_START, T_END, FINE)


def test_stack_properties(stack: EventFocalStack) -> None:
    assert (stack.num_fine_bins, stack.height, stack.width) == (FINE, HEIGHT, WIDTH)
    assert (stack.t_start_us, stack.t_end_us) == (T_START, T_END)
    assert stack.cumulative.shape == (FINE + 1, HEIGHT, WIDTH) and stack.cumulative.dtype == torch.float32


def test_cumulative_matches_reference(stack: EventFocalStack, sweep_events: EventStream) -> None:
    expected = cumulative_reference(sweep_events, T_START, T_END, FINE)
    np.testing.assert_array_equal(stack.cumulative.numpy(), expected)


def test_cumulative_non_integer_node_times() -> None:
    # duration 1000 µs in 3 fine bins: nodes at 333.3.. and 666.6.. µs
    events = random_events(np.random.default_rng(11), 800, 0, 1000)
    stack = EventFocalStack.from_events(events, 0, 1000, 3)
    np.testing.assert_array_equal(stack.cumulative.numpy(), cumulative_reference(events, 0, 1000, 3))


def test_event_at_end_counts_only_in_last_node() -> None:
    events = make_events([400], [2], [1], [-1])
    cumulative = EventFocalStack.from_events(events, 0, 400, 4).cumulative
    assert cumulative[:4, 1, 2].tolist() == [0, 0, 0, 0] and cumulative[4, 1, 2] == -1


def test_segment_linear_inside_fine_bin() -> None:
    events = make_events([250], [0], [0], [1])  # fine bin 2 of [0, 400) at K=4
    stack = EventFocalStack.from_events(events, 0, 400, 4)
    assert float(stack.segment(200, 250, 1)[0, 0, 0]) == pytest.approx(0.5)
    assert float(stack.segment(180, 280, 1)[0, 0, 0]) == pytest.approx(0.8)
    assert stack.segment(0, 400, 4)[:, 0, 0].tolist() == [0, 0, 1, 0]


@pytest.mark.parametrize(("t0", "t", "bins"), [(1_300, 2_100, 4), (T_START, T_END, 6), (1_500, 1_600, 1),
                                               (2_000, 5_800, 19)])
def test_segment_on_nodes_is_exact_histogram(stack, sweep_events, t0, t, bins) -> None:
    got = stack.segment(t0, t, bins).numpy()
    edges = np.linspace(t0, t, bins + 1).round().astype(np.int64)
    for j in range(bins):
        last = edges[j + 1] == T_END
        expected = histogram_reference(sweep_events, edges[j], edges[j + 1], include_end=last)
        np.testing.assert_allclose(got[j], expected, atol=1e-4, err_msg=f"bin {j}")


@pytest.mark.parametrize(("t0", "t"), [(1_234.5, 4_390.0), (1_000, 1_077), (5_799.9, 1_000.1)])
def test_segment_sum_is_change_of_cumulative(stack, sweep_events, t0, t) -> None:
    cumulative = cumulative_reference(sweep_events, T_START, T_END, FINE)
    expected = (interpolated_reference(cumulative, T_START, T_END, t)
                - interpolated_reference(cumulative, T_START, T_END, t0))
    np.testing.assert_allclose(stack.segment(t0, t, 7).sum(0).numpy(), expected, atol=1e-3)


def test_backward_segment_is_negated_reverse(stack: EventFocalStack) -> None:
    backward = stack.segment(4_321.5, 1_234.0, 5)
    forward = stack.segment(1_234.0, 4_321.5, 5)
    np.testing.assert_allclose(backward.numpy(), -forward.flip(0).numpy(), atol=1e-4)


def test_segments_batched_and_windowed(stack: EventFocalStack) -> None:
    t0 = torch.tensor([1_000, 2_500.5, 5_000, 3_000])
    t = torch.tensor([5_800, 1_100.0, 5_050, 3_000])
    batch = stack.segments(t0, t, 3)
    window = stack.segments(t0, t, 3, window=(1, 2, 3, 4))
    assert batch.shape == (4, 3, HEIGHT, WIDTH) and window.shape == (4, 3, 3, 4)
    for i in range(4):
        single = stack.segment(float(t0[i]), float(t[i]), 3)
        np.testing.assert_allclose(batch[i].numpy(), single.numpy(), atol=1e-5)
        np.testing.assert_allclose(window[i].numpy(), single[:, 1:4, 2:6].numpy(), atol=1e-5)
    assert float(batch[3].abs().sum()) == 0  # t0 == t: no events


def test_stack_errors(sweep_events: EventStream, stack: EventFocalStack) -> None:
    with pytest.raises(EventRepresentationError, match=r"t_us\[1\]=6000"):
        stack.segments(torch.tensor([1_000, 1_000]), torch.tensor([2_000, 6_000]), 2)
    with pytest.raises(EventRepresentationError, match="t0_us"):
        stack.segment(999, 2_000, 2)
    with pytest.raises(EventRepresentationError, match="window"):
        stack.segments(torch.tensor([1_000]), torch.tensor([2_000]), 2, window=(0, 0, HEIGHT + 1, 2))
    with pytest.raises(EventRepresentationError, match="same shape"):
        stack.segments(torch.tensor([1_000]), torch.tensor([2_000, 3_000]), 2)
    with pytest.raises(EventRepresentationError, match=r"outside the sweep \[1100, 5800\]"):
        EventFocalStack.from_events(sweep_events, 1_100, T_END, 4)
    with pytest.raises(EventRepresentationError, match="num_fine_bins"):
        EventFocalStack.from_events(sweep_events, T_START, T_END, 0)


# ---------------------------------------------------------------------------------- GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("deterministic", [False, True])
def test_gpu_matches_cpu(sweep_events: EventStream, deterministic: bool) -> None:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        gpu = sweep_events.to("cuda")
        torch.testing.assert_close(voxel_grid(gpu, 9).cpu(), voxel_grid(sweep_events, 9), atol=1e-4, rtol=0)
        torch.testing.assert_close(equal_count_stack(gpu, 5).cpu(), equal_count_stack(sweep_events, 5))
        stack = EventFocalStack.from_events(gpu, T_START, T_END, FINE)
        cpu_stack = EventFocalStack.from_events(sweep_events, T_START, T_END, FINE)
        torch.testing.assert_close(stack.cumulative.cpu(), cpu_stack.cumulative)
        t0, t = torch.tensor([1_000.0, 3_333.3]), torch.tensor([5_800.0, 2_000.0])
        torch.testing.assert_close(stack.segments(t0.cuda(), t.cuda(), 4).cpu(),
                                   cpu_stack.segments(t0, t, 4), atol=1e-4, rtol=0)
    finally:
        torch.use_deterministic_algorithms(previous)
