"""What ``bench_aif.py`` needs to time the whole ``src/aif.py`` command and every run's peak memory.

The command is what a user waits for (imports, checkpoint, pipeline, outputs), so it runs as its own
process on a capture folder, with the benchmark's nets written as a weights file: same nets, same sweep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from evfocus.checkpoints import StageCheckpoint, save_weights

REPO = Path(__file__).resolve().parents[1]


def reset_peak_rss() -> None:
    """Restart this process's resident-memory high-water mark (Linux: ``clear_refs`` 5), so that
    ``peak_rss_gb`` reports the peak of what runs next rather than of the whole process so far."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_gb() -> float:
    """This process's resident-memory high-water mark (VmHWM), GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")


def write_weights(refocus: torch.nn.Module, merge: torch.nn.Module, cfg: DictConfig, folder: Path) -> Path:
    """The benchmark's nets (float32) as a weights file ``src/aif.py --ckpt`` loads (a merge-stage model)."""
    state = {f"refocus_net.{k}": v.cpu() for k, v in refocus.state_dict().items()}
    state |= {f"merge_net.{k}": v.cpu() for k, v in merge.state_dict().items()}
    checkpoint = StageCheckpoint(folder / "bench.pt", "merge", cfg, state)
    return save_weights(checkpoint, folder / "bench.pt", torch.float32)


# Runs src/aif.py in this interpreter, then writes its peak resident memory (VmHWM) to the file named by the
# first argument. A forked child's rusage starts from the parent's memory at the fork (the benchmark's own
# many GB), whereas VmHWM belongs to the process image that exec created: src/aif.py's own peak.
TRAMPOLINE = """
import runpy, sys
from pathlib import Path
peak_file, sys.argv = sys.argv[1], sys.argv[2:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    status = Path("/proc/self/status").read_text().splitlines()
    Path(peak_file).write_text(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def time_command(weights: Path, capture: Path, device: str, threads: int, runtime: str | None = None,
                 search_probe: str | None = None, merge_scale: int | None = None) -> dict:
    """One ``src/aif.py`` run on capture ``ROOT/NAME`` with its default outputs (``runtime``, ``search_probe``,
    ``merge_scale``: its ``--runtime``, ``--search-probe`` and ``--merge-scale``, None for the defaults): wall
    seconds (process start to exit), its report's seconds per step and its peak resident memory (GB);
    ``variant`` names the flags."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as out:
        peak_file = Path(out) / "peak_kb.txt"
        command = [sys.executable, "-c", TRAMPOLINE, str(peak_file), str(REPO / "src" / "aif.py"),
                   "--ckpt", str(weights), "--input", str(capture.parent), "--name", capture.name, "--out", out,
                   "--device", device,
                   *(["--runtime", runtime] if runtime else []),
                   *(["--search-probe", search_probe] if search_probe else []),
                   *(["--merge-scale", str(merge_scale)] if merge_scale else [])]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"src/aif.py failed: {done.stderr[-2000:]}")
        report = json.loads((Path(out) / capture.name / "report.json").read_text())
        peak_gb = int(peak_file.read_text()) / 2**20
    variant = ", ".join([f"`--runtime {runtime}`" if runtime else "default runtime",
                         *([f"`--search-probe {search_probe}`"] if search_probe else []),
                         *([f"`--merge-scale {merge_scale}`"] if merge_scale else [])])
    return {"wall": wall, "peak_gb": peak_gb, "seconds": report["seconds"], "variant": variant}
