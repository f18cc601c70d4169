"""All-in-focus gain and depth of a checkpoint beside the non-learned references, on sweeps it never saw.

Inputs are capture folders (e.g. ``../shared/samples/efs_dev``) and/or simulated test sets of one
sensor sensitivity, ``sim:K1`` (DVS-Voltmeter DAVIS346 with k1 × K1, the checkpoint's own simulator
ranges otherwise, test-split scenes):

    python benchmarks/score_sweeps.py --ckpt RUN_OR_CKPT --input ../shared/samples/efs_dev sim:1 sim:3 [--sim-sweeps 16]

Per input it prints a Markdown table row per method: ``pipeline`` (the checkpoint), ``integration``
(``log I0 + c·Σ events`` at the contrast each sweep's own frame and events give, Sobel merge — no
network, no ground truth), and the input frame; AIF gain = PSNR(result, truth) − PSNR(frame, truth),
data range 1, full RGB image; depth AbsRel over every pixel with ground truth and over the confident
ones. ``--contrasts`` adds integration at fixed contrasts (diagnosis: the best of them needs the
ground truth to pick). ``--json FILE`` also writes every row (per sweep and mean) as JSON: the model
card's scores (``weights/README.md``) come from it, and ``tests/test_shipped_weights.py`` checks them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import OmegaConf

from evfocus.checkpoints import load_nets, load_stage_checkpoint
from evfocus.data.captures import list_captures, read_capture
from evfocus.events.integration import EventIntegrator
from evfocus.metrics import image_quality
from evfocus.pipeline.aif import AIFPipeline
from evfocus.pipeline.depth import depth_scores
from evfocus.pipeline.references import self_calibrated_integrator
from evfocus.pipeline.settings import pipeline_config
from evfocus.sweep import Sweep


def sweeps_of(text: str, cfg, count: int) -> Iterator[Sweep]:
    """A capture folder's sweeps, or ``count`` test-split sweeps of a simulated sensor ``sim:K1``."""
    if not text.startswith("sim:"):
        for name in list_captures(text):
            yield read_capture(text, name)
        return
    from evfocus.data.simulated import eval_sweep_seed
    from evfocus.sim.simulator import SweepSimulator

    k1_scale = float(text[4:])
    sim_cfg = OmegaConf.merge(cfg.sim, {"voltmeter": {"k1_scale_range": [k1_scale, k1_scale]}})
    simulator = SweepSimulator(sim_cfg, "test")
    for index in range(count):
        yield simulator.simulate(eval_sweep_seed(cfg.seed, "test", index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint file or run folder")
    parser.add_argument("--input", nargs="+", required=True, help="capture folders and/or sim:K1")
    parser.add_argument("--sim-sweeps", type=int, default=16, help="sweeps per sim:K1 input")
    parser.add_argument("--contrasts", type=float, nargs="*", default=[], help="also integration at these c")
    parser.add_argument("--per-sweep", action="store_true", help="a row per sweep, not only the mean")
    parser.add_argument("--json", type=Path, help="also write every row to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = load_stage_checkpoint(args.ckpt)
    cfg = checkpoint.cfg
    refocus, merge = load_nets(checkpoint)
    print(f"checkpoint {checkpoint.path} (stage {checkpoint.stage}), grid {cfg.pipeline.search.grid_size}")
    print("| input | sweep | method | contrast | AIF gain (dB) | depth AbsRel | AbsRel confident (share) |")
    print("|---|---|---|---|---|---|---|")
    report = {"checkpoint": str(checkpoint.path), "grid_size": cfg.pipeline.search.grid_size, "inputs": {}}
    for text in args.input:
        scores = defaultdict(list)
        for sweep in sweeps_of(text, cfg, args.sim_sweeps):
            config = pipeline_config(cfg, sweep)
            methods = {"pipeline": (refocus, merge), "integration": (self_calibrated_integrator(sweep, "cpu"), None)}
            methods.update({f"integration c={c:g}": (EventIntegrator(c), None) for c in args.contrasts})
            frame_psnr = image_quality(sweep.image, sweep.aif)["psnr"]
            for method, (refocus_fn, merge_fn) in methods.items():
                result = AIFPipeline(refocus_fn, merge_fn, config)(sweep, "cpu")
                depth = depth_scores(result.depth_m, result.depth_confidence, sweep.depth_m)
                gain = image_quality(result.aif, sweep.aif)["psnr"] - frame_psnr
                row = (gain, depth["abs_rel"], depth["abs_rel_confident"], depth["confident_fraction"], result.contrast)
                scores[method].append(row)
                report["inputs"].setdefault(text, {}).setdefault(sweep.name, {})[method] = as_record([row])
                if args.per_sweep:
                    print_row(text, sweep.name, method, [row])
        for method, rows in scores.items():
            print_row(text, f"mean of {len(rows)}", method, rows)
            report["inputs"][text].setdefault("mean", {})[method] = as_record(rows)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


def mean_columns(rows: list[tuple]) -> list[float | None]:
    """Column means over sweeps, ignoring ``None`` (no confident pixels, no contrast)."""
    return [statistics.mean(v for v in column if v is not None) if any(v is not None for v in column) else None
            for column in zip(*rows, strict=True)]


def as_record(rows: list[tuple]) -> dict[str, float | None]:
    names = ("aif_gain_db", "depth_abs_rel", "depth_abs_rel_confident", "confident_fraction", "contrast")
    return dict(zip(names, mean_columns(rows), strict=True))


def print_row(text: str, sweep: str, method: str, rows: list[tuple]) -> None:
    gain, abs_rel, confident, share, contrast = mean_columns(rows)
    contrast_text = "—" if contrast is None else f"{contrast:.3f}"
    confident_text = "—" if confident is None else f"{confident:.3f} ({share:.0%})"
    print(f"| {text} | {sweep} | {method} | {contrast_text} | {gain:+.2f} | {abs_rel:.3f} | {confident_text} |",
          flush=True)


if __name__ == "__main__":
    main()
