"""evfocus.inference, the library behind src/aif.py: inputs, the output folder, the report and the video."""

import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from evfocus.config import load_config
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.integration import EventIntegrator
from evfocus.inference.outputs import staged_folder
from evfocus.inference.report import jsonable
from evfocus.inference.run import with_pipeline_overrides
from evfocus.inference.sources import InputError, parse_seeds
from evfocus.inference.video import position_strip, refocus_frames, slice_frames, write_gif
from evfocus.pipeline.aif import AIFPipeline, refocus_stack
from evfocus.pipeline.settings import pipeline_config
from evfocus.sim.simulator import SweepSimulator
from evfocus.visualize import to_uint8


def test_sim_seeds_parse_in_order_without_duplicates():
    assert parse_seeds("1") == [1]
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,5,7-9,5") == [1, 5, 7, 8, 9]
    for bad, message in (("1-x", "expected seeds like"), ("3-1", "runs backwards"), ("", "expected seeds")):
        with pytest.raises(InputError, match=message):
            parse_seeds(bad)


def test_report_values_become_strict_json():
    report = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (2, "x"), 3: 4.5}
    assert jsonable(report) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2, "x"], "3": 4.5}


def test_the_output_folder_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "sweep"
    with staged_folder(final) as folder:
        (folder / "a.txt").write_text("first")
    assert (final / "a.txt").read_text() == "first"
    with pytest.raises(OSError, match="disk full"), staged_folder(final) as folder:
        (folder / "a.txt").write_text("second")
        raise OSError("disk full")
    assert (final / "a.txt").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]
    with staged_folder(final) as folder:
        (folder / "b.txt").write_text("third")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]  # success replaces the earlier output
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"), staged_folder(tmp_path / "file"):
        pass


def test_command_line_pipeline_overrides_leave_the_rest_of_the_config():
    cfg = load_config(None)
    changed = with_pipeline_overrides(cfg, grid=3, tile_px=64)
    assert (changed.pipeline.search.grid_size, changed.pipeline.tile_px) == (3, 64)
    assert changed.pipeline.max_slices == cfg.pipeline.max_slices and changed.data == cfg.data


@pytest.fixture(scope="module")
def sweep():
    cfg = load_config(None, ["sim.height=48", "sim.width=64", "sim.num_frames=24", "data.crop_size=32"])
    return SweepSimulator(cfg.sim, "test").simulate(3)


def test_the_refocus_video_reuses_the_pipelines_focal_stack(sweep, monkeypatch):
    cfg = load_config(None, ["pipeline.search.grid_size=4", "pipeline.search.min_events_per_px=0",
                             "data.efs_fine_bins=64", "data.num_bins=4"])
    config = pipeline_config(cfg, sweep)
    builds = []
    from_events = EventFocalStack.from_events
    monkeypatch.setattr(EventFocalStack, "from_events", lambda *a, **k: builds.append(1) or from_events(*a, **k))
    result = AIFPipeline(EventIntegrator(0.05), None, config)(sweep)
    times = torch.linspace(sweep.schedule.t_start_us, sweep.schedule.t_end_us, 5, dtype=torch.float64)
    frames = refocus_frames(result, sweep.image, sweep.image_time_us, times, config)
    assert len(builds) == 1  # the events were binned once, for the search, the stack and the video
    monkeypatch.undo()
    fresh = EventFocalStack.from_events(sweep.events, sweep.schedule.t_start_us, sweep.schedule.t_end_us, 64)
    expected, _ = refocus_stack(EventIntegrator(0.05), sweep.image, sweep.image_time_us, fresh, times, 4,
                                anchor_sigma_px=config.anchor_sigma_px)  # anchored like the pipeline's stack
    assert frames.shape == (5, 48, 64, 3) and np.array_equal(frames, to_uint8(expected))


def test_the_default_video_cross_fades_the_frame_and_the_stack_without_the_net(sweep):
    # two slices, given out of order: key images are the frame at its time and each slice at its own
    stack = torch.stack([torch.full_like(sweep.image, 0.8), torch.full_like(sweep.image, 0.4)])
    t0 = float(sweep.image_time_us)
    result = SimpleNamespace(stack=stack, slice_times_us=torch.tensor([t0 + 2000.0, t0 + 1000.0], dtype=torch.float64))
    times = torch.tensor([t0 - 500.0, t0, t0 + 500.0, t0 + 1000.0, t0 + 1500.0, t0 + 9000.0], dtype=torch.float64)
    frames = slice_frames(result, sweep.image, t0, times)
    frame = to_uint8(sweep.image)
    expected = [frame, frame, to_uint8((sweep.image + 0.4) / 2), to_uint8(stack[1]),
                to_uint8(torch.full_like(sweep.image, 0.6)), to_uint8(stack[0])]  # outside the keys: the nearest
    assert frames.shape == (6, 48, 64, 3)
    for got, want in zip(frames, expected, strict=True):
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_the_video_marks_the_sweep_position_and_loops(sweep, tmp_path):
    frames = np.zeros((4, 30, 40, 3), dtype=np.uint8)  # identical frames: only the strip tells them apart
    times = torch.linspace(sweep.schedule.t_start_us, sweep.schedule.t_end_us, 4, dtype=torch.float64)
    marked = position_strip(frames, times, sweep.schedule)
    assert marked.shape == (4, 33, 40, 3)
    assert all(not np.array_equal(marked[i], marked[i + 1]) for i in range(3))
    write_gif(tmp_path / "v.gif", marked)
    assert iio.imread(tmp_path / "v.gif", index=None).shape[0] == 4


def test_the_command_imports_torchmetrics_only_to_score_against_ground_truth():
    code = "import sys, evfocus.inference.run; print('torchmetrics' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
