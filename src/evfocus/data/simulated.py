"""Simulated sweeps as data: an endless-feeling training stream and a fixed, cached eval set.

Training seeds are derived from (base seed, rank, worker, epoch, sweep index), so no two
workers or ranks repeat each other, every epoch sees new sweeps, and a resumed run picks up
the data stream where the checkpoint's epoch left it. Validation and test sweeps come from
fixed seeds and held-out textures, and are cached on disk after their first generation.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from evfocus.data.baseline_samples import UnpairedSharpPool, baseline_samples
from evfocus.data.contrast_fields import teach_contrast
from evfocus.data.samples import Sample, random_pairs, refocus_samples
from evfocus.data.stack_samples import stack_samples, sweep_oracle_frames
from evfocus.data.sweep_cache import load_sweeps, save_sweeps
from evfocus.sim.simulator import SweepSimulator
from evfocus.sweep import Sweep

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SampleKind = Literal["refocus", "stack", "baseline"]


def sample_kind(cfg: DictConfig) -> SampleKind:
    """What a stage trains on: refocus pairs (refocus), focal-stack crops (merge, joint), frame and
    all-in-focus crops (baseline); the stream and the shard export both ask here."""
    return cfg.stage if cfg.stage in ("refocus", "baseline") else "stack"


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integer parts (NumPy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class SimulatedRefocusStream(IterableDataset):
    """Training samples from freshly simulated sweeps, shuffled through a small buffer.

    ``kind="refocus"``: (frame, events t0→t, frame at t) pairs; ``kind="stack"``: focal-stack crops
    for the merge and joint stages (``stack_samples``); ``kind="baseline"``: crops of the frame and its
    all-in-focus image for the image-only baselines (``baseline_samples``; sweeps simulated without events).

    ``len()`` is the exact number of samples one rank yields per epoch (rounded up per worker to
    whole batches), so progress bars and schedulers know the epoch length.
    """

    def __init__(self, cfg: DictConfig, seed: int, world_size: int = 1, kind: SampleKind = "refocus") -> None:
        self.cfg = cfg
        self.kind = kind
        self.seed = seed
        self.world_size = world_size
        self.num_workers = max(1, cfg.data.num_workers)
        self.simulator: SweepSimulator | None = None
        self.sharp_pool: UnpairedSharpPool | None = None  # kind "baseline": per iteration (per worker)
        # Shared memory, so persistent workers see the epoch the trainer is in: (epoch, batches done
        # in it when the epoch started — non-zero only when resuming mid-epoch, which then draws
        # fresh sweeps instead of replaying the epoch's first ones).
        self.position = torch.zeros(2, dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int, batches_done: int = 0) -> None:
        self.position[0] = epoch
        self.position[1] = batches_done

    @property
    def samples_per_worker(self) -> int:
        data = self.cfg.data
        sweeps = math.ceil(data.train_sweeps_per_epoch / (self.world_size * self.num_workers))
        return data.batch_size * math.ceil(sweeps * data.samples_per_sweep / data.batch_size)

    def __len__(self) -> int:
        return self.samples_per_worker * self.num_workers

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rank, _ = _rank_and_world()
        epoch, batches_done = (int(v) for v in self.position)
        if self.simulator is None:
            self.simulator = SweepSimulator(self.cfg.sim, "train")
        stream = (self.seed, rank, worker, epoch, batches_done)
        generator = torch.Generator().manual_seed(derive_seed(*stream))
        if self.kind == "baseline":
            self.sharp_pool = UnpairedSharpPool(self.cfg.data.shuffle_buffer, generator)
        buffer: list[Sample] = []
        emitted, sweep_index = 0, 0
        while emitted < self.samples_per_worker:
            while len(buffer) < self.cfg.data.shuffle_buffer:
                samples = sweep_samples(self.cfg, self.simulator, self.kind, derive_seed(*stream, sweep_index),
                                        generator)
                buffer.extend(samples if self.sharp_pool is None else self.sharp_pool.attach(samples))
                sweep_index += 1
            yield buffer.pop(int(torch.randint(0, len(buffer), (), generator=generator)))
            emitted += 1


def sweep_samples(cfg: DictConfig, simulator: SweepSimulator, kind: SampleKind, sweep_seed: int,
                  generator: torch.Generator) -> list[Sample]:
    """One simulated sweep's training samples: the on-the-fly stream and the shard export
    (``data.export``) both call this, so a shard holds exactly what the stream would have drawn."""
    data = cfg.data
    if kind == "baseline":  # image-only: no events, so no event contrast to teach
        sweep = simulator.simulate(sweep_seed, events=False)
        return baseline_samples(sweep, data.samples_per_sweep, generator, data.crop_size, data.flip)
    if kind == "stack":
        sweep = simulator.simulate(sweep_seed, sweep_oracle_frames)
        samples = stack_samples(sweep, data.samples_per_sweep, data.efs_fine_bins, generator, cfg.stack.max_slices,
                                cfg.stack.oracle_grid, crop_size=data.crop_size, flip=data.flip,
                                response_aware=cfg.model.event_response_aware)
    else:
        pairs = random_pairs(generator, cfg.sim.num_frames, data.samples_per_sweep)
        sweep = simulator.simulate(sweep_seed, [i for pair in pairs for i in pair])
        samples = refocus_samples(sweep, pairs, data.num_bins, data.efs_fine_bins, cfg.sim.image_noise_std,
                                  generator, crop_size=data.crop_size, flip=data.flip,
                                  response_aware=cfg.model.event_response_aware)
    jitter = data.contrast_teacher_jitter
    return samples if jitter is None else teach_contrast(samples, jitter, generator)


def eval_sweep_seed(base_seed: int, split: str, index: int) -> int:
    return derive_seed(base_seed, 10_000 + SPLIT_CODES[split], index)


def eval_pairs(base_seed: int, split: str, index: int, num_frames: int, count: int) -> list[tuple[int, int]]:
    generator = torch.Generator().manual_seed(eval_sweep_seed(base_seed, split, index) ^ 0x5EED)
    return random_pairs(generator, num_frames, count)


def eval_cache_path(cfg: DictConfig, split: str, base_seed: int) -> Path:
    """Cache file named by a hash of everything that changes the sweeps."""
    recipe = {"sim": OmegaConf.to_container(cfg.sim, resolve=True), "split": split, "seed": base_seed,
              "count": cfg.data[f"{split}_sweeps"], "pairs": cfg.data.eval_pairs_per_sweep, "version": 3}
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cfg.data.cache_dir) / f"{split}-{digest}.pt"


def build_eval_sweeps(cfg: DictConfig, split: str, base_seed: int) -> list[Sweep]:
    """The fixed val/test sweeps: loaded from the cache, or simulated once and cached."""
    path = eval_cache_path(cfg, split, base_seed)
    if path.is_file():
        return load_sweeps(path)
    simulator = SweepSimulator(cfg.sim, split)
    sweeps = []
    for index in range(cfg.data[f"{split}_sweeps"]):
        pairs = eval_pairs(base_seed, split, index, cfg.sim.num_frames, cfg.data.eval_pairs_per_sweep)
        sweeps.append(simulator.simulate(eval_sweep_seed(base_seed, split, index),
                                         [i for pair in pairs for i in pair]))
    save_sweeps(path, sweeps)
    return sweeps


class EvalRefocusSet(Dataset):
    """Deterministic full-frame refocus samples of the fixed sweeps (no crop, no flip)."""

    def __init__(self, cfg: DictConfig, sweeps: list[Sweep], split: str, base_seed: int) -> None:
        data = cfg.data
        self.samples: list[dict[str, Any]] = []
        for index, sweep in enumerate(sweeps):
            pairs = eval_pairs(base_seed, split, index, cfg.sim.num_frames, data.eval_pairs_per_sweep)
            generator = torch.Generator().manual_seed(eval_sweep_seed(base_seed, split, index))
            self.samples.extend(refocus_samples(sweep, pairs, data.num_bins, data.efs_fine_bins,
                                                cfg.sim.image_noise_std, generator,
                                                response_aware=cfg.model.event_response_aware))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.samples[index]
