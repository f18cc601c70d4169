"""A run's nets as a small weights file:
``python src/export_weights.py RUN_OR_CKPT OUT.pt [--fp32] [--refocus RUN] [--depth-head RUN]
[--pipeline KEY=VALUE ...]``.

The file holds the refocus (and merge) net's weights, fp16 unless ``--fp32``, and the run's config —
no optimizer or loop state — and loads anywhere a checkpoint does (``--ckpt`` of ``src/aif.py``).
``--refocus`` takes the refocus net (and its ``model`` config) from another run, e.g. a refocus stage
fine-tuned from the merge run's own refocus net, and keeps the merge run's merge net. ``--depth-head`` adds a
depth head trained for these nets by ``src/train_depth_head.py`` (its run folder or checkpoint). ``--pipeline`` sets
pipeline settings chosen for these nets after training (on validation sweeps), e.g. ``given_contrast_gain=1.3``,
so that they travel with the weights; they are checked like any config.
"""

from __future__ import annotations

import argparse
import sys

import torch

from evfocus.checkpoints import (
    CheckpointError,
    load_stage_checkpoint,
    save_weights,
    with_depth_head,
    with_pipeline_settings,
    with_refocus_net,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="run folder (its best checkpoint) or .ckpt")
    parser.add_argument("out", help="weights file to write (.pt)")
    parser.add_argument("--fp32", action="store_true", help="keep float32 (default: float16, half the size)")
    parser.add_argument("--refocus", metavar="RUN_OR_CKPT", help="take the refocus net from this run instead")
    parser.add_argument("--depth-head", metavar="RUN_OR_CKPT", help="add this depth head (src/train_depth_head.py)")
    parser.add_argument("--pipeline", nargs="+", default=[], metavar="KEY=VALUE",
                        help="pipeline settings that travel with the weights, e.g. given_contrast_gain=1.3")
    args = parser.parse_args(argv)
    try:
        checkpoint = load_stage_checkpoint(args.checkpoint)
        if args.refocus is not None:
            checkpoint = with_refocus_net(checkpoint, load_stage_checkpoint(args.refocus))
        if args.depth_head is not None:
            checkpoint = with_depth_head(checkpoint, args.depth_head)
        checkpoint = with_pipeline_settings(checkpoint, args.pipeline)
        path = save_weights(checkpoint, args.out, torch.float32 if args.fp32 else torch.float16)
    except CheckpointError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"{checkpoint.path} ({checkpoint.stage}) -> {path}: {path.stat().st_size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
