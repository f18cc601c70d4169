"""All-in-focus gain and depth of a checkpoint beside the non-learned references, on sweeps it never saw.

Inputs are capture folders (e.g. ``../shared/samples/efs_dev``) and/or simulated test sets of one
sensor sensitivity, ``sim:K1`` (DVS-Voltmeter DAVIS346 with k1 × K1, the checkpoint's own simulator
ranges otherwise, test-split scenes):

    python benchmarks/score_sweeps.py --ckpt RUN_OR_CKPT --input ../shared/samples/efs_dev sim:1 sim:3 [--sim-sweeps 16]
        [--sim-split test|val] [--json scores.json] [--pipeline search.probe=integration]

Per input it prints a Markdown table row per method: ``pipeline`` (the checkpoint), ``integration``
(``log I0 + c·Σ events`` at the contrast each sweep's own frame and events give, Sobel merge — no
network, no ground truth), and the input frame; AIF gain = PSNR(result, truth) − PSNR(frame, truth),
PSNR and SSIM of the result (data range 1, full RGB image); depth AbsRel over every pixel with ground
truth and over the confident ones (with the checkpoint's depth head when it has one, ``--no-depth-head``: the
fixed rule's mix). ``--contrasts`` adds integration at fixed contrasts (diagnosis: the
best of them needs the ground truth to pick). ``--true-contrast-scales`` adds the pipeline with its net and
search probes given K times each simulated sweep's true best contrast (the training's teacher) instead of the
estimate: how much the estimate costs, and which contrast the net itself does best at (diagnosis, simulated
inputs only).

An image-only baseline's checkpoint (stage ``baseline``, issue 11) is scored the same way: its network
turns each frame into the ``pipeline`` result; it makes no depth (—). ``--json`` also writes the means
per input and method (``inputs``), every sweep's own row (``per_sweep``) and the network's seconds per
sweep: the model card's scores (``weights/README.md``) come from it, and
``tests/test_shipped_weights.py`` checks them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from types import SimpleNamespace

import torch
from compare_search import with_variant
from omegaconf import OmegaConf

from evfocus.checkpoints import load_baseline, load_depth_head, load_nets, load_stage_checkpoint
from evfocus.data.captures import list_captures, read_capture
from evfocus.data.contrast_fields import target_contrast
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.integration import EventIntegrator
from evfocus.image_scores import image_quality
from evfocus.pipeline.aif import AIFPipeline, PipelineConfig
from evfocus.pipeline.depth import depth_scores
from evfocus.pipeline.references import self_calibrated_integrator
from evfocus.pipeline.search import RefocusFn
from evfocus.pipeline.settings import pipeline_config
from evfocus.sweep import Sweep


def sweeps_of(text: str, cfg, count: int, split: str = "test", all_frames: bool = False) -> Iterator[Sweep]:
    """A capture folder's sweeps, or ``count`` sweeps of a simulated sensor ``sim:K1`` from ``split``
    (``all_frames``: with every focal frame of the sweep rendered as ``frames``, for diagnoses)."""
    if not text.startswith("sim:"):
        for name in list_captures(text):
            yield read_capture(text, name)
        return
    from evfocus.data.simulated import eval_sweep_seed
    from evfocus.sim.simulator import SweepSimulator

    k1_scale = float(text[4:])
    sim_cfg = OmegaConf.merge(cfg.sim, {"voltmeter": {"k1_scale_range": [k1_scale, k1_scale]}})
    simulator = SweepSimulator(sim_cfg, split)
    frame_indices = range(sim_cfg.num_frames) if all_frames else ()
    for index in range(count):
        yield simulator.simulate(eval_sweep_seed(cfg.seed, split, index), frame_indices)


def true_contrast_runs(sweep: Sweep, cfg, refocus: RefocusFn, merge, config: PipelineConfig,
                       scales: list[float]) -> tuple[Sweep, dict[str, AIFPipeline]]:
    """The pipeline with the net and its probes given each of ``scales`` times the simulated ``sweep``'s true best
    contrast (``data.contrast_fields.target_contrast``, in the log the net takes; the checkpoint's
    ``given_contrast_gain`` not applied), and the sweep without its rendered frames, which only that contrast may
    read."""
    if sweep.frames is None:
        raise ValueError(f"{sweep.name}: a true contrast needs the sweep's rendered frames (simulated inputs only)")
    response = sweep.event_response if cfg.model.event_response_aware else "gamma"
    schedule = sweep.schedule
    focal_stack = EventFocalStack.from_events(sweep.events, schedule.t_start_us, schedule.t_end_us,
                                              cfg.data.efs_fine_bins)
    contrast = target_contrast(sweep, focal_stack, response)
    runs = {f"pipeline at {scale:g}x the true contrast":
            AIFPipeline(refocus, merge, dataclasses.replace(config, event_contrast=scale * contrast,
                                                            given_contrast_gain=1.0))
            for scale in scales}
    return dataclasses.replace(sweep, frames=None, frame_times_us=None), runs


class ImageOnly:
    """An image-only baseline run like ``AIFPipeline``: the frame → the all-in-focus image, no depth."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net

    @torch.no_grad()
    def __call__(self, sweep: Sweep, device: str) -> SimpleNamespace:
        started = time.perf_counter()
        aif = self.net(sweep.image.float()[None])[0].clamp(0, 1)
        return SimpleNamespace(aif=aif, depth_m=None, depth_confidence=None, contrast=None,
                               seconds={"total": time.perf_counter() - started})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint file or run folder")
    parser.add_argument("--input", nargs="+", required=True, help="capture folders and/or sim:K1")
    parser.add_argument("--sim-sweeps", type=int, default=16, help="sweeps per sim:K1 input")
    parser.add_argument("--sim-split", choices=("test", "val"), default="test",
                        help="the scenes of sim:K1 inputs: 'val' (the validation photographs and seeds) to choose "
                             "between checkpoints or settings without looking at the test sweeps")
    parser.add_argument("--contrasts", type=float, nargs="*", default=[], help="also integration at these c")
    parser.add_argument("--per-sweep", action="store_true", help="a row per sweep, not only the mean")
    parser.add_argument("--json", help="also write the means per input and method to this file")
    parser.add_argument("--pipeline", default="", metavar="KEY=VALUE[,...]",
                        help="changes to the checkpoint's pipeline settings, e.g. search.probe=integration")
    parser.add_argument("--true-contrast-scales", type=float, nargs="*", default=[], metavar="K",
                        help="diagnosis: also the pipeline with its net and probes given K times each simulated "
                             "sweep's true best contrast instead of the estimate (sim:K1 inputs only)")
    parser.add_argument("--no-integration", action="store_true", help="skip the integration reference (the same "
                        "for every checkpoint of one simulator config: score it once)")
    parser.add_argument("--no-depth-head", action="store_true", help="mix the depths by the fixed rule even when the "
                        "checkpoint has a depth head (pipeline.depth_fusion): the head's ablation")
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = load_stage_checkpoint(args.ckpt, ("refocus", "merge", "joint", "baseline"))
    cfg = with_variant(checkpoint.cfg, args.pipeline)
    image_only = ImageOnly(load_baseline(checkpoint)) if checkpoint.stage == "baseline" else None
    refocus, merge = load_nets(checkpoint) if image_only is None else (None, None)
    depth_head = None if image_only is not None or args.no_depth_head else load_depth_head(checkpoint)
    if args.true_contrast_scales:
        try:
            check_true_contrast_inputs(args.input, refocus, args.true_contrast_scales)
        except ValueError as error:
            parser.error(str(error))
    model = cfg.model.name if image_only is not None else checkpoint.stage
    print(f"checkpoint {checkpoint.path} (stage {checkpoint.stage}, {model}), grid {cfg.pipeline.search.grid_size}")
    print("| input | sweep | method | contrast | AIF gain (dB) | PSNR | SSIM | depth AbsRel | AbsRel confident (share) "
          "| s/sweep |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    means: dict[str, dict[str, dict]] = {}
    per_sweep: dict[str, dict[str, dict]] = {}
    for text in args.input:
        scores = defaultdict(list)
        for sweep in sweeps_of(text, cfg, args.sim_sweeps, args.sim_split, all_frames=bool(args.true_contrast_scales)):
            config = pipeline_config(cfg, sweep)
            true_contrast = {}
            if args.true_contrast_scales:
                sweep, true_contrast = true_contrast_runs(sweep, cfg, refocus, merge, config, args.true_contrast_scales)
            with torch.no_grad():
                methods = {"pipeline": image_only or AIFPipeline(refocus, merge, config, depth_head), **true_contrast}
                if not args.no_integration:
                    integrator = self_calibrated_integrator(sweep, "cpu", config.contrast_estimator)
                    methods["integration"] = AIFPipeline(integrator, None, config)
                methods.update({f"integration c={c:g}": AIFPipeline(EventIntegrator(c), None, config)
                                for c in args.contrasts})
            frame = image_quality(sweep.image, sweep.aif)
            for method, run in methods.items():
                with torch.no_grad():
                    result = run(sweep, "cpu")
                quality = image_quality(result.aif, sweep.aif)
                depth = (depth_scores(result.depth_m, result.depth_confidence, sweep.depth_m)
                         if result.depth_m is not None else dict.fromkeys(("abs_rel", "abs_rel_confident",
                                                                          "confident_fraction")))
                row = (quality["psnr"] - frame["psnr"], quality["psnr"], quality["ssim"], depth["abs_rel"],
                       depth["abs_rel_confident"], depth["confident_fraction"], result.contrast,
                       result.seconds["total"])
                scores[method].append(row)
                per_sweep.setdefault(text, {}).setdefault(sweep.name, {})[method] = as_record([row])
                if args.per_sweep:
                    print_row(text, sweep.name, method, [row])
            scores["input"].append((0.0, frame["psnr"], frame["ssim"], None, None, None, None, 0.0))
        means[text] = {}
        for method, rows in scores.items():
            print_row(text, f"mean of {len(rows)}", method, rows)
            means[text][method] = as_record(rows) | {"num_sweeps": len(rows)}
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"checkpoint": str(checkpoint.path), "stage": checkpoint.stage, "model": model, "seed": cfg.seed,
                       "parameters": sum(p.numel() for p in (image_only.net.parameters() if image_only else
                                         [*refocus.parameters(), *(merge.parameters() if merge else [])])),
                       "lpips": None, "inputs": means, "per_sweep": per_sweep}, file, indent=2)


def check_true_contrast_inputs(inputs: list[str], refocus: RefocusFn | None, scales: list[float]) -> None:
    """``--true-contrast-scales`` needs simulated inputs (their rendered frames give the true contrast), a refocus
    net that takes a per-sweep contrast, and positive scales: else a ValueError that names what is wrong."""
    captures = [text for text in inputs if not text.startswith("sim:")]
    if captures:
        raise ValueError(f"--true-contrast-scales: {', '.join(captures)} is not simulated (sim:K1): a capture has "
                         "no rendered frame at every moment to fit its true contrast to")
    if getattr(refocus, "contrast_source", None) is None:
        raise ValueError("--true-contrast-scales: the checkpoint's refocus net takes no per-sweep contrast "
                         "(model.contrast is null, or an image-only baseline)")
    if any(not scale > 0 for scale in scales):
        raise ValueError(f"--true-contrast-scales: every K must be > 0, got {scales}")


def mean_columns(rows: list[tuple]) -> list[float | None]:
    """Column means over sweeps, ignoring ``None`` (no depth, no confident pixels, no contrast)."""
    return [statistics.mean(v for v in column if v is not None) if any(v is not None for v in column) else None
            for column in zip(*rows, strict=True)]


def as_record(rows: list[tuple]) -> dict[str, float | None]:
    names = ("aif_gain_db", "psnr", "ssim", "depth_abs_rel", "depth_abs_rel_confident", "confident_fraction",
             "contrast", "seconds_per_sweep")
    return dict(zip(names, mean_columns(rows), strict=True))


def print_row(text: str, sweep: str, method: str, rows: list[tuple]) -> None:
    gain, psnr, ssim, abs_rel, confident, share, contrast, seconds = mean_columns(rows)
    contrast_text = "—" if contrast is None else f"{contrast:.3f}"
    abs_rel_text = "—" if abs_rel is None else f"{abs_rel:.3f}"
    confident_text = "—" if confident is None else f"{confident:.3f} ({share:.0%})"
    print(f"| {text} | {sweep} | {method} | {contrast_text} | {gain:+.2f} | {psnr:.2f} | {ssim:.3f} | {abs_rel_text} "
          f"| {confident_text} | {seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
