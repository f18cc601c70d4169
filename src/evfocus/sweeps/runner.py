"""The offline sweep: propose, run the trial exactly as ``wandb agent`` would, read its run folder back,
record it, repeat; hyperband stops a running trial (SIGTERM: it saves ``last.ckpt`` and exits).

No wandb server is needed: trials log offline wandb runs, grouped by the sweep's name
(``WANDB_RUN_GROUP``), each named by ``WANDB_RUN_ID`` as the agent does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evfocus.sweeps.engine import TrialView, propose, should_stop
from evfocus.sweeps.run_folder import read_history, read_summary
from evfocus.sweeps.spec import SweepSpec, SweepSpecError, base_params
from evfocus.sweeps.store import SweepStore

INTERRUPTED = (130, 143, -signal.SIGINT, -signal.SIGTERM)  # the trial was stopped from outside
MAX_CONSECUTIVE_FAILURES = 3  # as wandb agent: a sweep whose trials keep failing stops


class SweepInterrupted(RuntimeError):
    """A trial was interrupted from outside; rerunning the sweep continues it."""


@dataclass
class SweepOutcome:
    folder: Path
    ran: int  # trials run by this call
    trials: list[dict[str, Any]]  # every ended trial of the sweep, best first


def sweep_folder(spec: SweepSpec) -> Path:
    """``<runs_dir>/<project>/sweeps/<sweep name>/`` of the config the sweep's first values give."""
    cfg = spec.trial_config(base_params(spec), spec.name)
    return Path(cfg.runs_dir) / cfg.project / "sweeps" / spec.name


def _trial_env(spec: SweepSpec, trial: str) -> dict[str, str]:
    env = {**os.environ, "WANDB_RUN_ID": trial, "WANDB_RUN_GROUP": spec.name, "PYTHONUNBUFFERED": "1"}
    env.setdefault("WANDB_MODE", "offline")
    return env


def _history_of(spec: SweepSpec, run_dir: Path) -> list[dict[str, float]]:
    """The rows that logged the sweep's metric (what hyperband and bayes read), or none without a metric."""
    if spec.metric is None:
        return []
    return [row for row in read_history(run_dir) if spec.metric[0] in row]


def _run_trial(spec: SweepSpec, view: TrialView, argv: list[str], run_dir: Path, log: Path,
               others: list[TrialView], poll_s: float) -> tuple[str, int]:
    """Run one trial to its end; returns (state, return code)."""
    stopped = False
    with log.open("w") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=_trial_env(spec, view.name))
        try:
            while process.poll() is None:
                time.sleep(poll_s)
                view.history = _history_of(spec, run_dir)
                if not stopped and view.history and should_stop(spec, others, view):
                    process.send_signal(signal.SIGTERM)  # train.py saves last.ckpt and exits 143
                    stopped = True
        except BaseException:  # Ctrl-C or an error here: stop the trial cleanly (it saves last.ckpt)
            process.send_signal(signal.SIGTERM)
            process.wait()
            raise
    returncode = process.returncode
    if stopped:
        return "stopped", returncode
    if returncode in INTERRUPTED:
        raise SweepInterrupted(f"trial {view.name} was interrupted (exit {returncode}); run the sweep again "
                               f"to continue it (log: {log})")
    return ("finished" if returncode == 0 else "failed"), returncode


def run_offline(spec: SweepSpec, count: int | None = None, project: str | None = None, seed: int = 0,
                poll_s: float = 2.0) -> SweepOutcome:
    """Run trials until the sweep holds ``count`` ended trials (a grid also stops when exhausted).

    ``project``: the trials' wandb project (appended as ``logging.wandb.project=...``).
    """
    if count is None and spec.method != "grid":
        raise SweepSpecError(f"{spec.path}: a {spec.method} search never ends by itself: give --count N")
    store = SweepStore(sweep_folder(spec))
    store.open(spec)
    ran, failures = 0, 0
    while count is None or len(store.trials()) < count:
        views = store.views()
        params = propose(spec, views, seed)
        if params is None:
            break  # grid exhausted
        index = store.next_index()
        trial = f"{spec.name}-{index:03d}"
        cfg = spec.trial_config(params, trial)
        if cfg.run_name != trial:
            raise SweepSpecError(f"{spec.path}: the trial's run_name resolved to {cfg.run_name!r}, not {trial!r}: "
                                 "is run_name set after ${args_no_hyphens} in the command?")
        run_dir = Path(cfg.runs_dir) / cfg.project / trial
        argv = spec.argv(params) + ([f"logging.wandb.project={project}"] if project else [])
        store.started(trial, index, params, argv, run_dir)
        started = time.time()
        view = TrialView(trial, params, "running")
        state, returncode = _run_trial(spec, view, argv, run_dir, store.logs / f"{trial}.log", views, poll_s)
        store.ended(trial, state, returncode, read_summary(run_dir), _history_of(spec, run_dir),
                    time.time() - started)
        ran += 1
        failures = failures + 1 if state == "failed" else 0
        if failures >= MAX_CONSECUTIVE_FAILURES:
            store.write_summary(spec)
            raise RuntimeError(f"{failures} trials in a row failed; see {store.logs}")
    return SweepOutcome(store.folder, ran, store.write_summary(spec))
