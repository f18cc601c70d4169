"""Train the depth head of a merge model: ``python src/train_depth_head.py --weights W --run-dir DIR``.

The head (``models.depth_head``) learns, per pixel, how to mix the pipeline's two depths from focus; it is trained
for one pipeline, that of ``--weights`` (a merge or joint run, checkpoint or weights file), whose nets stay frozen.
Features of its pipeline on simulated sweeps are computed first and cached in ``DIR/features/`` (progress on
stderr; a stopped run reuses the finished chunks), then the head trains with Lightning: ``DIR/checkpoints/``
holds the best (lowest mean validation AbsRel) and ``last.ckpt``; ``--resume`` continues from it; ``DIR/run.json``
records the settings, seed, package versions and a fingerprint of the nets; the metrics go to ``DIR/metrics.csv``
and to a wandb run in ``DIR/wandb`` (offline unless ``--wandb`` or ``WANDB_MODE`` says otherwise).
Put the head into a weights file with ``python src/export_weights.py W OUT.pt --depth-head DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as src/train.py: spinning OpenMP threads starve workers

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger

from evfocus.checkpoints import CheckpointError, load_stage_checkpoint, nets_fingerprint
from evfocus.training.callbacks import GracefulInterrupt, NonFiniteLossError, PeriodicLastCheckpoint, RunInterrupted
from evfocus.training.csv_history import HistoryCSVLogger
from evfocus.training.depth_head_data import DepthFeatureData, SweepSet
from evfocus.training.depth_head_module import DepthHeadModule
from evfocus.training.provenance import package_versions
from evfocus.training.run import wandb_run_logger


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="merge or joint run, checkpoint or weights file")
    parser.add_argument("--run-dir", required=True, type=Path, help="run folder (features, checkpoints, logs)")
    parser.add_argument("--train-sweeps", type=int, default=800, help="simulated training sweeps")
    parser.add_argument("--val-sweeps", type=int, default=64, help="validation sweeps per sensitivity")
    parser.add_argument("--val-k1-scales", type=float, nargs="+", default=[1.0, 3.0],
                        help="sensor sensitivities (k1 x DAVIS346) of the validation sets")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=8, help="whole sweeps per step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--val-every-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the head's initialisation and batch order")
    parser.add_argument("--workers", type=int, default=2, help="processes computing features")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints/last.ckpt")
    parser.add_argument("--wandb", choices=("offline", "online", "disabled"),
                        default=os.environ.get("WANDB_MODE", "offline"),
                        help="the run's wandb mode (default: WANDB_MODE, else offline); project --wandb-project")
    parser.add_argument("--wandb-project", default="evfocus")
    args = parser.parse_args(argv)
    for name in ("train_sweeps", "val_sweeps", "steps", "batch_size", "val_every_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.train_sweeps < args.batch_size:
        parser.error(f"--train-sweeps {args.train_sweeps} is fewer than one batch (--batch-size {args.batch_size})")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        checkpoint = load_stage_checkpoint(args.weights, ("merge", "joint"))
    except CheckpointError as error:
        print(f"--weights: {error}", file=sys.stderr)
        return 2
    last = args.run_dir / "checkpoints" / "last.ckpt"
    if args.resume and not last.is_file():
        print(f"--resume: {last} does not exist", file=sys.stderr)
        return 2
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
                if key not in ("resume", "workers", "wandb", "wandb_project")}
    settings["nets_sha256"] = nets_fingerprint(checkpoint)  # with_depth_head checks it when the head is exported
    earlier = _earlier_fingerprint(args.run_dir / "run.json")
    if earlier not in (None, settings["nets_sha256"]):
        print(f"--run-dir: {args.run_dir} holds features and checkpoints of other nets than those of {args.weights} "
              "(run.json's nets_sha256 differs); use a new run folder", file=sys.stderr)
        return 2
    args.run_dir.mkdir(parents=True, exist_ok=True)
    (args.run_dir / "run.json").write_text(json.dumps({"settings": settings, "versions": package_versions()},
                                                      indent=1))
    L.seed_everything(args.seed, workers=True)
    val = [SweepSet(f"val-k{k:g}", "val", args.val_sweeps, k) for k in args.val_k1_scales]
    data = DepthFeatureData(checkpoint, SweepSet("train", "train", args.train_sweeps), val,
                            args.run_dir / "features", args.batch_size, args.workers)
    module = DepthHeadModule(settings, [sweeps.name for sweeps in val])
    folder = args.run_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=folder, filename="best-{epoch:03d}-{step:07d}", monitor="val/abs_rel",
                           mode="min", save_top_k=1, auto_insert_metric_name=False)
    trainer = L.Trainer(default_root_dir=str(args.run_dir), max_steps=args.steps, accelerator="cpu",
                        check_val_every_n_epoch=args.val_every_epochs, num_sanity_val_steps=0,
                        logger=_loggers(args, settings, last),
                        callbacks=[best, PeriodicLastCheckpoint(last, 200), GracefulInterrupt(last)])
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if args.resume else None, weights_only=True)
    except (RunInterrupted, NonFiniteLossError) as error:
        print(f"training stopped: {error}; resume with --resume", file=sys.stderr)
        return 1
    scores = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
    print(json.dumps({"best": best.best_model_path, "final_validation": scores}, indent=1))
    return 0


def _loggers(args: argparse.Namespace, settings: dict[str, Any], last: Path) -> list[Logger]:
    """metrics.csv (kept on resume) and, unless disabled, the run's wandb run, as ``src/train.py`` logs."""
    loggers: list[Logger] = [HistoryCSVLogger(args.run_dir, resume_from=str(last) if args.resume else None)]
    if args.wandb != "disabled":
        loggers.append(wandb_run_logger(args.run_dir, f"depth-head-{args.run_dir.name}", args.wandb, settings,
                                        args.wandb_project, tags=["depth-head"]))
    return loggers


def _earlier_fingerprint(run_json: Path) -> str | None:
    """The nets fingerprint an earlier run in this folder recorded, if any: its cached features belong to those nets."""
    try:
        return json.loads(run_json.read_text())["settings"].get("nets_sha256")
    except (OSError, ValueError, KeyError, AttributeError):
        return None


if __name__ == "__main__":
    sys.exit(main())
