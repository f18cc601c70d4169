"""HistoryCSVLogger: metrics.csv keeps earlier sessions on resume, drops rows logged after the checkpoint."""

import csv
from pathlib import Path

import torch

from evfocus.training.csv_history import HistoryCSVLogger, checkpoint_log_step


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def old_session(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.csv").write_text("epoch,step,train/loss\n0,0,1.0\n0,1,0.9\n0,2,0.8\n0,3,0.7\n")
    checkpoint = run_dir / "last.ckpt"
    torch.save({"global_step": 2, "loops": {"fit_loop": {"epoch_loop.state_dict": {"_batches_that_stepped": 2}}}},
               checkpoint)
    return checkpoint


def test_resume_keeps_rows_up_to_the_checkpoint_and_appends(tmp_path):
    checkpoint = old_session(tmp_path)
    assert checkpoint_log_step(checkpoint) == 2
    logger = HistoryCSVLogger(tmp_path, resume_from=checkpoint)
    logger.log_metrics({"train/loss": 0.5, "val/psnr": 20.0}, step=3)  # a new metric widens the header
    logger.save()
    rows = read(tmp_path / "metrics.csv")
    assert [(row["step"], row["train/loss"], row["resumed"], row["val/psnr"]) for row in rows] == [
        ("0", "1.0", "", ""), ("1", "0.9", "", ""), ("2", "0.8", "", ""),  # step 3 was after the checkpoint
        ("2", "", "1", ""), ("3", "0.5", "", "20.0"),
    ]


def test_fresh_run_starts_a_new_file_like_lightning(tmp_path):
    old_session(tmp_path)
    logger = HistoryCSVLogger(tmp_path)
    logger.log_metrics({"train/loss": 0.5}, step=0)
    logger.save()
    assert [(row["step"], row["train/loss"]) for row in read(tmp_path / "metrics.csv")] == [("0", "0.5")]


def test_global_step_fallback(tmp_path):
    torch.save({"global_step": 7}, tmp_path / "c.ckpt")
    assert checkpoint_log_step(tmp_path / "c.ckpt") == 7
