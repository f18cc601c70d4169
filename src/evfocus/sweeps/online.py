"""The online sweep: create it on the wandb server from the same YAML and run ``wandb agent``.

Needs ``wandb login`` and a reachable server; it cannot run (or be tested) on a machine without one.
"""

from __future__ import annotations

import subprocess

from evfocus.sweeps.spec import SweepSpec


def run_online(spec: SweepSpec, project: str, entity: str | None = None, count: int | None = None) -> int:
    """Create the sweep, then run one agent on it here (``count`` trials, or until the server says done)."""
    import wandb

    sweep_id = wandb.sweep(spec.config, project=project, entity=entity)
    command = ["wandb", "agent", "--project", project]
    command += ["--entity", entity] if entity else []
    command += ["--count", str(count)] if count else []
    return subprocess.call([*command, sweep_id])
