"""Callbacks that keep long runs safe and visible: interrupts, data epochs, image panels."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torchvision.utils import save_image

from evfocus.visualize import refocus_panel


class RunInterrupted(Exception):
    """Raised after Ctrl-C once the interrupt checkpoint is safely written.

    A plain ``Exception`` on purpose: Lightning turns any ``KeyboardInterrupt`` into ``exit(1)``,
    which would hide from the CLI that the run stopped cleanly and can be resumed.
    """


class GracefulInterrupt(L.Callback):
    """Ctrl-C or SIGTERM while fitting → write ``last.ckpt`` at the next batch boundary, then stop.

    SIGINT is turned into a flag checked after each training batch, at each epoch's end (a Ctrl-C
    during the epoch-end validation acts once it is done) and at the end of fitting; a second Ctrl-C
    aborts at once. SIGTERM is already turned into ``SIGTERMException`` between batches by Lightning.
    Either way the checkpoint is written from a consistent state (no half-applied optimizer step).
    Only fitting writes it: ``trainer.test`` runs on the best checkpoint's weights, which must not
    replace the last ones.
    """

    def __init__(self, checkpoint_path: Path) -> None:
        self.checkpoint_path = checkpoint_path
        self._interrupted = False
        self._previous_handler: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True
        print("\nInterrupt received: saving a checkpoint at the end of this batch (Ctrl-C again to abort).")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stop_if_interrupted(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_interrupted(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_interrupted(trainer)
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING:
            self._save(trainer)
        self._restore()

    def _stop_if_interrupted(self, trainer: L.Trainer) -> None:
        if self._interrupted:
            self._save(trainer)
            raise RunInterrupted(f"interrupted; checkpoint saved to {self.checkpoint_path}")

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # full state: resumable
        print(f"Checkpoint saved to {self.checkpoint_path} (global step {trainer.global_step}).")

    def _restore(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf: the run stops and the last good checkpoint is kept untouched."""


class DataEpoch(L.Callback):
    """Tell the training stream which epoch (and how far into it) the trainer is, for its seeds."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            batches_done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            datamodule.set_epoch(trainer.current_epoch, batches_done)


class ImagePanels(L.Callback):
    """Every N training steps (and on the first test batch): input | events | prediction | target (no events
    for the image-only baselines); per test sweep, the panel and caption its test step returns."""

    def __init__(self, samples_dir: Path, every_n_steps: int, num_images: int) -> None:
        self.samples_dir = samples_dir
        self.every_n_steps = every_n_steps
        self.num_images = num_images

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step % self.every_n_steps == 0 and isinstance(outputs, dict) \
                and "pred" in outputs:
            self._write(trainer, f"train/step{step:07d}", batch, outputs["pred"])

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                          batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not isinstance(outputs, dict):
            return
        if "panel" in outputs and batch_idx < self.num_images:
            self._save(trainer, f"test/aif_{batch_idx:02d}", outputs["panel"], outputs["caption"])
        elif "pred" in outputs and batch_idx == 0:
            self._write(trainer, "test/panel", batch, outputs["pred"])

    @torch.no_grad()
    def _write(self, trainer: L.Trainer, name: str, batch: dict[str, torch.Tensor], pred: torch.Tensor) -> None:
        """A refocus batch (``events``, ``target``) or an image-only one (``aif``, the baselines' target)."""
        count = min(self.num_images, pred.shape[0])
        events = batch["events"][:count] if "events" in batch else None
        target = batch["target"] if "target" in batch else batch["aif"]
        panel = refocus_panel(batch["image"][:count], events, pred[:count], target[:count])
        caption = "input | events | prediction | target" if events is not None else "input | prediction | target"
        self._save(trainer, name, panel, caption)

    def _save(self, trainer: L.Trainer, name: str, panel: torch.Tensor, caption: str) -> None:
        if not trainer.is_global_zero:
            return
        path = self.samples_dir / f"{name.replace('/', '_')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(panel, path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"panels/{name.split('/')[0]}", images=[panel], caption=[caption],
                                 step=trainer.global_step)


class PeriodicLastCheckpoint(L.Callback):
    """The one writer of ``last.ckpt`` while fitting (besides an interrupt): every N optimizer steps, so a crash
    loses at most N steps of work, and at the end of every epoch after its validation, so a finished run's
    ``last.ckpt`` is its final state. (Lightning's ``ModelCheckpoint(save_last=True)`` saves "last" only when the
    best improves, and beside a ``last.ckpt`` it did not write it starts a ``last-v1.ckpt``.)"""

    def __init__(self, checkpoint_path: Path, every_n_steps: int) -> None:
        self.checkpoint_path = checkpoint_path
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0:
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # full state: resumable

    def on_train_epoch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # full state: resumable
