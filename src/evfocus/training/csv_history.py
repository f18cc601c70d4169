"""A CSV logger whose ``metrics.csv`` keeps its history when a run resumes from a checkpoint.

Lightning 2.6's ``CSVLogger`` deletes an existing ``metrics.csv`` when its writer starts
(``lightning.fabric.loggers.csv_logs._ExperimentWriter._check_log_dir_exists``), so a
``ckpt_path=last`` resume into the same run folder would lose every row of the earlier sessions.

``HistoryCSVLogger`` keeps them when resuming: rows up to the checkpoint's step are kept, rows
logged after it are dropped (that training was lost with the process and is redone by the resumed
session, so keeping them would give two values for one step), and one marker row
``step=<checkpoint step>, resumed=1`` records where each resumed session starts. The new rows are
appended by Lightning's own writer. Without a checkpoint (a fresh run) it behaves as ``CSVLogger``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from evfocus.checkpoints import load_checkpoint_file

RESUMED_KEY = "resumed"


def checkpoint_log_step(checkpoint: str | os.PathLike) -> int:
    """The logger step a checkpoint resumes at (Lightning logs with ``_batches_that_stepped``)."""
    state = load_checkpoint_file(checkpoint, mmap=True)  # mapped: reads only the few bytes needed
    try:
        return int(state["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"])
    except (KeyError, TypeError):
        return int(state["global_step"])


def _row_step(row: dict[str, str]) -> float | None:
    try:
        return float(row.get("step") or "")
    except ValueError:
        return None


class _HistoryWriter(ExperimentWriter):
    """Lightning's writer, except that a resumed session keeps the existing ``metrics.csv``."""

    def __init__(self, log_dir: str, resume_step: int | None) -> None:
        self._resume_step = resume_step
        super().__init__(log_dir=log_dir)

    @override
    def _check_log_dir_exists(self) -> None:
        if self._resume_step is None or not self._fs.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()  # a fresh run: Lightning's behaviour (an old file is deleted)
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
            keys = list(reader.fieldnames or [])
        kept = [row for row in rows if (step := _row_step(row)) is None or step <= self._resume_step]
        kept.append({"step": str(self._resume_step), RESUMED_KEY: "1"})
        # Seeding the writer's keys with the file's header makes Lightning append to it (and widen the
        # header when new metrics appear) instead of starting a new file.
        self.metrics_keys = sorted({*keys, "step", RESUMED_KEY})
        with self._fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)
        dropped = len(rows) - (len(kept) - 1)
        rank_zero_info(f"{self.metrics_file_path}: resuming at step {self._resume_step}, kept {len(kept) - 1} "
                       f"earlier rows" + (f", dropped {dropped} logged after the checkpoint" if dropped else ""))


class HistoryCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``<save_dir>/metrics.csv`` that keeps the earlier rows when ``resume_from`` is given."""

    def __init__(self, save_dir: str | Path, resume_from: str | os.PathLike | None = None,
                 flush_logs_every_n_steps: int = 100) -> None:
        super().__init__(save_dir=str(save_dir), name="", version="", flush_logs_every_n_steps=flush_logs_every_n_steps)
        self._resume_step = None if resume_from is None else checkpoint_log_step(resume_from)

    @property
    @override
    @rank_zero_experiment
    def experiment(self) -> _HistoryWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _HistoryWriter(log_dir=self.log_dir, resume_step=self._resume_step)
        return self._experiment
