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
ground truth to pick).
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from collections.abc import Iterator

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
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = load_stage_checkpoint(args.ckpt)
    cfg = checkpoint.cfg
    refocus, merge = load_nets(checkpoint)
    print(f"checkpoint {checkpoint.path} (stage {checkpoint.stage}), grid {cfg.pipeline.search.grid_size}")
    print("| input | sweep | method | contrast | AIF gain (dB) | depth AbsRel | AbsRel confident (share) |")
    print("|---|---|---|---|---|---|---|")
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
                if args.per_sweep:
                    print_row(text, sweep.name, method, [row])
        for method, rows in scores.items():
            print_row(text, f"mean of {len(rows)}", method, rows)


def print_row(text: str, sweep: str, method: str, rows: list[tuple]) -> None:
    mean = [statistics.mean(v for v in column if v is not None) if any(v is not None for v in column) else None
            for column in zip(*rows, strict=True)]
    gain, abs_rel, confident, share, contrast = mean
    contrast_text = "—" if contrast is None else f"{contrast:.3f}"
    confident_text = "—" if confident is None else f"{confident:.3f} ({share:.0%})"
    print(f"| {text} | {sweep} | {method} | {contrast_text} | {gain:+.2f} | {abs_rel:.3f} | {confident_text} |",
          flush=True)


if __name__ == "__main__":
    main()
