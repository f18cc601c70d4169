"""End-to-end: the CLI makes a run folder; resume continues; interrupts and NaNs keep checkpoints."""

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny import tiny_overrides

from evfocus.config import load_config
from evfocus.training.callbacks import RunInterrupted
from evfocus.training.run import train

ROOT = Path(__file__).parents[1]
TRAIN = ROOT / "src" / "train.py"


def run_cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(TRAIN), *args], capture_output=True, text=True, env=env,
                          timeout=300, **kwargs)


def test_cli_fast_dev_run_writes_a_run_folder(tmp_path):
    result = run_cli(["--config", str(ROOT / "configs/quickstart.yaml"), *tiny_overrides(tmp_path),
                      "run_name=fdr", "trainer.fast_dev_run=true"])
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "evfocus" / "fdr"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["stage"] == "refocus"
    assert results["test"]["psnr"] is not None and results["baselines"]["identity"]["psnr"] is not None
    assert results["config"]["sim"]["height"] == 48 and results["seed"] == 0
    assert results["versions"]["torch"] == torch.__version__.split("+")[0] or results["versions"]["torch"]
    assert (run_dir / "config.yaml").is_file()
    assert list((run_dir / "samples").glob("*.png"))


def test_cli_reports_config_errors_without_traceback(tmp_path):
    result = run_cli(["--config", str(ROOT / "configs/quickstart.yaml"), "data.batch_sise=3"])
    assert result.returncode == 2
    assert "invalid key 'data.batch_sise'" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(["--config", str(ROOT / "configs/quickstart.yaml"), "trainer.max_epoch=3",
                      *tiny_overrides(tmp_path)])
    assert result.returncode == 2 and "max_epoch" in result.stderr


def test_print_config_shows_resolved_values():
    result = run_cli(["--config", str(ROOT / "configs/quickstart.yaml"), "--print-config", "seed=11"])
    assert result.returncode == 0 and "seed: 11" in result.stdout and "crop_size: 64" in result.stdout


def test_resume_continues_step_count_and_run_folder(tmp_path, monkeypatch):
    # 3 steps per epoch, last.ckpt refreshed every 2: the periodic saves and the epoch's end share the one file
    overrides = [*tiny_overrides(tmp_path), "run_name=resume", "trainer.max_epochs=1", "logging.wandb.enabled=false",
                 "data.train_sweeps_per_epoch=3", "checkpoint_every_n_steps=2"]
    first, objects = train(load_config(ROOT / "configs/quickstart.yaml", overrides))
    steps_per_epoch = first["global_step"]
    assert steps_per_epoch > 2 and steps_per_epoch % 2 == 1  # so the epoch ends between two periodic saves
    last = objects["run_dir"] / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == steps_per_epoch
    assert sorted(path.name for path in last.parent.glob("last*")) == ["last.ckpt"]  # no last-v1.ckpt beside it

    real_load, loads = torch.load, []

    def recording_load(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    second, objects = train(load_config(ROOT / "configs/quickstart.yaml",
                                        [*overrides, "ckpt_path=last", "trainer.max_epochs=2"]))
    monkeypatch.undo()
    # evfocus's own checks, Lightning's restore for fit and its load of the best checkpoint for test
    assert len(loads) >= 3 and all(weights_only is True for weights_only in loads), loads
    assert second["resumed_from"] == str(last)
    assert second["global_step"] == 2 * steps_per_epoch
    assert objects["run_dir"] == tmp_path / "runs" / "evfocus" / "resume"
    rows = (objects["run_dir"] / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    epochs = {row.split(",")[header.index("epoch")] for row in rows[1:]}
    assert "1" in epochs  # the epoch count continues (CSVLogger rewrites metrics.csv on resume)


def test_sigint_saves_a_checkpoint_before_exiting(tmp_path):
    args = ["--config", str(ROOT / "configs/quickstart.yaml"), *tiny_overrides(tmp_path), "run_name=sig",
            "data.train_sweeps_per_epoch=400", "trainer.max_epochs=1", "logging.wandb.enabled=false",
            "checkpoint_every_n_steps=0", "logging.image_every_n_steps=0", "data.num_workers=1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, str(TRAIN), *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    metrics = tmp_path / "runs" / "evfocus" / "sig" / "metrics.csv"
    deadline = time.time() + 180
    while time.time() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) > 3):
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-3000:]
    checkpoint = tmp_path / "runs" / "evfocus" / "sig" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file(), output[-3000:]
    assert torch.load(checkpoint, weights_only=True)["global_step"] > 0


def train_steps(metrics_csv: Path) -> list[int]:
    """The step of every training-loss row of a run's metrics.csv, in file order."""
    with metrics_csv.open(newline="") as file:
        return [int(row["step"]) for row in csv.DictReader(file) if row.get("train/loss")]


def test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    overrides = [*tiny_overrides(tmp_path), "logging.wandb.enabled=false", "logging.image_every_n_steps=0",
                 "data.train_sweeps_per_epoch=15", "trainer.max_epochs=2"]
    uninterrupted, _ = train(load_config(ROOT / "configs/quickstart.yaml", [*overrides, "run_name=whole"]))
    total_steps = uninterrupted["global_step"]

    run_dir = tmp_path / "runs" / "evfocus" / "term"
    last = run_dir / "checkpoints" / "last.ckpt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, str(TRAIN), "--config", str(ROOT / "configs/quickstart.yaml"),
                                *overrides, "run_name=term", "checkpoint_every_n_steps=2"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None and not last.is_file():  # step 2 reached
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output[-3000:]
    assert "terminated (SIGTERM)" in output and "ckpt_path=last" in output
    interrupted_step = torch.load(last, weights_only=True)["global_step"]
    assert 2 <= interrupted_step < total_steps, output[-3000:]

    resumed, _ = train(load_config(ROOT / "configs/quickstart.yaml", [*overrides, "run_name=term", "ckpt_path=last"]))
    assert resumed["global_step"] == total_steps and resumed["epochs"] == uninterrupted["epochs"]
    assert sorted(train_steps(run_dir / "metrics.csv")) == list(range(total_steps))  # each step exactly once


def test_ctrl_c_after_the_last_training_batch_acts_at_the_first_press(tmp_path, monkeypatch):
    """One Ctrl-C during the epoch-end validation stops the run there (before, it was ignored until a next
    training batch, so in the last epoch the run went on to test and finished)."""
    from evfocus.training.refocus_module import RefocusModule

    overrides = [*tiny_overrides(tmp_path), "run_name=ctrlc", "logging.wandb.enabled=false", "trainer.max_epochs=1"]
    presses = []

    def press_ctrl_c_once(module):
        if not module.trainer.sanity_checking and not presses:
            presses.append(module.global_step)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RefocusModule, "on_validation_start", press_ctrl_c_once, raising=False)
    with pytest.raises(RunInterrupted, match="checkpoint saved"):
        train(load_config(ROOT / "configs/quickstart.yaml", overrides))
    run_dir = tmp_path / "runs" / "evfocus" / "ctrlc"
    steps_per_epoch = presses[0]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == steps_per_epoch
    assert not (run_dir / "results.json").exists()  # stopped before the test

    monkeypatch.undo()
    resumed, _ = train(load_config(ROOT / "configs/quickstart.yaml",
                                   [*overrides, "ckpt_path=last", "trainer.max_epochs=2"]))
    assert resumed["global_step"] == 2 * steps_per_epoch
    assert sorted(train_steps(run_dir / "metrics.csv")) == list(range(2 * steps_per_epoch))


def test_sigterm_during_test_leaves_last_ckpt_as_fitting_left_it(tmp_path, monkeypatch):
    """The test loads the best checkpoint's weights: an interrupt there must not save them as last.ckpt."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from evfocus.training.base_module import StageModule

    overrides = [*tiny_overrides(tmp_path), "run_name=testterm", "logging.wandb.enabled=false",
                 "trainer.max_epochs=1", "data.test_sweeps=2"]
    last = tmp_path / "runs" / "evfocus" / "testterm" / "checkpoints" / "last.ckpt"
    real_on_test_start, digests = StageModule.on_test_start, []

    def sigterm_at_test_start(module):
        digests.append(hashlib.sha256(last.read_bytes()).hexdigest())
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "Lightning's handler is not set"
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning stops at the next test batch boundary
        real_on_test_start(module)

    monkeypatch.setattr(StageModule, "on_test_start", sigterm_at_test_start)
    with pytest.raises(SIGTERMException):
        train(load_config(ROOT / "configs/quickstart.yaml", overrides))
    assert hashlib.sha256(last.read_bytes()).hexdigest() == digests[0]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    overrides = [*tiny_overrides(tmp_path), "run_name=nan", "trainer.max_epochs=1",
                 "logging.wandb.enabled=false", "checkpoint_every_n_steps=1"]
    from evfocus.training import refocus_module
    from evfocus.training.callbacks import NonFiniteLossError

    real_step = refocus_module.RefocusModule.training_step

    def poisoned_step(self, batch, batch_idx):
        if self.global_step >= 1:
            batch = {**batch, "target": batch["target"] * float("nan")}
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(refocus_module.RefocusModule, "training_step", poisoned_step)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        train(load_config(ROOT / "configs/quickstart.yaml", overrides))
    checkpoint = torch.load(tmp_path / "runs/evfocus/nan/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_metrics_csv_keeps_history_across_resume(tmp_path):
    import csv

    def read(path: Path) -> list[dict[str, str]]:
        with path.open(newline="") as file:
            return list(csv.DictReader(file))

    def train_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [row for row in rows if row.get("train/loss")]

    overrides = [*tiny_overrides(tmp_path), "run_name=history", "trainer.max_epochs=1", "logging.wandb.enabled=false"]
    first, objects = train(load_config(ROOT / "configs/quickstart.yaml", overrides))
    metrics = objects["run_dir"] / "metrics.csv"
    first_rows = read(metrics)
    steps_per_epoch = first["global_step"]
    assert {int(row["step"]) for row in train_rows(first_rows)} == set(range(steps_per_epoch))

    second, _ = train(load_config(ROOT / "configs/quickstart.yaml",
                                  [*overrides, "ckpt_path=last", "trainer.max_epochs=2"]))
    assert second["global_step"] == 2 * steps_per_epoch
    rows = read(metrics)
    # the first session's rows are still there, unchanged and first (metrics.csv was rewritten on resume before)
    assert [{k: v for k, v in row.items() if v} for row in rows[:len(first_rows)]] == \
        [{k: v for k, v in row.items() if v} for row in first_rows]
    assert [row["step"] for row in rows if row.get("resumed") == "1"] == [str(steps_per_epoch)]
    # training-step rows of both epochs: steps 0..2E-1, each once, epochs 0 and 1
    steps = [int(row["step"]) for row in train_rows(rows)]
    assert sorted(steps) == list(range(2 * steps_per_epoch))
    assert {row["epoch"] for row in train_rows(rows)} == {"0", "1"}
    assert sum(1 for row in rows if row.get("val/psnr")) == 2  # one validation per epoch
