"""Proposals and early termination by wandb's open-source ``sweeps`` engine (grid, random, bayes; hyperband).

The same code a wandb server-side sweep follows, run locally. It reads runs as ``SweepRun``: the
config as ``{name: {"value": v}}``, the summary and the history under their wandb aliases
(``summaryMetrics``, ``sampledHistory``: with pydantic 2, sweeps 0.2 silently drops the snake_case
field names). Proposals are seeded by the sweep and the number of trials so far, so a resumed sweep
proposes what an uninterrupted one would have.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sweeps

from evfocus.sweeps.command import plain
from evfocus.sweeps.spec import SweepSpec

# trial state → the wandb run state the engine reasons about (a trial stopped by hyperband has finished)
RUN_STATES = {"finished": sweeps.RunState.finished, "stopped": sweeps.RunState.finished,
              "failed": sweeps.RunState.failed, "running": sweeps.RunState.running}


@dataclass
class TrialView:
    """What the engine needs of a trial: its parameters, state, summary metrics and metric history."""

    name: str
    params: dict[str, Any]
    state: str
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def sweep_run(trial: TrialView) -> sweeps.SweepRun:
    return sweeps.SweepRun(name=trial.name, state=RUN_STATES[trial.state],
                           config={name: {"value": value} for name, value in trial.params.items()},
                           summaryMetrics=trial.summary, sampledHistory=trial.history)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """The engine draws from the global ``random`` and ``np.random``: seed both, then restore them."""
    saved_random, saved_numpy = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(saved_random)
        np.random.set_state(saved_numpy)


def propose(spec: SweepSpec, trials: list[TrialView], seed: int = 0) -> dict[str, Any] | None:
    """The next trial's parameters (plain Python values), or None when a grid is exhausted."""
    with _seeded(seed * 100_003 + len(trials)):
        suggestion = sweeps.next_run(spec.filled, [sweep_run(t) for t in trials])
    if suggestion is None:
        return None
    return {name: plain(entry["value"]) for name, entry in suggestion.config.items()}


def should_stop(spec: SweepSpec, trials: list[TrialView], running: TrialView) -> bool:
    """Whether hyperband stops ``running`` now, given the other trials (False without early_terminate)."""
    if "early_terminate" not in spec.filled or spec.metric is None:
        return False
    stopped = sweeps.stop_runs(spec.filled, [*(sweep_run(t) for t in trials), sweep_run(running)])
    return any(run.name == running.name for run in stopped)
