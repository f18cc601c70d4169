"""The depth head's data: fusion features of a trained pipeline on simulated sweeps, cached in the run folder.

The head (``models.depth_head``) learns how to mix the two depths from focus of *one* pipeline, so its inputs
are that pipeline's outputs: every sweep is simulated, run through the frozen refocus and merge nets of the
weights file, and reduced to ``pipeline.depth_fusion.fusion_features`` plus the true depth. That is ~1 s per
128-px sweep on a CPU core, far more than the head's step, so the features are computed once, in chunks
written to ``<run>/features/`` (a chunk is written whole or not at all: a stopped run keeps every finished
chunk and computes only the missing ones). Training sweeps come from the weights' own simulator ranges and
training photographs; validation sweeps are those of ``benchmarks/score_sweeps.py --sim-split val`` at each
sensor sensitivity, so the checkpoint is chosen on the scenes every other choice of the pipeline was.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from evfocus.checkpoints import StageCheckpoint, load_nets
from evfocus.data.simulated import derive_seed, eval_sweep_seed
from evfocus.pipeline.aif import AIFPipeline
from evfocus.pipeline.depth_fusion import fusion_features
from evfocus.pipeline.settings import pipeline_config
from evfocus.sim.simulator import SweepSimulator

TRAIN_SEED_CODE = 30_000  # training sweeps' seeds: derive_seed(seed, this, index), apart from the stages' streams
CHUNK_SWEEPS = 32


@dataclass(frozen=True)
class SweepSet:
    """``count`` sweeps of one split, at the weights' sensor range (``k1_scale`` None) or at one sensitivity."""

    name: str
    split: str
    count: int
    k1_scale: float | None = None

    def simulator(self, cfg: DictConfig) -> SweepSimulator:
        sim_cfg = cfg.sim
        if self.k1_scale is not None:
            sim_cfg = OmegaConf.merge(sim_cfg, {"voltmeter": {"k1_scale_range": [self.k1_scale, self.k1_scale]}})
        return SweepSimulator(sim_cfg, self.split)

    def seed(self, base_seed: int, index: int) -> int:
        if self.split == "train":
            return derive_seed(base_seed, TRAIN_SEED_CODE, index)
        return eval_sweep_seed(base_seed, self.split, index)


class _PipelineFeatures(Dataset):
    """Sweep ``index`` of a ``SweepSet`` → its fusion features (fp16), true depth and the sweep's diopter range."""

    def __init__(self, checkpoint: StageCheckpoint, sweeps: SweepSet, indices: Sequence[int]) -> None:
        self.checkpoint = checkpoint
        self.sweeps = sweeps
        self.indices = list(indices)
        self.nets: tuple | None = None
        self.simulator: SweepSimulator | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @torch.no_grad()
    def __getitem__(self, item: int) -> dict[str, Tensor]:
        cfg = self.checkpoint.cfg
        if self.nets is None:  # built in the worker, once
            self.nets = load_nets(self.checkpoint)
            self.simulator = self.sweeps.simulator(cfg)
        sweep = self.simulator.simulate(self.sweeps.seed(cfg.seed, self.indices[item]))
        result = AIFPipeline(*self.nets, pipeline_config(cfg, sweep, "cpu"))(sweep, "cpu")
        features = fusion_features(result.stack, result.weights, result.slice_times_us, sweep.schedule,
                                   result.depth_confidence, result.aif)
        schedule = sweep.schedule
        return {"features": features.half(), "depth_m": sweep.depth_m.float(),
                "near_diopter": torch.tensor(schedule.near_diopter, dtype=torch.float32),
                "far_diopter": torch.tensor(schedule.far_diopter, dtype=torch.float32)}


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def cached_features(checkpoint: StageCheckpoint, sweeps: SweepSet, folder: Path, workers: int) -> dict[str, Tensor]:
    """Every sweep's features of ``sweeps``, computed in chunks of ``CHUNK_SWEEPS`` under ``folder`` (finished
    chunks are read back, not recomputed) and concatenated."""
    folder.mkdir(parents=True, exist_ok=True)
    chunks = []
    for start in range(0, sweeps.count, CHUNK_SWEEPS):
        indices = range(start, min(start + CHUNK_SWEEPS, sweeps.count))
        path = folder / f"{sweeps.name}-{start:05d}-{indices[-1]:05d}.pt"
        if not path.is_file():
            loader = DataLoader(_PipelineFeatures(checkpoint, sweeps, indices), batch_size=len(indices),
                                num_workers=workers, worker_init_fn=_one_thread if workers else None)
            chunk = next(iter(loader))
            partial = path.with_suffix(".partial")
            torch.save(chunk, partial)
            os.replace(partial, path)
            print(f"depth head features: {sweeps.name} sweeps {start}-{indices[-1]} of {sweeps.count} -> {path}",
                  file=sys.stderr, flush=True)
        chunks.append(torch.load(path, weights_only=True))
    return {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}


def as_dataset(features: dict[str, Tensor]) -> TensorDataset:
    return TensorDataset(features["features"], features["depth_m"], features["near_diopter"], features["far_diopter"])


class DepthFeatureData(L.LightningDataModule):
    """Training sweeps' features (shuffled, whole sweeps per batch) and each validation set's (one loader each)."""

    def __init__(self, checkpoint: StageCheckpoint, train: SweepSet, val: Sequence[SweepSet], folder: Path,
                 batch_size: int, workers: int) -> None:
        super().__init__()
        self.checkpoint, self.train_set, self.val_sets = checkpoint, train, list(val)
        self.folder, self.batch_size, self.workers = folder, batch_size, workers
        self.train_data: TensorDataset | None = None
        self.val_data: list[TensorDataset] = []

    def setup(self, stage: str) -> None:
        if self.train_data is None:
            self.train_data = as_dataset(cached_features(self.checkpoint, self.train_set, self.folder, self.workers))
            self.val_data = [as_dataset(cached_features(self.checkpoint, sweeps, self.folder, self.workers))
                             for sweeps in self.val_sets]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_data, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(data, batch_size=self.batch_size) for data in self.val_data]
