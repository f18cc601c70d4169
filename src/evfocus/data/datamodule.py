"""LightningDataModule: the training stream (simulated on the fly, or pre-rendered shards: ``data.source``),
fixed simulated val/test sets, real captures for test and predict (``data.captures``)."""

from __future__ import annotations

import signal
from typing import Any

import lightning as L
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from evfocus.config import ConfigError
from evfocus.data.capture_set import CaptureSet
from evfocus.data.shards import StreamingDataLoader, StreamingDataset, shard_dataset, shard_loader
from evfocus.data.simulated import EvalRefocusSet, SimulatedRefocusStream, build_eval_sweeps, sample_kind
from evfocus.sweep import Sweep


def ignore_sigint_in_worker(worker_id: int) -> None:
    """Ctrl-C reaches the whole process group; workers must leave it to the trainer's checkpointing
    handler instead of dying and turning a clean interrupt into a DataLoader crash."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _single(batch: list[Any]) -> Any:
    """Whole sweeps go one at a time, uncollated: the pipeline takes a ``Sweep``."""
    return batch[0]


class SimulatedSweepDataModule(L.LightningDataModule):
    """Streams freshly simulated samples (or shards); validates/tests on cached held-out sweeps.

    Training samples are refocus pairs (stage ``refocus``), focal-stack crops (``merge``, ``joint``) or
    frame and all-in-focus crops (``baseline``). Validation: refocus pairs for the refocus stage, whole
    sweeps through the AIF pipeline for the others. Test: [refocus pairs, whole sweeps] and, with
    ``data.captures.root``, the captures as a third loader; the image-only baselines, which refocus
    nothing, get the whole sweeps alone. Predict: the captures alone.

    With ``data.source: shards`` the position in the shard stream (litdata's loader state) is part of the
    Lightning checkpoint (``state_dict``/``load_state_dict``, which Lightning calls on save and restore) and is
    given back to the loader when it is made, so a resumed run continues the stream, at an epoch's end too.
    """

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_set: SimulatedRefocusStream | StreamingDataset | None = None
        self.train_loader: StreamingDataLoader | None = None
        self.shard_position: dict[str, Any] | None = None  # restored from a checkpoint, for the next loader
        self.eval_sweeps: dict[str, list[Sweep]] = {}
        self.eval_sets: dict[str, EvalRefocusSet] = {}
        self.capture_set: CaptureSet | None = None

    def prepare_data(self) -> None:
        """Generate and cache the fixed eval sweeps once (rank 0), before any rank loads them."""
        for split in ("val", "test"):
            build_eval_sweeps(self.cfg, split, self.cfg.seed)

    def setup(self, stage: str | None = None) -> None:
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if stage in ("fit", None) and self.train_set is None:
            self.train_set = (shard_dataset(self.cfg) if self.cfg.data.source == "shards" else
                              SimulatedRefocusStream(self.cfg, self.cfg.seed, world_size, kind=sample_kind(self.cfg)))
        splits = {"fit": ("val",), "validate": ("val",), "test": ("test",), None: ("val", "test")}
        for split in splits.get(stage, ()):
            if split not in self.eval_sets:
                self.eval_sweeps[split] = build_eval_sweeps(self.cfg, split, self.cfg.seed)
                self.eval_sets[split] = EvalRefocusSet(self.cfg, self.eval_sweeps[split], split, self.cfg.seed)
        captures = self.cfg.data.captures
        if stage in ("test", "predict", None) and captures.root and self.capture_set is None:
            self.capture_set = CaptureSet(list(captures.root), captures.on_error, captures.event_format)

    def set_epoch(self, epoch: int, batches_done: int = 0) -> None:
        """The simulated stream's seeds follow the trainer's epoch; litdata's loader counts its own."""
        if isinstance(self.train_set, SimulatedRefocusStream):
            self.train_set.set_epoch(epoch, batches_done)

    def state_dict(self) -> dict[str, Any]:
        return {"shards": self.train_loader.state_dict()} if self.train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.shard_position = state_dict.get("shards")

    def train_dataloader(self) -> DataLoader:
        data = self.cfg.data
        if isinstance(self.train_set, StreamingDataset):
            self.train_loader = shard_loader(self.cfg, self.train_set)
            if self.shard_position is not None:
                self.train_loader.load_state_dict(self.shard_position)
                self.shard_position = None
            return self.train_loader
        return DataLoader(self.train_set, batch_size=data.batch_size, num_workers=data.num_workers,
                          worker_init_fn=ignore_sigint_in_worker,
                          persistent_workers=data.persistent_workers and data.num_workers > 0)

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self.eval_sets[split], batch_size=self.cfg.data.batch_size, shuffle=False)

    def _sweep_loader(self, split: str, limit: int | None = None) -> DataLoader:
        sweeps = self.eval_sweeps[split][:limit]
        return DataLoader(sweeps, batch_size=1, shuffle=False, collate_fn=_single)  # a list is a map-style dataset

    def val_dataloader(self) -> DataLoader:
        if self.cfg.stage == "refocus":
            return self._eval_loader("val")
        return self._sweep_loader("val")

    def _capture_loader(self) -> DataLoader:
        return DataLoader(self.capture_set, batch_size=1, shuffle=False, collate_fn=_single)

    def test_dataloader(self) -> list[DataLoader]:
        sweeps = self._sweep_loader("test", self.cfg.pipeline.eval_sweeps)
        if self.cfg.stage == "baseline":
            return [sweeps]
        return [self._eval_loader("test"), sweeps] + ([self._capture_loader()] if self.capture_set is not None else [])

    def predict_dataloader(self) -> DataLoader:
        if self.capture_set is None:
            raise ConfigError("predict runs on real captures: set data.captures.root (capture folders or files)")
        return self._capture_loader()
