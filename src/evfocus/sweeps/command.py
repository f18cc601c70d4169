"""A trial's command line, built exactly as ``wandb agent`` builds it from the sweep's ``command:``.

The agent replaces ``${env}``, ``${interpreter}``, ``${program}`` and the ``${args...}`` macros and
writes every parameter as ``str(value)`` (``key=0.001``, ``key=True``, ``key=[1.0, 2.0]``); values
arrive as JSON from the wandb server, so numpy scalars from the engine are made plain first.
The interpreter is this Python (the agent says ``python``, which is the same one in an activated venv).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

# wandb_agent.Agent.DEFAULT_SWEEP_COMMAND (the agent's command when the YAML has none)
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
ENV = "/usr/bin/env"


def plain(value: Any) -> Any:
    """``value`` as it comes back from a JSON round trip (numpy scalars and arrays become Python values)."""

    def default(item: Any) -> Any:
        if isinstance(item, np.generic | np.ndarray):
            return item.tolist()
        raise TypeError(f"sweep value of type {type(item).__name__} is not JSON: {item!r}")

    return json.loads(json.dumps(value, default=default))


def trial_argv(command: list[Any], program: str | None, params: dict[str, Any]) -> list[str]:
    """The argv ``wandb agent`` runs for a trial with ``params`` (name → value) under ``command``."""
    sweep_vars: dict[str, list[str]] = create_sweep_command_args(
        {"args": {name: {"value": plain(value)} for name, value in params.items()}})
    sweep_vars.update(env=[ENV], interpreter=[sys.executable], program=[program] if program else [])
    argv: list[str] = []
    for chunk in map(str, command):
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += sweep_vars.get(chunk[2:-1]) or []
        else:
            argv.append(chunk)
    return argv


def program_args(argv: list[str], program: str) -> list[str]:
    """The arguments after the program in a trial's argv (what ``src/train.py`` parses)."""
    if program not in argv:
        raise ValueError(f"the command does not run the program {program}: {argv}")
    return argv[argv.index(program) + 1:]
