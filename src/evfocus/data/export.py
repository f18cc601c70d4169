"""Render training sweeps once into litdata shards, for ``data.source: shards`` on any number of ranks.

    python -m evfocus.data.export --config configs/X.yaml [dotted.key=value ...] --out DIR_OR_s3://... \\
        --sweeps N [--workers W] [--chunk-bytes 64MB]

Sweep ``i`` (0 ≤ i < N) is simulated with the seed ``shards.shard_sweep_seed(seed, i)`` into the samples the
config's stage trains on (refocus pairs, or focal-stack crops for merge/joint), exactly as the on-the-fly
stream would draw them (``shards.rendered_sweep``); so the same config and N give the same shards, whichever
machine or number of workers renders them (litdata may store them in another order; the stream shuffles
anyway). ``DIR/evfocus_shards.json`` records the seeds, the counts and the settings the samples depend on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from evfocus.config import ConfigError, load_config, to_container
from evfocus.data.samples import Sample
from evfocus.data.shards import index_url, read_text, recipe, rendered_sweep, shard_sweep_seed, write_text
from evfocus.sim.simulator import SweepSimulator

_simulators: dict[str, SweepSimulator] = {}  # one per worker process and simulator config


def render(index: int, cfg_values: dict[str, Any]) -> Iterator[Sample]:
    """litdata's ``optimize`` function: sweep ``index`` → its samples, one litdata item each."""
    cfg = OmegaConf.create(cfg_values)
    key = json.dumps(cfg_values["sim"], sort_keys=True)
    if key not in _simulators:
        _simulators[key] = SweepSimulator(cfg.sim, "train")
    yield from rendered_sweep(cfg, _simulators[key], index)


def _check_written(out: str, expected: int) -> None:
    """litdata's index must list every sample: a worker that died, e.g. a script without a ``__main__`` guard
    re-run by a spawned process, can leave an index without chunks and no error."""
    written = sum(chunk["chunk_size"] for chunk in json.loads(read_text(f"{out.rstrip('/')}/index.json"))["chunks"])
    if written != expected:
        raise RuntimeError(f"{out}: litdata wrote {written} samples, expected {expected}; see the errors above")


def export(cfg: DictConfig, out: str, sweeps: int, workers: int = 1, chunk_bytes: str = "64MB") -> dict[str, Any]:
    """Render ``sweeps`` sweeps into ``out`` (a new or empty folder, or an s3:// prefix); returns the index."""
    from litdata import optimize  # shards.py sets LITDATA_DISABLE_VERSION_CHECK before litdata is imported

    if cfg.stage == "baseline":
        raise ConfigError("stage: 'baseline' trains on simulation only (data.source=shards is refused for it); "
                          "export shards with an event stage's config")
    if sweeps < 1 or workers < 1:
        raise ConfigError(f"--sweeps and --workers must be positive, got {sweeps} and {workers}")
    if not out.startswith("s3://") and Path(out).exists() and any(Path(out).iterdir()):
        raise ConfigError(f"--out {out}: not empty; shards go to a new folder")
    started = time.perf_counter()
    values = to_container(cfg)
    # spawned, not forked, workers: a fork of a process whose torch/OpenMP threads already ran can deadlock
    # on a lock one of those threads held (seen in the full test suite: the forked worker waited forever)
    optimize(fn=partial(render, cfg_values=values), inputs=list(range(sweeps)), output_dir=out,
             chunk_bytes=chunk_bytes, num_workers=workers, verbose=False, start_method="spawn")
    _check_written(out, sweeps * cfg.data.samples_per_sweep)
    index = {"format": "evfocus-shards", "version": 1, "num_sweeps": sweeps,
             "num_samples": sweeps * cfg.data.samples_per_sweep, "seed": cfg.seed,
             "sweep_seeds": [shard_sweep_seed(cfg.seed, i) for i in range(sweeps)], "recipe": recipe(cfg),
             "sim": values["sim"], "render_seconds": round(time.perf_counter() - started, 1)}
    write_text(index_url(out), json.dumps(index, indent=1))
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("overrides", nargs="*", metavar="dotted.key=value")
    parser.add_argument("--out", required=True, help="a new folder or an s3://bucket/prefix")
    parser.add_argument("--sweeps", required=True, type=int, metavar="N")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    parser.add_argument("--chunk-bytes", default="64MB", help="litdata chunk size (default 64MB)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        index = export(cfg, args.out, args.sweeps, args.workers, args.chunk_bytes)
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"wrote {index['num_samples']} samples of {index['num_sweeps']} sweeps ({index['recipe']['kind']}) to "
          f"{args.out} in {index['render_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
