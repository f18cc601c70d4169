"""What a finished (or running) trial left in its run folder, under the names wandb's summary uses.

``metrics.csv`` gives the history (one dict per logged row) and the last value of every metric, as
wandb's run summary holds it; ``results.json`` adds the test scores under the names the stage logs
them (``test/aif/pipeline/psnr``, ``test/refocus/psnr``, ...), so a sweep's ``metric.name`` means the
same offline and online, and a run that logs no history (``trainer.fast_dev_run``) still reports.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from evfocus.training.aif_eval import flat_scalars

INDEX_COLUMNS = ("step", "epoch")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    """Every row of ``metrics.csv`` with its numeric values ([] before the first row is written)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        rows = [{k: _number(v) for k, v in row.items() if k and v not in (None, "")} for row in csv.DictReader(file)]
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def read_results(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def results_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The test scores of ``results.json`` under the names the stage logged them."""
    refocus = results.get("refocus") or {}
    return {**flat_scalars(results.get("aif") or {}, "test"),
            **flat_scalars({"refocus": refocus.get("model") or {},
                            "refocus_identity": refocus.get("identity") or {}}, "test")}


def read_summary(run_dir: str | Path) -> dict[str, float]:
    """The last value of every logged metric, then the test scores of ``results.json`` (if written)."""
    summary: dict[str, float] = {}
    for row in read_history(run_dir):
        summary.update({k: v for k, v in row.items() if k not in INDEX_COLUMNS})
    results = read_results(run_dir)
    if results is not None:
        summary.update(results_metrics(results))
    return summary
