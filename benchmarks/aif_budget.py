"""Where the all-in-focus gain is lost (the refocused slices, the slice times, or the merge?) and where
the depth error comes from.

    python benchmarks/aif_budget.py --ckpt weights/evfocus-release.pt --input sim:1 sim:3 \
        ../shared/samples/efs_dev [--sim-sweeps 8] [--sim-split val] [--per-sweep]

Runs the checkpoint's pipeline on sweeps whose true focal frames are known (simulated sweeps, rendered
at every frame time; captures that ship ``sweep_frames/``, grey) and swaps its parts for the truth one
at a time. AIF gain over the input frame, dB, for:

- ``pipeline``: the pipeline as it runs;
- ``its slices, best pixel``: the pipeline's own slices, each pixel from the slice closest to the truth
  (a bound on any merge of today's slices);
- ``true slices, its weights``: the true frames at the pipeline's slice times, merged with the
  pipeline's own merge weights: what perfect refocusing would give with today's search and merge;
- ``true slices, best pixel``: the same frames, each pixel taken from the slice closest to the truth
  (a bound on any merge of those slice times);
- ``all frames, best pixel``: each pixel from whichever true frame of the sweep is closest (a bound on
  any focal stack of that many frames).

And the refocused slices themselves, PSNR against the true frame at their time, mean over slices: the
net's, event integration's at the same contrast (anchored like the net's), and the input frame's.
The oracle rows pick by the ground truth: diagnosis only, never a result. Captures are compared in grey
(BT.601 luma of sRGB, the frames' encoding).

``--contrast-scales K ...`` adds a table of the slices at K times the contrast the pipeline used, the net's
(its per-sweep contrast scaled) and integration's: whether the slices lose to the contrast or to the net (on
efs_dev_dense, with the blur fit's former Gaussian blur, the net's slices trailed integration's by 1.4 dB at
the estimate and led by 0.45 dB at 1.2 times it; docs/results.md, "It is the contrast the net is given"). The
best scale is read off the truth: diagnosis only.

A second table splits the pipeline's depth AbsRel by where along the sweep each pixel is truly in focus
(0 = the near end, 1 = the far end, in diopters, as the lens moves): the share of pixels, their AbsRel,
what they add to the AbsRel over all pixels, and the median place the pipeline put them. It prints Markdown.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections import defaultdict
from collections.abc import Iterator

import kornia
import torch
from depth_cues import true_frames
from score_sweeps import sweeps_of
from torch import Tensor

from evfocus.checkpoints import load_nets, load_stage_checkpoint
from evfocus.events.integration import EventIntegrator
from evfocus.image_scores import image_quality
from evfocus.models.refocus import SweepRefocus
from evfocus.models.runtime import autocast, prepared
from evfocus.optics import FocusSchedule
from evfocus.pipeline.aif import AIFPipeline, AIFResult, PipelineConfig, configured_stack, refocus_stack
from evfocus.pipeline.depth import normalised_diopter
from evfocus.pipeline.settings import pipeline_config
from evfocus.sweep import Sweep

BUDGET_ROWS = ("pipeline", "its slices, best pixel", "true slices, its weights", "true slices, best pixel",
               "all frames, best pixel")
SLICE_ROWS = ("net", "integration", "input frame")
FOCUS_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0)  # where along the sweep a pixel is in focus


def sweeps_with_frames(text: str, cfg, count: int, split: str,
                       frames_from: str | None = None) -> Iterator[tuple[Sweep, Tensor, Tensor]]:
    """(sweep, true frames (K, C, H, W), their times (K,) µs) of a capture folder or ``sim:K1``; a capture
    without ``sweep_frames/`` may take those of the same scene in ``frames_from`` (efs_dev_dense's events were
    made from efs_dev's frames)."""
    for sweep in sweeps_of(text, cfg, count, split, all_frames=True):
        if sweep.frames is not None:  # simulated: rendered at every frame time
            yield sweep, sweep.frames.float(), sweep.frame_times_us.to(torch.float64)
            continue
        frames = true_frames(text, sweep.name)
        if frames is None and frames_from is not None:
            frames = true_frames(frames_from, sweep.name)
        if frames is None:
            raise SystemExit(f"{text}: capture {sweep.name} ships no sweep_frames/{sweep.name}/: nothing to compare "
                             "against")
        yield sweep, *frames


def nearest(frame_times_us: Tensor, times_us: Tensor) -> Tensor:
    """(S,) index of the frame closest in time to each of ``times_us``."""
    return (frame_times_us[None, :] - times_us.to(torch.float64)[:, None]).abs().argmin(dim=1)


def best_per_pixel(candidates: Tensor, truth: Tensor) -> Tensor:
    """(C, H, W): each pixel from the candidate (K, C, H, W) closest to ``truth`` (mean |error| over C)."""
    pick = (candidates - truth[None]).abs().mean(dim=1, keepdim=True).argmin(dim=0, keepdim=True)
    return candidates.gather(0, pick.expand(1, *candidates.shape[1:]))[0]


def budget(aif: Tensor, stack: Tensor, weights: Tensor, slice_frames: Tensor, frames: Tensor, truth: Tensor,
           image: Tensor) -> dict[str, float]:
    """``BUDGET_ROWS`` → AIF gain (dB) over ``image``; every image (C, H, W) in the truth's channels,
    ``stack`` (S, C, H, W) the pipeline's refocused slices,
    ``slice_frames`` (S, C, H, W) the true frames at the slice times, ``weights`` (S, H, W) their merge weights."""
    def psnr(x: Tensor) -> float:
        return image_quality(x, truth)["psnr"]

    frame = psnr(image)
    merged = (weights[:, None] * slice_frames).sum(dim=0)
    scores = (psnr(aif), psnr(best_per_pixel(stack, truth)), psnr(merged), psnr(best_per_pixel(slice_frames, truth)),
              psnr(best_per_pixel(frames, truth)))
    return {row: score - frame for row, score in zip(BUDGET_ROWS, scores, strict=True)}


def as_channels(image: Tensor, channels: int) -> Tensor:
    """(..., 3, H, W) sRGB → the frames' channels: unchanged, or BT.601 luma for grey frames."""
    return image if image.shape[-3] == channels else kornia.color.rgb_to_grayscale(image)


def slice_quality(stacks: dict[str, Tensor], slice_frames: Tensor) -> dict[str, float]:
    """Mean PSNR of each stack's slices (S, C, H, W) against the true frames at their times."""
    return {name: sum(image_quality(s, t)["psnr"] for s, t in zip(stack, slice_frames, strict=True)) / len(stack)
            for name, stack in stacks.items()}


def contrast_scaled_slices(result: AIFResult, sweep: Sweep, config: PipelineConfig,
                           scales: list[float]) -> dict[float, dict[str, Tensor]]:
    """Per scale K (> 0, ``positive_scale``): the net's slices at K times its per-sweep contrast and integration's
    at K times the same contrast, at the pipeline's slice times, anchored like the pipeline's
    ({K: {"net", "integration"}}). The net runs as the pipeline runs it (``config.runtime``: memory format and
    bf16 steps), so at K = 1 its slices are the pipeline's own."""
    if not isinstance(result.refocus, SweepRefocus):
        raise SystemExit("--contrast-scales needs a refocus net with a per-sweep contrast (model.contrast: prior)")
    sweep_net = result.refocus
    device = result.stack.device
    stacks = {}
    with prepared((sweep_net.net,), config.runtime), autocast(config.runtime, device, "stack"):
        for scale in scales:
            refocus_fns = {"net": SweepRefocus(sweep_net.net, sweep_net.log_contrast + math.log(scale),
                                               sweep_net.response),
                           "integration": EventIntegrator(scale * sweep_net.contrast, response=sweep_net.response)}
            stacks[scale] = {name: configured_stack(fn, sweep.image, sweep.image_time_us, result.focal_stack,
                                                    result.slice_times_us, config)[0].float()
                             for name, fn in refocus_fns.items()}
    return stacks


def positive_scale(text: str) -> float:
    """``--contrast-scales``' type: a contrast factor must be a number above 0."""
    scale = float(text)
    if not scale > 0:
        raise argparse.ArgumentTypeError(f"a contrast scale must be > 0, got {text}")
    return scale


def sweep_place(depth_m: Tensor, schedule: FocusSchedule) -> Tensor:
    """Where along the sweep each depth is in focus: 0 at the near end, 1 at the far end (diopters)."""
    return 1.0 - normalised_diopter(depth_m, schedule)


def depth_by_place(depth_m: Tensor, true_depth_m: Tensor, schedule: FocusSchedule) -> list[tuple[float, ...]]:
    """Per ``FOCUS_BINS`` bin of the true focus place (the last bin also takes anything beyond the far end):
    (share of the pixels, their AbsRel, their part of the AbsRel over all pixels, the median predicted place);
    NaN where a bin is empty. Pixels without ground truth (non-finite) are left out."""
    valid = torch.isfinite(true_depth_m)
    truth, pred = true_depth_m[valid].double(), depth_m[valid].double()
    place, error = sweep_place(truth, schedule), (pred - truth).abs() / truth
    rows = []
    for low, high in itertools.pairwise(FOCUS_BINS):
        inside = (place >= low) & ((place < high) if high < 1 else torch.ones_like(place, dtype=torch.bool))
        if not bool(inside.any()):
            rows.append((0.0, math.nan, 0.0, math.nan))
            continue
        share, part = float(inside.double().mean()), float(error[inside].sum() / len(error))
        rows.append((share, float(error[inside].mean()), part, float(sweep_place(pred[inside], schedule).median())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint file or run folder (refocus + merge nets)")
    parser.add_argument("--input", nargs="+", required=True, help="sim:K1 and/or capture folders with sweep_frames/")
    parser.add_argument("--sim-sweeps", type=int, default=8, help="sweeps per sim:K1 input")
    parser.add_argument("--sim-split", choices=("test", "val"), default="val")
    parser.add_argument("--per-sweep", action="store_true", help="a row per sweep, not only the mean")
    parser.add_argument("--frames-from", help="captures without sweep_frames/ take this folder's, scene by scene "
                                              "(efs_dev_dense: ../shared/samples/efs_dev)")
    parser.add_argument("--contrast-scales", type=positive_scale, nargs="*", default=[], metavar="K",
                        help="also score the net's and integration's slices at K times the pipeline's contrast")
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = load_stage_checkpoint(args.ckpt, ("refocus", "merge", "joint"))
    refocus, merge = load_nets(checkpoint)
    if args.contrast_scales and getattr(refocus, "contrast_source", None) is None:
        parser.error(f"--contrast-scales: {checkpoint.path}'s refocus net has no per-sweep contrast to scale")
    print(f"checkpoint {checkpoint.path} (stage {checkpoint.stage}); AIF gain over the input frame, dB; "
          "slices: PSNR against the true frame at their time, dB")
    print("| input | sweep | " + " | ".join(BUDGET_ROWS) + " | slices: " + " / ".join(SLICE_ROWS) + " | slices |")
    print("|---|---|" + "---|" * (len(BUDGET_ROWS) + 2))
    depth_tables: dict[str, list[list[tuple[float, ...]]]] = {}
    scaled_rows: dict[str, list[list[float]]] = defaultdict(list)
    for text in args.input:
        rows, depth_rows = defaultdict(list), []
        for sweep, frames, frame_times in sweeps_with_frames(text, checkpoint.cfg, args.sim_sweeps, args.sim_split,
                                                                  args.frames_from):
            config = pipeline_config(checkpoint.cfg, sweep)
            with torch.no_grad():
                result = AIFPipeline(refocus, merge, config)(sweep, "cpu")
                response = getattr(result.refocus, "response", "gamma")
                integrated, _ = refocus_stack(EventIntegrator(result.contrast, response=response), sweep.image,
                                              sweep.image_time_us, result.focal_stack, result.slice_times_us,
                                              config.search.num_bins, anchor_sigma_px=config.anchor_sigma_px)
            channels = frames.shape[1]
            slice_frames = frames[nearest(frame_times, result.slice_times_us)]
            image = as_channels(sweep.image.float(), channels)
            gains = budget(as_channels(result.aif, channels), as_channels(result.stack, channels), result.weights,
                           slice_frames, frames, as_channels(sweep.aif.float(), channels), image)
            quality = slice_quality({"net": as_channels(result.stack, channels),
                                     "integration": as_channels(integrated, channels),
                                     "input frame": image.expand_as(slice_frames)}, slice_frames)
            with torch.no_grad():
                scaled = contrast_scaled_slices(result, sweep, config, args.contrast_scales)
            scaled_rows[text].append([slice_quality({name: as_channels(stack, channels)}, slice_frames)[name]
                                      for stacks in scaled.values() for name, stack in stacks.items()])
            row = [*gains.values(), *quality.values(), len(result.slice_times_us)]
            rows[text].append(row)
            depth_rows.append(depth_by_place(result.depth_m, sweep.depth_m.to(result.depth_m), sweep.schedule))
            if args.per_sweep:
                print_row(text, sweep.name, row)
        print_row(text, f"mean of {len(rows[text])}", torch.tensor(rows[text]).mean(dim=0).tolist())
        depth_tables[text] = depth_rows
    if args.contrast_scales:
        print("\nSlices at K times the pipeline's contrast, PSNR against the true frame at their time, mean over the "
              "sweeps: net / integration")
        print("| input | " + " | ".join(f"K = {scale:g}" for scale in args.contrast_scales) + " |")
        print("|---|" + "---|" * len(args.contrast_scales))
        for text, rows in scaled_rows.items():
            means = torch.tensor(rows).mean(dim=0).tolist()
            print(f"| {text} | " + " | ".join(f"{means[2 * i]:.2f} / {means[2 * i + 1]:.2f}"
                                               for i in range(len(args.contrast_scales))) + " |")
    print("\nDepth AbsRel by where each pixel is in focus along the sweep (0 near, 1 far), mean over the sweeps: "
          "share of pixels / their AbsRel / their part of the AbsRel / median predicted place")
    print("| input | " + " | ".join(f"{low:.2f}–{high:.2f}" for low, high in itertools.pairwise(FOCUS_BINS))
          + " |")
    print("|---|" + "---|" * (len(FOCUS_BINS) - 1))
    for text, depth_rows in depth_tables.items():
        cells = torch.tensor(depth_rows).nanmean(dim=0).tolist()
        print(f"| {text} | " + " | ".join(f"{share:.2f} / {abs_rel:.2f} / {part:.3f} / {place:.2f}"
                                           for share, abs_rel, part, place in cells) + " |")


def print_row(text: str, name: str, row: list[float]) -> None:
    gains, quality, slices = row[:len(BUDGET_ROWS)], row[len(BUDGET_ROWS):-1], row[-1]
    print(f"| {text} | {name} | " + " | ".join(f"{g:+.2f}" for g in gains) + " | "
          + " / ".join(f"{q:.2f}" for q in quality) + f" | {slices:.1f} |", flush=True)


if __name__ == "__main__":
    main()
