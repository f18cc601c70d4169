"""A 720×1280 capture with ~13 M events and a weights file of the benchmark's paper-size random nets: the
inputs of the peak-memory check of ``src/aif.py`` at EVK4-HD size (benchmarks/RESULTS.md, issue 13).

    python benchmarks/large_capture.py --out /tmp/big     # writes /tmp/big/{blurry,events,meta}/big.* + bench.pt
    /usr/bin/time -v python src/aif.py --ckpt /tmp/big/bench.pt --input /tmp/big --out /tmp/big_out --device cpu

A ray-traced DAVIS346 capture (``efs_dev_dense/d01_shelf`` by default) blown up: the frame bicubically, each event
copied ``--copies`` times to random pixels of its upscaled footprint, times jittered by ±1 ms. Speed and memory
depend on the sizes and the event count, not on where the events fall.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from aif_command import write_weights
from PIL import Image

from evfocus.config import load_config
from evfocus.models.registry import build_merge_net, build_refocus_net


def blow_up(source: Path, name: str, out: Path, height: int, width: int, copies: int, seed: int) -> int:
    """Write capture ``big`` into ``out``; returns its event count."""
    for folder in ("blurry", "events", "meta"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    frame = Image.open(source / "blurry" / f"{name}.png")
    frame.resize((width, height), Image.Resampling.BICUBIC).save(out / "blurry" / "big.png")
    meta = json.loads((source / "meta" / f"{name}.json").read_text()) | {"width": width, "height": height}
    (out / "meta" / "big.json").write_text(json.dumps(meta))
    events = np.load(source / "events" / f"{name}.npy").astype(np.int64)
    scale_x, scale_y = width / frame.width, height / frame.height
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(copies):
        t = np.clip(events[:, 0] + rng.integers(-1000, 1000, len(events)), meta["sweep_start_us"], meta["sweep_end_us"])
        x = np.minimum(((events[:, 1] + rng.random(len(events))) * scale_x).astype(np.int64), width - 1)
        y = np.minimum(((events[:, 2] + rng.random(len(events))) * scale_y).astype(np.int64), height - 1)
        parts.append(np.stack([t, x, y, events[:, 3]], axis=1))
    big = np.concatenate(parts)
    np.save(out / "events" / "big.npy", big[np.argsort(big[:, 0], kind="stable")].astype(np.int32))
    return len(big)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=Path("../shared/samples/efs_dev_dense"))
    parser.add_argument("--name", default="d01_shelf")
    parser.add_argument("--size", type=int, nargs=2, default=(720, 1280), metavar=("H", "W"))
    parser.add_argument("--copies", type=int, default=22, help="copies of each event (22 × 594,941 ≈ 13 M)")
    parser.add_argument("--config", default="configs/merge.yaml", help="paper-size nets")
    args = parser.parse_args()
    count = blow_up(args.source, args.name, args.out, *args.size, args.copies, seed=0)
    cfg = load_config(args.config)
    torch.manual_seed(0)  # the nets bench_aif.py builds: seed 0, to_residual N(0, 0.02)
    refocus, merge = build_refocus_net(cfg), build_merge_net(cfg)
    with torch.no_grad():
        refocus.to_residual.weight.normal_(0.0, 0.02)
    weights = write_weights(refocus, merge, cfg, args.out)
    print(f"{args.out}: capture 'big', {args.size[0]}x{args.size[1]}, {count:,} events; nets {weights}")


if __name__ == "__main__":
    main()
