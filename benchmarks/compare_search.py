"""Which focus-search settings work best? Search domain (time vs event count) × sharpness measure.

Scores the whole pipeline (search → stack → merge) of a trained checkpoint on the *validation*
sweeps — choosing defaults on the test set would leak — by AIF PSNR and depth AbsRel.

    python benchmarks/compare_search.py --ckpt runs/evfocus/quickstart-refocus [--sweeps 6]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from omegaconf import OmegaConf

from evfocus.checkpoints import load_nets, load_stage_checkpoint
from evfocus.data.simulated import build_eval_sweeps
from evfocus.metrics import image_quality
from evfocus.pipeline.aif import AIFPipeline
from evfocus.pipeline.depth import depth_errors
from evfocus.pipeline.settings import pipeline_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint file or run folder (any stage)")
    parser.add_argument("--sweeps", type=int, default=6, help="validation sweeps to score")
    args = parser.parse_args()
    torch.set_num_threads(2)

    checkpoint = load_stage_checkpoint(args.ckpt)
    cfg = checkpoint.cfg
    refocus, merge = load_nets(checkpoint)
    sweeps = build_eval_sweeps(cfg, "val", cfg.seed)[: args.sweeps]

    print(f"checkpoint {checkpoint.path} (stage {checkpoint.stage}); {len(sweeps)} validation sweeps "
          f"{cfg.sim.height}x{cfg.sim.width}, grid {cfg.pipeline.search.grid_size}")
    print("| domain | sharpness | AIF PSNR (dB) | input PSNR (dB) | depth AbsRel | refocus calls | s/sweep |")
    print("|---|---|---|---|---|---|---|")
    for domain in ("time", "events"):
        for sharpness in ("variance", "gradient"):
            settings = OmegaConf.merge(cfg, {"pipeline": {"search": {"domain": domain, "sharpness": sharpness}}})
            psnr, identity, abs_rel, calls, seconds = [], [], [], [], []
            for sweep in sweeps:
                config = pipeline_config(settings, sweep)
                result = AIFPipeline(refocus, merge, config)(sweep)
                psnr.append(image_quality(result.aif, sweep.aif)["psnr"])
                identity.append(image_quality(sweep.image, sweep.aif)["psnr"])
                abs_rel.append(depth_errors(result.depth_m, sweep.depth_m)["abs_rel"])
                calls.append(result.num_refocus_calls)
                seconds.append(result.seconds["total"])
            print(f"| {domain} | {sharpness} | {statistics.mean(psnr):.2f} | {statistics.mean(identity):.2f} | "
                  f"{statistics.mean(abs_rel):.3f} | {statistics.mean(calls):.1f} | {statistics.median(seconds):.2f} |")


if __name__ == "__main__":
    main()
