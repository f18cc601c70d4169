"""A tiny offline sweep run once per test session: 3 one-epoch trials of the refocus stage (48×48 sweeps).

Its sweep folder and run folders serve the runner's end-to-end test and the notebooks' tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tiny import tiny_overrides

ROOT = Path(__file__).parents[1]
RUN_NAME_TOKEN = "run_name=${oc.env:WANDB_RUN_ID,null}"


def tiny_params(root: Path, *extra: str) -> dict[str, Any]:
    """``tiny_overrides`` as fixed sweep parameters ({key: {"value": v}})."""
    params = {}
    for override in tiny_overrides(root, "logging.wandb.enabled=false", *extra):
        key, value = override.split("=", 1)
        params[key] = {"value": yaml.safe_load(value)}
    return params


def write_sweep(path: Path, parameters: dict[str, Any], method: str = "grid", program: str | None = None,
                **extra: Any) -> Path:
    """A sweep YAML over ``configs/quickstart.yaml`` (``program``: src/train.py unless given)."""
    program = program or str(ROOT / "src" / "train.py")
    config = {"name": path.stem, "program": program, "method": method, "parameters": parameters,
              "command": ["${env}", "${interpreter}", "${program}", "--config", str(ROOT / "configs/quickstart.yaml"),
                          RUN_NAME_TOKEN, "${args_no_hyphens}"], **extra}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class TinySweep:
    root: Path  # runs_dir
    folder: Path  # the sweep folder
    outcome: Any


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> TinySweep:
    from evfocus.sweeps.runner import run_offline
    from evfocus.sweeps.spec import load_spec

    root = tmp_path_factory.mktemp("sweep")
    parameters = {
        **tiny_params(root, "trainer.max_epochs=1"),
        "optim.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
        "model.width": {"values": [4, 8]},
        "data.flip": {"values": [True, False]},
    }
    path = write_sweep(root / "tiny.yaml", parameters, method="bayes",
                       metric={"name": "test/aif/pipeline/psnr", "goal": "maximize"})
    outcome = run_offline(load_spec(path), count=3, poll_s=0.5)
    return TinySweep(root / "runs", outcome.folder, outcome)
