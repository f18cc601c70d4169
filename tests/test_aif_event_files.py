"""src/aif.py on single event files: every format, its frame (--image) and meta from a sidecar, --meta or flags.

The nets are random (a weights file built from the tiny config, no training): what is tested is that every
format reaches the pipeline as the same sweep, so the AIF image matches the reference .npy layout's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from event_files import (
    EVT2_HEADER,
    EVT3_HEADER,
    dat_bytes,
    evt2_words,
    evt3_words,
    raw_bytes,
    write_aedat4,
    write_dsec,
    write_prophesee_h5,
)
from test_aif_cli import load_aif_module, write_capture
from tiny import tiny_overrides

from evfocus.checkpoints import StageCheckpoint, save_weights
from evfocus.config import load_config
from evfocus.events.io import write_events_h5
from evfocus.events.stream import EventStream
from evfocus.models.registry import build_merge_net, build_refocus_net

ROOT = Path(__file__).parents[1]
HEIGHT, WIDTH, SWEEP_US = 40, 56, 100_000
META = {"sweep_start_us": 0, "sweep_end_us": SWEEP_US, "focus_start_m": 0.3, "focus_end_m": 5.0}
Writer = Callable[[Path, np.ndarray, np.ndarray, np.ndarray, np.ndarray], Path]


def _bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _e2vid(path: Path, t, x, y, p) -> Path:
    write_events_h5(path, EventStream.from_arrays(t, x, y, np.where(p == 1, 1, -1), WIDTH, HEIGHT))
    return path


# every format but .npy, written by its own library or encoded from its spec (tests/event_files.py)
WRITERS: dict[str, tuple[str, Writer]] = {
    "npz": (".npz", lambda path, t, x, y, p: np.savez(path, t=t, x=x, y=y, p=p) or path),
    "txt": (".txt", lambda path, *events: np.savetxt(path, np.column_stack(events), fmt="%d",
                                                     header=f"{WIDTH} {HEIGHT}", comments="") or path),
    "e2vid_h5": (".h5", _e2vid),
    "dsec_h5": (".h5", lambda path, t, *xyp: write_dsec(path, t, *xyp, t_offset_us=7)),
    "aedat4": (".aedat4", lambda path, *events: write_aedat4(path, *events, WIDTH, HEIGHT)),
    "evt2": (".raw", lambda path, *events: _bytes(path, raw_bytes(EVT2_HEADER, evt2_words(*events), WIDTH, HEIGHT))),
    "evt3": (".raw", lambda path, *events: _bytes(path, raw_bytes(EVT3_HEADER, evt3_words(*events), WIDTH, HEIGHT))),
    "dat": (".dat", lambda path, *events: _bytes(path, dat_bytes(*events, WIDTH, HEIGHT))),
    "prophesee_h5": (".hdf5", lambda path, *events: write_prophesee_h5(path, *events, f"{WIDTH}x{HEIGHT}", ecf=False)),
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A merge-stage weights file of random tiny nets: the pipeline runs in well under a second per sweep."""
    tmp = tmp_path_factory.mktemp("weights")
    cfg = load_config(ROOT / "configs/merge.yaml", tiny_overrides(tmp, "logging.wandb.enabled=false"))
    torch.manual_seed(0)
    nets = {"refocus_net": build_refocus_net(cfg), "merge_net": build_merge_net(cfg)}
    state = {f"{prefix}.{key}": value for prefix, net in nets.items() for key, value in net.state_dict().items()}
    return save_weights(StageCheckpoint(tmp / "random.ckpt", "merge", cfg, state), tmp / "random.pt")


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    """One capture in the reference layout (3000 random events, ground truth): the .npy every format must match."""
    root = tmp_path_factory.mktemp("capture")
    write_capture(root, "scene")
    return root


def events_of(capture: Path) -> list[np.ndarray]:
    table = np.load(capture / "events" / "scene.npy")
    return [table[:, column] for column in range(4)]


def psnr(path: Path, truth: Path) -> float:
    error = np.mean((iio.imread(path).astype(np.float64) - iio.imread(truth).astype(np.float64)) ** 2) / 255 ** 2
    return float(10 * np.log10(1 / error))


def run(aif, weights: Path, out: Path, *args) -> None:
    """One CLI run at the fastest settings: no GIF, a 2×2 search grid, two slices."""
    assert aif.main(["--ckpt", str(weights), "--out", str(out), "--frames", "0", "--device", "cpu", "--grid", "2",
                     "--max-slices", "2", *map(str, args)]) == 0


@pytest.mark.slow  # ten CLI runs
def test_every_format_gives_the_npy_layouts_aif_image(weights, capture, tmp_path):
    aif = load_aif_module()
    out = tmp_path / "out"
    run(aif, weights, out, "--input", capture)
    truth = capture / "aif" / "scene.png"
    reference = psnr(out / "scene" / "aif.png", truth)
    events = events_of(capture)
    for index, (name, (suffix, write)) in enumerate(WRITERS.items()):
        folder = tmp_path / name
        folder.mkdir()
        path = write(folder / f"rec{suffix}", *events)
        if index % 3 == 0:  # a JSON sidecar (rec.json), a YAML one (rec.raw.yaml), or flags only
            path.with_suffix(".json").write_text(json.dumps(META))
            meta_args = []
        elif index % 3 == 1:
            path.with_name(path.name + ".yaml").write_text("".join(f"{key}: {value}\n" for key, value in META.items()))
            meta_args = []
        else:
            meta_args = ["--sweep-us", 0, SWEEP_US, "--focus-m", 0.3, 5.0]
        unit = ["--meta", folder / "unit.json"] if name in ("npz", "txt") else []  # formats with an open time unit
        if unit:
            (folder / "unit.json").write_text(json.dumps({**META, "event_time_unit": "us"}))
        run(aif, weights, out / name, "--input", path, "--image", capture / "blurry" / "scene.png", *meta_args, *unit)
        report = json.loads((out / name / "rec" / "report.json").read_text())
        assert report["events"]["count"] == 3000, name
        assert abs(psnr(out / name / "rec" / "aif.png", truth) - reference) < 0.01, name


def test_format_override_and_flags_win_over_the_sidecar(weights, capture, tmp_path):
    aif = load_aif_module()
    path = WRITERS["txt"][1](tmp_path / "rec.log", *events_of(capture))  # a suffix detection cannot place
    (tmp_path / "rec.json").write_text(json.dumps({**META, "sweep_end_us": 1, "event_time_unit": "us",
                                                   "event_response": "gamma"}))
    run(aif, weights, tmp_path / "out", "--input", path, "--image", capture / "blurry" / "scene.png", "--format", "txt",
        "--sweep-us", 0, SWEEP_US, "--polarity-flip", "--event-response", "linear")
    report = json.loads((tmp_path / "out" / "rec" / "report.json").read_text())
    assert report["sweep"]["t_end_us"] == SWEEP_US and "negated" in report["source"]["polarity"]
    assert report["events"]["response"] == "linear"


def test_event_file_errors_name_the_file_and_key(weights, capture, tmp_path, capsys):
    aif = load_aif_module()
    events = capture / "events" / "scene.npy"
    image = capture / "blurry" / "scene.png"
    loose = tmp_path / "rec.npy"
    loose.write_bytes(events.read_bytes())
    (tmp_path / "partial.yaml").write_text("sweep_start_us: 0\nfocus_start_m: 0.3\n")
    (tmp_path / "bad.json").write_text(json.dumps({**META, "focus_end_m": "far"}))
    cases = [
        (["--input", loose], "not a capture folder or a capture file"),
        (["--input", loose, "--sweep-us", 0, 10], "an event file needs its frame: --image FRAME"),
        (["--input", loose, "--image", tmp_path / "none.png", "--sweep-us", 0, 10], "none.png: no such file"),
        (["--input", loose, "--image", image], f"{loose}: no meta: put rec.json beside it"),
        (["--input", loose, "--image", image, "--meta", tmp_path / "partial.yaml"],
         f"{tmp_path / 'partial.yaml'}: missing key(s) ['sweep_end_us', 'focus_end_m']"),
        (["--input", loose, "--image", image, "--meta", tmp_path / "bad.json"],
         f"{tmp_path / 'bad.json'}: 'focus_end_m' must be a finite number"),
        (["--input", loose, "--image", image, "--meta", tmp_path / "nope.json"], "nope.json: no such file"),
        (["--input", loose, "--image", image, "--meta", tmp_path / "partial.yaml", "--sweep-us", 0, 5],
         "+ flags: missing key(s) ['focus_end_m']"),
        (["--input", loose, capture, "--image", image], "give exactly one --input EVENTS"),
        (["--input", capture, "--image", image], "no such event file"),
        (["--input", loose, "--image", image, "--sweep-us", 0, SWEEP_US, "--focus-m", 0.3, 5, "--format", "dat"],
         str(loose)),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as stop:
            aif.main(["--ckpt", str(weights), "--out", str(tmp_path / "out"), *map(str, args)])
        stderr = capsys.readouterr().err
        assert stop.value.code == 2 and message in stderr, (args, stderr)
    assert not (tmp_path / "out").exists()
    assert events.is_file()
