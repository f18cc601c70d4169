"""Training samples per second: streamed from litdata shards against simulated on the fly.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_shards.py --config configs/quickstart.yaml --sweeps 32 \\
        --workers 0 1 --repeats 3

The config's sweeps are rendered once into shards in a temporary folder (``evfocus.data.export``, its time
recorded), then, for each loader worker count, the DataModule's training loader is iterated over the same
number of samples for ``data.source=simulate`` (a fresh ``SimulatedRefocusStream``) and ``data.source=shards``
(litdata's ``StreamingDataLoader`` over the local shards), the two interleaved within each repeat so they share
the machine's load alike. The first batch (worker start-up, first sweep) is left out of the timing. Prints a
Markdown table: median samples/s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from evfocus.config import load_config
from evfocus.data.datamodule import SimulatedSweepDataModule
from evfocus.data.export import export
from evfocus.data.shards import shard_dataset
from evfocus.data.simulated import SimulatedRefocusStream


def samples_per_second(module: SimulatedSweepDataModule, samples: int) -> float:
    """Iterate the training loader for ``samples`` samples after its first batch; samples per second."""
    loader = iter(module.train_dataloader())
    next(loader)  # worker start-up and the first sweep
    started, seen = time.perf_counter(), 0
    while seen < samples:
        seen += len(next(loader)["image"])
    seconds = time.perf_counter() - started
    del loader  # stops the workers (not persistent: see main), outside the timing
    return seen / seconds


def loader_module(cfg, source: str) -> SimulatedSweepDataModule:
    """A DataModule with only its training set made (``setup("fit")`` would also simulate the val sweeps)."""
    module = SimulatedSweepDataModule(cfg)
    kind = "refocus" if cfg.stage == "refocus" else "stack"
    module.train_set = shard_dataset(cfg) if source == "shards" else SimulatedRefocusStream(cfg, cfg.seed, kind=kind)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/quickstart.yaml"))
    parser.add_argument("--sweeps", type=int, default=32, help="sweeps rendered into shards")
    parser.add_argument("--samples", type=int, default=96, help="samples timed per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "shards")
        base = load_config(args.config, [f"data.cache_dir={tmp}/cache"])
        index = export(base, out, args.sweeps)
        print(f"rendered {index['num_samples']} samples ({args.sweeps} sweeps) into shards in "
              f"{index['render_seconds']} s (one process, including its start-up); load {os.getloadavg()[0]:.1f}\n")
        print("| num_workers | simulate samples/s | shards samples/s | shards / simulate |")
        print("|---|---|---|---|")
        for workers in args.workers:
            rates: dict[str, list[float]] = {"simulate": [], "shards": []}
            for _ in range(args.repeats):
                for source in rates:
                    # no persistent workers: a finished measurement's workers must not keep simulating
                    cfg = load_config(args.config, [f"data.cache_dir={tmp}/cache", f"data.num_workers={workers}",
                                                    "data.persistent_workers=false", f"data.source={source}",
                                                    f"data.shards.dir={out}"])
                    rates[source].append(samples_per_second(loader_module(cfg, source), args.samples))
            simulate, shards = (statistics.median(rates[source]) for source in ("simulate", "shards"))
            print(f"| {workers} | {simulate:.1f} | {shards:.0f} | {shards / simulate:.0f}× |")


if __name__ == "__main__":
    main()
