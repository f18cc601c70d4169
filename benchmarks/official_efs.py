"""Time the reference implementation itself (HYLZ-2019/EFS, ``make_all_in_focus.py``) on one of our captures.

    git clone https://github.com/HYLZ-2019/EFS /tmp/EFS
    pip install -e '.[bench]'          # opencv-python-headless, tensorboardX: its imports that evfocus lacks
    OMP_WAIT_POLICY=PASSIVE python benchmarks/official_efs.py --official /tmp/EFS \
        --capture ../shared/samples/efs_dev_dense/d01_shelf --repeats 1

Nothing of the checkout enters this repository: its Python files are copied to a temporary folder and
run there, in a process of their own, with only the changes a CPU needs (the issue lists them), each
checked to apply:

- the module-level ``torch.cuda.current_device()`` calls are dropped (they raise without a GPU);
- the stray ``from asyncore import read`` (gone in Python 3.12) and ``from turtle import down`` (needs Tk)
  are dropped;
- the frame is cropped to a multiple of 4 in height and width (its U-Nets downsample twice): 260×346 →
  260×344, with the events inside the crop.

The nets are the reference's AddNet and MergeStackNet at 64 stack bins, randomly initialised (seeded):
its search probes a fixed number of times per patch whatever the net says (it bisects event counts),
so speed does not depend on the weights, which are not downloadable here. The process runs the
reference's own ``test_all_data_in_path`` (event binning, search, 64-slice stack, merge, PNG outputs);
its functions are wrapped from outside to split the seconds by step. Reported: the process's wall
time (imports included, like a user's command), the pipeline's, per step, and the peak resident
memory (VmHWM of the process).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evfocus.data.captures import read_capture
from evfocus.sweep import Sweep

# (pattern, what it removes): each must match at least once in the files it applies to, or the checkout
# is not the code these changes were written for
CPU_PATCHES: tuple[tuple[str, str], ...] = (
    (r"^torch\.cuda\.current_device\(\)\n", "torch.cuda.current_device() at import"),
    (r"^from asyncore import read\n", "the stray asyncore import"),
    (r"^from turtle import down\n", "the stray turtle import"),
)
ENTRY = "make_all_in_focus.py"

# Runs in the patched copy: builds the reference's nets, wraps its step functions with timers, runs its
# test_all_data_in_path on the prepared folder and writes the seconds and peak memory as JSON.
DRIVER = r"""
import json, sys, time
from pathlib import Path
data_dir, result_file, seed, threads, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
import torch
torch.set_num_threads(threads)
import make_all_in_focus as efs
from model import AddNet, MergeStackNet

seconds, calls = {}, {}
def timed(name, fn, key=None):
    def wrapper(*args, **kwargs):
        label = name if key is None else key(*args)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - start
            calls[label] = calls.get(label, 0) + 1
    return wrapper

full_shape = None
def probe_kind(image, *rest):
    return "stack_pass" if image.shape[:2] == full_shape else "patch_probe"
efs.stack_events = timed("event_binning", efs.stack_events)
efs.make_image_and_eval = timed("", efs.make_image_and_eval, key=probe_kind)
efs.merge_stack_with_model = timed("merge", efs.merge_stack_with_model)
import cv2
full_shape = cv2.imread(str(next(Path(data_dir, "blurry").glob("*.png")))).shape[:2]
torch.manual_seed(seed)
model_add, model_merge = AddNet(64).eval().to(device), MergeStackNet(64).eval().to(device)
start = time.perf_counter()
with torch.no_grad():
    efs.test_all_data_in_path(data_dir.rstrip("/") + "/", model_add, model_merge, torch.device(device))
pipeline = time.perf_counter() - start
status = Path("/proc/self/status").read_text().splitlines()
peak_kb = int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
Path(result_file).write_text(json.dumps({"pipeline_s": pipeline, "seconds": seconds, "calls": calls,
                                         "peak_gb": peak_kb / 2**20}))
"""


def patched_copy(checkout: Path, folder: Path) -> Path:
    """The checkout's Python files copied to ``folder`` with ``CPU_PATCHES`` applied; returns ``folder``."""
    if not (checkout / ENTRY).is_file():
        raise FileNotFoundError(f"{checkout}: no {ENTRY}; pass a checkout of https://github.com/HYLZ-2019/EFS")
    applied = {description: 0 for _, description in CPU_PATCHES}
    for source in sorted(checkout.rglob("*.py")):  # listed before the copy starts: folder may lie inside
        target = folder / source.relative_to(checkout)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text()
        for pattern, description in CPU_PATCHES:
            text, count = re.subn(pattern, "", text, flags=re.MULTILINE)
            applied[description] += count
        target.write_text(text)
    missing = [description for description, count in applied.items() if count == 0]
    if missing:
        raise ValueError(f"{checkout}: these CPU changes found nothing to change: {missing}; "
                         "the checkout differs from the code they were written for")
    return folder


def write_input(sweep: Sweep, folder: Path) -> dict[str, Any]:
    """The sweep as the reference reads it: ``blurry/NAME.png`` (BGR by cv2, so written RGB by PIL) and
    ``events/NAME.npy`` (n, 4) int32 rows t, x, y, polarity 0/1, in time order, cropped to a multiple of 4."""
    height, width = sweep.height // 4 * 4, sweep.width // 4 * 4
    frame = (sweep.image[:, :height, :width].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    (folder / "blurry").mkdir(parents=True)
    (folder / "events").mkdir()
    Image.fromarray(frame).save(folder / "blurry" / f"{sweep.name}.png")
    events = sweep.events
    inside = ((events.x < width) & (events.y < height)).numpy()
    table = np.stack([events.t_us.numpy()[inside] - int(events.t_us[0]), events.x.numpy()[inside],
                      events.y.numpy()[inside], (events.p.numpy()[inside] > 0)], axis=1).astype(np.int32)
    np.save(folder / "events" / f"{sweep.name}.npy", table)
    return {"height": height, "width": width, "events": len(table)}


def time_official(checkout: Path, capture: Path, seed: int = 0, threads: int = 2,
                  device: str = "cpu") -> dict[str, Any]:
    """One run of the reference implementation on ``capture`` (ROOT/NAME) in its own process, its nets
    and tensors on ``device`` (its own script picks the GPU when there is one)."""
    sweep = read_capture(capture.parent, capture.name)
    with tempfile.TemporaryDirectory(prefix="efs_official_") as tmp:
        code = patched_copy(checkout, Path(tmp) / "code")
        data = Path(tmp) / "data"
        sizes = write_input(sweep, data)
        result_file = Path(tmp) / "result.json"
        env = {**os.environ, "PYTHONPATH": str(code), "MPLBACKEND": "Agg"}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", DRIVER, str(data), str(result_file), str(seed), str(threads),
                        device],
                       cwd=code, env=env, check=True)
        wall = time.perf_counter() - start
        result = json.loads(result_file.read_text())
    return {"wall_s": wall, **sizes, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, required=True, help="a checkout of HYLZ-2019/EFS")
    parser.add_argument("--capture", type=Path, required=True, metavar="ROOT/NAME")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device for its nets (cuda: as its own script runs)")
    args = parser.parse_args()
    for _ in range(args.repeats):
        print(json.dumps(time_official(args.official, args.capture, args.seed, args.threads, args.device)), flush=True)


if __name__ == "__main__":
    main()
