"""Pre-rendered training samples as litdata shards: what a shard holds, its index, and the stream that reads it.

``python -m evfocus.data.export`` renders sweep ``i`` with the seed ``shard_sweep_seed(cfg.seed, i)`` through
``simulated.sweep_samples`` (the on-the-fly stream's own code), and writes each of its samples as one litdata
item, tagged with ``sweep_index`` and ``sample_index``. Beside litdata's chunks and ``index.json`` it writes
``evfocus_shards.json``: what was rendered (seeds, counts) and the settings a sample's content depends on, which
``data.source: shards`` checks against the run's config before training on them.

``shard_dataset`` streams them with litdata's ``StreamingDataset``: shuffled (chunk order and within chunks,
reshuffled every epoch), split between ranks (``torch.distributed``, or ``WORLD_SIZE``/``GLOBAL_RANK``) and
between each rank's loader workers, from a local folder or object storage (``s3://…``, cached locally).
litdata's ``StreamingDataLoader`` knows its position in the stream (``state_dict``); the DataModule keeps it in
the Lightning checkpoint, so a resumed run continues the stream where it stopped.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlparse

import torch
from omegaconf import DictConfig

from evfocus.config import ConfigError
from evfocus.data.samples import Sample
from evfocus.data.simulated import derive_seed, sample_kind, sweep_samples
from evfocus.sim.simulator import SweepSimulator

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # litdata asks the package index otherwise (offline)

from litdata import StreamingDataLoader, StreamingDataset  # after the environment variable above

INDEX_NAME = "evfocus_shards.json"
SHARD_STREAM = 20_000  # seed part that keeps shard sweeps apart from the training stream's and the eval sets'


def shard_sweep_seed(base_seed: int, index: int) -> int:
    return derive_seed(base_seed, SHARD_STREAM, index)


def recipe(cfg: DictConfig) -> dict[str, Any]:
    """The settings a shard sample's content and shape depend on besides the simulator's; a run must match."""
    data = cfg.data
    settings = {"kind": sample_kind(cfg), "data.crop_size": data.crop_size, "data.num_bins": data.num_bins,
                "data.efs_fine_bins": data.efs_fine_bins, "data.samples_per_sweep": data.samples_per_sweep,
                "data.flip": data.flip, "data.contrast_teacher_jitter": data.contrast_teacher_jitter,
                "model.event_response_aware": cfg.model.event_response_aware}
    if settings["kind"] == "stack":
        settings.update({"stack.max_slices": cfg.stack.max_slices, "stack.oracle_grid": cfg.stack.oracle_grid})
    return settings


def rendered_sweep(cfg: DictConfig, simulator: SweepSimulator, index: int) -> list[Sample]:
    """Sweep ``index`` of a shard set, as the export writes it: its samples, tagged with where they came from."""
    seed = shard_sweep_seed(cfg.seed, index)
    generator = torch.Generator().manual_seed(derive_seed(seed, 1))
    return [{**sample, "sweep_index": index, "sample_index": position}
            for position, sample in enumerate(sweep_samples(cfg, simulator, sample_kind(cfg), seed, generator))]


def _s3_object(url: str) -> tuple[Any, str, str]:
    import boto3  # litdata's own S3 dependency; only object storage needs it

    parsed = urlparse(url)
    return boto3.client("s3"), parsed.netloc, parsed.path.lstrip("/")


def write_text(url: str, text: str) -> None:
    """A small file in a local folder or on S3 (``s3://bucket/key``)."""
    if url.startswith("s3://"):
        client, bucket, key = _s3_object(url)
        client.put_object(Bucket=bucket, Key=key, Body=text.encode())
    else:
        with open(url, "w") as file:
            file.write(text)


def read_text(url: str) -> str:
    if url.startswith("s3://"):
        client, bucket, key = _s3_object(url)
        return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    with open(url) as file:
        return file.read()


def index_url(shards_dir: str) -> str:
    return f"{shards_dir.rstrip('/')}/{INDEX_NAME}"


def read_index(shards_dir: str) -> dict[str, Any]:
    """The export's index, or a ``ConfigError`` saying the folder holds no evfocus shards."""
    try:
        return json.loads(read_text(index_url(shards_dir)))
    except (OSError, ValueError) as error:
        raise ConfigError(f"data.shards.dir: {index_url(shards_dir)} is not readable ({error}); write shards with "
                          "`python -m evfocus.data.export --config ... --out DIR --sweeps N`") from None


def check_index(index: dict[str, Any], cfg: DictConfig, shards_dir: str) -> None:
    """Shards rendered for other settings would train on samples of the wrong kind or shape: refuse them."""
    wanted = recipe(cfg)
    mismatched = [f"{key}: shards {index['recipe'].get(key)!r}, config {value!r}"
                  for key, value in wanted.items() if index["recipe"].get(key) != value]
    if mismatched:
        raise ConfigError(f"data.shards.dir: {shards_dir} was rendered with other settings than this run's: "
                          + "; ".join(mismatched))


def shard_dataset(cfg: DictConfig) -> StreamingDataset:
    """The shards of ``data.shards.dir``, checked against the config, as a shuffled, rank-aware stream."""
    shards = cfg.data.shards
    check_index(read_index(shards.dir), cfg, shards.dir)
    return StreamingDataset(shards.dir, cache_dir=shards.cache_dir, shuffle=shards.shuffle, seed=cfg.seed,
                            max_cache_size=shards.max_cache_size)


def shard_loader(cfg: DictConfig, dataset: StreamingDataset) -> StreamingDataLoader:
    """litdata's loader: it counts what it has yielded, so its ``state_dict`` is the position in the stream."""
    return StreamingDataLoader(dataset, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers)
