"""Could each patch's event-rate valley bracket the focus search before any network probe?

While the focus sweeps through a patch's depth, its event rate dips at focus between two peaks
(``../shared/FACTS.md``). This measures, on a checkpoint's validation sweeps and any capture folders,
how far each searched patch's most prominent rate valley lies from the time today's (network) search
finds, as a fraction of the sweep. A bracket of ± w around the valley saves log_φ(1 / 2w) probes of
the ~10 a patch costs, but every patch whose found time lies outside it must be searched again:

    python benchmarks/valley_prior.py --ckpt RUN --sweeps 4 --input ../shared/samples/efs_dev
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evfocus.checkpoints import load_nets, load_stage_checkpoint
from evfocus.data.captures import list_captures, read_capture
from evfocus.data.simulated import build_eval_sweeps
from evfocus.golden import GOLDEN_RATIO
from evfocus.pipeline.aif import AIFPipeline
from evfocus.pipeline.settings import pipeline_config


def rate_valleys(patch_counts: Tensor, smooth_bins: int) -> Tensor:
    """Per patch, the fine-bin centre (P,) of the most prominent valley of its event rate.

    ``patch_counts`` (P, K+1) are cumulative counts; the rate per fine bin is box-smoothed over
    ``smooth_bins`` bins. A bin's prominence is the lower of the highest rates on its two sides minus its
    own, so a valley needs a peak on either side.
    """
    rate = torch.diff(patch_counts.double(), dim=1)
    width = max(1, smooth_bins) | 1
    smooth = F.avg_pool1d(rate[:, None], width, stride=1, padding=width // 2, count_include_pad=False)[:, 0]
    left = smooth.cummax(dim=1).values
    right = smooth.flip(1).cummax(dim=1).values.flip(1)
    return (torch.minimum(left, right) - smooth).argmax(dim=1).double() + 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--sweeps", type=int, default=4, help="validation sweeps")
    parser.add_argument("--input", nargs="*", default=[], help="capture folders")
    parser.add_argument("--smooth", type=int, nargs="+", default=[4, 8, 16], help="fine bins of rate smoothing")
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = load_stage_checkpoint(args.ckpt)
    cfg = checkpoint.cfg
    refocus, merge = load_nets(checkpoint)
    sweeps = build_eval_sweeps(cfg, "val", cfg.seed)[: args.sweeps]
    sweeps += [read_capture(folder, name) for folder in args.input for name in list_captures(folder)]
    print("| sweep | smoothing (fine bins) | searched patches | median \\|valley − found\\| (sweep) | "
          "within ±1/8 | within ±1/16 | probes per patch with a ±1/8 bracket + re-search (today ~10) |")
    print("|---|---|---|---|---|---|---|")
    for sweep in sweeps:
        result = AIFPipeline(refocus, merge, pipeline_config(cfg, sweep))(sweep)
        counts = result.focal_stack.patch_counts
        found = ((result.search.times_us.flatten() - sweep.schedule.t_start_us) / sweep.schedule.duration_us).numpy()
        searched = ~result.search.low_event_mask.flatten().numpy()
        full = 2 + math.ceil(math.log(64) / math.log(GOLDEN_RATIO)) - 1  # probes to 1/64 of the sweep
        narrow = 2 + math.ceil(math.log(64 / 4) / math.log(GOLDEN_RATIO)) - 1
        for smooth in args.smooth:
            gap = np.abs((rate_valleys(counts, smooth) / (counts.shape[1] - 1)).numpy() - found)[searched]
            hit = float((gap <= 1 / 8).mean())
            print(f"| {sweep.name} | {smooth} | {searched.sum()} | {np.median(gap):.3f} | {hit:.0%} | "
                  f"{(gap <= 1 / 16).mean():.0%} | {narrow + (1 - hit) * full:.1f} |", flush=True)


if __name__ == "__main__":
    main()
