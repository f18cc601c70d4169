"""The sweep folder: ``sweep.yaml`` (the YAML it ran), ``trials.jsonl`` (one line when a trial starts, one
when it ends), ``logs/<trial>.log`` and the summary ``summary.csv`` / ``summary.md``, best first.

A trial that started but never ended (the sweep was interrupted) is left out of the search and run
again, under a new name; finished trials are never repeated.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from evfocus.sweeps.engine import TrialView
from evfocus.sweeps.spec import SweepSpec

ENDED_STATES = ("finished", "stopped", "failed")


class SweepStore:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.trials_file = self.folder / "trials.jsonl"
        self.logs = self.folder / "logs"

    def open(self, spec: SweepSpec) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(spec.path, self.folder / "sweep.yaml")

    def _records(self) -> list[dict[str, Any]]:
        if not self.trials_file.is_file():
            return []
        return [json.loads(line) for line in self.trials_file.read_text().splitlines() if line.strip()]

    def _append(self, record: dict[str, Any]) -> None:
        with self.trials_file.open("a") as file:
            file.write(json.dumps(record) + "\n")

    def next_index(self) -> int:
        return 1 + max((r["index"] for r in self._records() if r["event"] == "started"), default=-1)

    def started(self, trial: str, index: int, params: dict[str, Any], argv: list[str], run_dir: Path) -> None:
        self._append({"event": "started", "trial": trial, "index": index, "params": params, "argv": argv,
                      "run_dir": str(run_dir), "time": time.time()})

    def ended(self, trial: str, state: str, returncode: int, summary: dict[str, float],
              history: list[dict[str, float]], wall_s: float) -> None:
        if state not in ENDED_STATES:
            raise ValueError(f"a trial ends as one of {ENDED_STATES}, not {state!r}")
        self._append({"event": "ended", "trial": trial, "state": state, "returncode": returncode,
                      "summary": summary, "history": history, "wall_s": round(wall_s, 1)})

    def trials(self) -> list[dict[str, Any]]:
        """Ended trials in start order: the started record updated by the ended one."""
        started = {r["trial"]: r for r in self._records() if r["event"] == "started"}
        ended = {r["trial"]: r for r in self._records() if r["event"] == "ended"}
        return [{**record, **ended[name]} for name, record in started.items() if name in ended]

    def views(self) -> list[TrialView]:
        return [TrialView(t["trial"], t["params"], t["state"], t["summary"], t["history"]) for t in self.trials()]

    def write_summary(self, spec: SweepSpec) -> list[dict[str, Any]]:
        """``summary.csv`` and ``summary.md``: one row per ended trial, best first by the sweep's metric."""
        rows = summary_rows(spec, self.trials())
        columns = list(rows[0]) if rows else ["trial", "state"]
        with (self.folder / "summary.csv").open("w", newline="") as file:
            writer = csv.DictWriter(file, columns)
            writer.writeheader()
            writer.writerows(rows)
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
        (self.folder / "summary.md").write_text(f"# Sweep {spec.name} ({spec.method})\n\n" + "\n".join(lines) + "\n")
        return rows


def summary_rows(spec: SweepSpec, trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trial: name, state, the metric, the swept parameters (constants are in sweep.yaml)."""
    metric = spec.metric
    swept = [name for name, parameter in spec.filled["parameters"].items() if "value" not in parameter]
    rows = []
    for trial in trials:
        row: dict[str, Any] = {"trial": trial["trial"], "state": trial["state"]}
        if metric is not None:
            row[metric[0]] = trial["summary"].get(metric[0])
        values = {name: trial["params"].get(name) for name in swept}
        row.update({name: json.dumps(v) if isinstance(v, list | dict) else v for name, v in values.items()})
        row.update(wall_s=trial["wall_s"], run_dir=trial["run_dir"])
        rows.append(row)
    if metric is not None:
        name, goal = metric
        sign = -1.0 if goal == "maximize" else 1.0
        rows.sort(key=lambda r: (r[name] is None or not math.isfinite(r[name]), sign * (r[name] or 0.0)))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")
