import numpy as np
import pytest
import torch

from evfocus.events.stream import EventStream, EventStreamError


def make(t, x, y, p, width=4, height=3):
    return EventStream.from_arrays(np.array(t), np.array(x), np.array(y), np.array(p), width, height, "f.npy")


def test_contract_dtypes_and_slicing():
    events = make([1, 2, 2, 5], [0, 1, 2, 3], [0, 1, 2, 0], [1, -1, 1, -1])
    assert (events.t_us.dtype, events.x.dtype, events.p.dtype) == (torch.int64, torch.int32, torch.int8)
    part = events.time_slice(2, 5)
    assert part.t_us.tolist() == [2, 2] and part.p.tolist() == [-1, 1]
    crop = events.crop(1, 1, 2, 2)
    assert (crop.x.tolist(), crop.y.tolist(), crop.width) == ([0, 1], [0, 1], 2)
    assert len(EventStream.empty(4, 3)) == 0


@pytest.mark.parametrize("args, message", [
    (([3, 2], [0, 0], [0, 0], [1, 1]), "f.npy: timestamps are not sorted"),
    (([1, 2], [0, 4], [0, 0], [1, 1]), "'x' out of range"),
    (([1, 2], [0, 0], [0, -1], [1, 1]), "'y' out of range"),
    (([1, 2], [0, 0], [0, 0], [1, 0]), r"polarity must be \+1/-1, found values \[0\]"),
])
def test_contract_violations_name_the_source(args, message):
    with pytest.raises(EventStreamError, match=message):
        make(*args)


def test_length_mismatch_is_reported():
    with pytest.raises(EventStreamError, match="'x' has 1 entries"):
        EventStream(torch.tensor([1, 2]), torch.tensor([0], dtype=torch.int32),
                    torch.tensor([0, 0], dtype=torch.int32), torch.tensor([1, 1], dtype=torch.int8), 4, 3)
