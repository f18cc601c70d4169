"""benchmarks/bench_sim.py: its what-if run drives the training stream's own sweep path and accounts for its time."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_whatif_breakdown_times_every_stage_of_a_training_sweep_once():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_sim.py"), "--part", "whatif",
                          "--repeats", "1", "--variants"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    header = next(line for line in out.splitlines() if line.startswith("| setting |"))
    row = next(line for line in out.splitlines() if line.startswith("| as configured |") and "(" in line)
    names = [cell.strip() for cell in header.strip("|").split("|")]
    cells = dict(zip(names, (cell.strip() for cell in row.strip("|").split("|")), strict=True))
    seconds = {name: float(cells[name].split()[0]) for name in names[1:]}
    stages = [name for name in names[1:] if name not in ("simulate", "samples cut", "total")]
    assert seconds["contrast fields"] > 0 and seconds["events"] > 0
    assert min(seconds[name] for name in stages) >= -0.005  # the remainders: nothing counted twice
    assert abs(sum(seconds[name] for name in stages) - seconds["total"]) < 0.02 * seconds["total"] + 0.01
