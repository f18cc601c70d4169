"""benchmarks/official_efs.py: the CPU changes to the reference implementation and the input it reads."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from official_efs import patched_copy, write_input

from evfocus.events.stream import EventStream
from evfocus.optics import FocusSchedule
from evfocus.sweep import Sweep

ENTRY_TEXT = ("from asyncore import read\nimport os\nfrom turtle import down\nimport torch\n\n"
              "torch.cuda.current_device()\nX = 1\n")


def test_patched_copy_drops_exactly_the_cpu_blockers(tmp_path):
    checkout = tmp_path / "EFS"
    (checkout / "model").mkdir(parents=True)
    (checkout / "make_all_in_focus.py").write_text(ENTRY_TEXT)
    (checkout / "model" / "net.py").write_text("import torch\ntorch.cuda.current_device()\n"
                                               "y = torch.cuda.is_available()\n")
    copy = patched_copy(checkout, tmp_path / "copy")
    assert (copy / "make_all_in_focus.py").read_text() == "import os\nimport torch\n\nX = 1\n"
    assert (copy / "model" / "net.py").read_text() == "import torch\ny = torch.cuda.is_available()\n"
    assert (checkout / "make_all_in_focus.py").read_text() == ENTRY_TEXT  # the checkout is untouched


def test_patched_copy_refuses_a_checkout_it_was_not_written_for(tmp_path):
    checkout = tmp_path / "other"
    checkout.mkdir()
    with pytest.raises(FileNotFoundError, match=r"make_all_in_focus\.py"):
        patched_copy(checkout, tmp_path / "copy")
    (checkout / "make_all_in_focus.py").write_text("import os\n")
    with pytest.raises(ValueError, match="found nothing to change"):
        patched_copy(checkout, tmp_path / "copy")


def test_write_input_crops_to_a_multiple_of_four_with_the_events_inside(tmp_path):
    height, width = 10, 15
    image = torch.rand(3, height, width)
    t_us, x, y, p = [5, 7, 9, 11], [0, 14, 11, 3], [9, 2, 7, 7], [1, -1, -1, 1]  # the first two outside
    events = EventStream.from_arrays(np.array(t_us) + 1000, np.array(x), np.array(y), np.array(p), width, height)
    sweep = Sweep("s", image, 1005, events, FocusSchedule(1000, 1020, 0.3, 2.0))
    sizes = write_input(sweep, tmp_path / "data")
    assert sizes == {"height": 8, "width": 12, "events": 2}
    frame = np.asarray(Image.open(tmp_path / "data" / "blurry" / "s.png"))
    np.testing.assert_array_equal(frame, (image[:, :8, :12] * 255).round().byte().permute(1, 2, 0).numpy())
    table = np.load(tmp_path / "data" / "events" / "s.npy")
    assert table.dtype == np.int32
    # rows t (µs since the first event), x, y, polarity 0/1
    np.testing.assert_array_equal(table, [[4, 11, 7, 0], [6, 3, 7, 1]])
