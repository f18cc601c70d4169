"""Sweeps → all-in-focus images, depth maps and refocus videos, with the shipped model or a checkpoint.

    python src/aif.py [--ckpt RUN_DIR_OR_CKPT] --input CAPTURE_ROOT [MORE ...] --out DIR
        [--name NAME ...] [--device cuda|cpu] [--tile PX] [--grid N] [--max-slices S] [--frames F]
        [--video slices|refocus] [--runtime auto|torch|channels_last|bf16_stack|bf16] [--search-probe net|integration]
        [--contrast-estimator kink|blur_fit] [--event-contrast C] [--anchor-sigma FRACTION] [--no-recolour]
        [--focus-sharpness K] [--merge-scale N]
        [--sim-size HxW] [--format FORMAT]
    python src/aif.py ... --input EVENTS --image FRAME [--meta FILE] [--sweep-us START END]
        [--focus-m NEAR FAR] [--image-time-us T] [--polarity-flip] [--event-response gamma|linear] --out DIR

``--input`` takes any mix of:

- a capture folder in the reference layout (``blurry/<name>.png`` + ``events/<name>.npy`` +
  ``meta/<name>.json``, optional ``aif/`` and ``depth/`` ground truth): every capture in it, or only
  the ``--name`` ones;
- one capture's file, e.g. ``ROOT/blurry/<name>.png`` or ``ROOT/events/<name>.npy``;
- one event file of any format ``evfocus.events.formats`` reads (.npy, .npz, .txt, E2VID/DSEC/Prophesee
  HDF5, .aedat4, Prophesee .raw/.dat) with its frame ``--image FRAME``; its meta (the keys of a capture's
  ``meta/<name>.json``) comes from ``--meta FILE``, else ``EVENTS``' sidecar (``rec.json``/``rec.yaml`` or
  ``rec.raw.json`` beside ``rec.raw``), and the flags ``--sweep-us``, ``--focus-m``, ``--image-time-us``,
  ``--polarity-flip``, ``--event-response`` add to it or win over it (the frame time defaults to the sweep start);
- ``sim:SEEDS`` (``sim:1``, ``sim:0-3``, ``sim:1,5,7``): test-split sweeps of the checkpoint's own
  simulator (``--sim-size HxW`` renders them at another size).

Per sweep, ``DIR/<name>/`` gets ``aif.png``, ``depth.png`` (turbo over the sweep's diopter range,
near = warm), ``depth.npy`` (float32 metres, H×W), ``depth_confidence.npy`` (float32 in [0, 1], H×W;
``evfocus.pipeline.depth.depth_confidence``), ``weights.png`` (the index of each pixel's
heaviest slice, viridis, nearest slice dark), ``refocus.gif`` (the focus moving through the sweep at ``--frames``
times evenly spread over it; by default blended from the focal stack the pipeline already refocused,
with ``--video refocus`` the net refocuses every frame; a strip under each frame marks the sweep
position in the depth map's colours) and ``report.json`` (inputs, sweep timing, search and merge details, timings,
settings and — with ground truth — AIF PSNR/SSIM and depth errors). A sweep's folder appears only
once all its files are written: a failure leaves no partial folder, and an earlier output of the
same name stays as it was.

A refocus-stage checkpoint has no merge net: its slices are merged by Sobel energy, as the
reference's ablation does (``report.json`` says which merge ran). An image-only baseline's checkpoint
(stage ``baseline``) turns the frame alone into ``aif.png`` and writes ``report.json`` (which model ran, the
scores with ground truth); no depth, weights or GIF, and the search and stack options do not apply.
Bad input stops the run with one line naming the problem and exit status 2. This file parses and prints;
the work is ``evfocus.inference``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path

# Spinning OpenMP threads starve everything else on small shared CPU machines (see src/train.py);
# must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tqdm import tqdm

from evfocus.events.contrast import CONTRAST_METHODS
from evfocus.events.formats import FORMATS
from evfocus.events.integration import EVENT_RESPONSES
from evfocus.inference.event_file import CaptureOptions, meta_flags
from evfocus.inference.report import summary_line
from evfocus.inference.run import INPUT_ERRORS, load_model, pick_device, process, with_pipeline_overrides
from evfocus.inference.sources import InputError, resolve_inputs
from evfocus.inference.video import MAX_GIF_FRAMES, VIDEO_MODES
from evfocus.models.runtime import RUNTIME_CHOICES
from evfocus.pipeline.aif import SEARCH_PROBES, PipelineConfig, has_fixed_event_gain


def positive_int(text: str) -> int:
    """argparse type: the options below all count things, so zero or less is a mistake."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``720x1280``) → (height, width); the same order as the tensors' shapes."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 260x346, got {text!r}")
    return int(match[1]), int(match[2])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None, metavar="RUN_OR_CKPT",
                        help="a run folder (its best checkpoint, else last.ckpt), a .ckpt or a weights file "
                             "(default: the shipped model, weights/evfocus-release.pt; weights/README.md)")
    parser.add_argument("--input", required=True, nargs="+", metavar="INPUT",
                        help="capture folder(s), capture file(s) (ROOT/blurry/<name>.png) or sim:SEEDS")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder; one sub-folder per sweep")
    parser.add_argument("--name", action="append", default=None,
                        help="only these captures of the folder inputs (repeatable)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--tile", type=positive_int, default=None, metavar="PX",
                        help="run the nets on overlapping tiles of at most PX pixels (default: the checkpoint's "
                             "pipeline.tile_px, unset = 512 on a CPU, which bounds the memory of large frames, "
                             "and whole frames on a GPU)")
    parser.add_argument("--grid", type=positive_int, default=None, metavar="N", help="focus-search patch grid N (N×N)")
    parser.add_argument("--max-slices", type=positive_int, default=None, metavar="S",
                        help="most focal-stack slices to merge")
    parser.add_argument("--frames", type=int, default=32, metavar="F", help="refocus.gif length (0: no GIF)")
    parser.add_argument("--video", choices=VIDEO_MODES, default="slices",
                        help="how refocus.gif's frames are made: 'slices' cross-fades the input frame and the "
                             "focal stack the pipeline refocused anyway (no network call, well under 1 s); "
                             "'refocus' runs the refocus net once per frame, exact but one full-image pass "
                             "each: about 2 s per 260x346 frame at paper size on 2 CPU cores, so ~70 s for "
                             "32 frames, more than the whole pipeline")
    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto",
                        help="how the nets run, a property of this machine rather than of the checkpoint: "
                             "'auto' (default) is 'bf16_stack' on a CPU with bf16 instructions "
                             "(AVX512-BF16/AMX) and 'channels_last' elsewhere; 'torch' plain, 'channels_last' NHWC "
                             "convolutions (same results up to float rounding), 'bf16_stack' also bfloat16 "
                             "convolutions in the stack and the merge (same search decisions, the images move "
                             "slightly), 'bf16' bfloat16 in the search too (fastest; a few decisions move): "
                             "benchmarks/RESULTS.md")
    parser.add_argument("--search-probe", choices=SEARCH_PROBES, default=None,
                        help="what refocuses the focus search's probes (default: the checkpoint's "
                             "pipeline.search.probe, 'integration'): 'integration' uses event integration at the "
                             "sweep's contrast, no network; 'net' the refocus net itself (the former default: "
                             "the same all-in-focus image within about 0.05 dB on the development and test "
                             "sweeps, other found times for about 40%% of the patches, and 10-17 s more per "
                             "260x346 sweep at paper size on 2 CPU cores): docs/results.md, benchmarks/RESULTS.md")
    parser.add_argument("--contrast-estimator", choices=CONTRAST_METHODS, default=None,
                        help="how each sweep's event contrast is self-calibrated for a per-sweep-contrast "
                             "checkpoint (default: the checkpoint's pipeline.contrast_estimator, 'blur_fit'): "
                             "'blur_fit' refines the overshoot kink by fitting the events to the frame blurred "
                             "further, which follows the sensor's sensitivity; 'kink' alone was the former "
                             "default (shipped model: +1.75 instead of +4.45 dB on simulated 3x-sensitivity "
                             "sweeps, 0.25 dB more on efs_dev; docs/results.md)")
    parser.add_argument("--event-contrast", type=float, default=None, metavar="C",
                        help="the sensor's event contrast when it is known (calibrated), instead of estimating it "
                             "per sweep: the log step of one event, in the log the sensor responds to "
                             "(--event-response), for a per-sweep-contrast checkpoint (the shipped model) and the "
                             "integration probes (default: the checkpoint's pipeline.event_contrast, unset = "
                             "estimated by --contrast-estimator); the net takes C times the checkpoint's "
                             "pipeline.given_contrast_gain (1.3 for the shipped model, which makes its best images "
                             "there; docs/results.md); report.json records the contrast each sweep used")
    parser.add_argument("--anchor-sigma", type=float, default=None, metavar="FRACTION",
                        help="every refocused slice keeps the frame's local mean light, over a Gaussian window "
                             "whose sigma is FRACTION of the image's longer side (default: the checkpoint's "
                             "pipeline.anchor_sigma_fraction, 0.05; 0 turns it off): events drift in brightness "
                             "(sensor leak, unequal ON/OFF thresholds) where defocus conserves light (shipped "
                             "model: efs_dev +6.21 against +5.09 dB off; docs/results.md)")
    parser.add_argument("--no-recolour", dest="recolour", action="store_false", default=None,
                        help="keep the merged slices' colour (the frame's, scaled by the refocusing) instead of "
                             "refitting the all-in-focus image's chroma from the frame's local colour lines on its "
                             "sharp brightness (pipeline.recolour, on by default: efs_dev +6.21 against +5.82 dB; "
                             "docs/results.md)")
    parser.add_argument("--focus-sharpness", type=float, default=None, metavar="K",
                        help="the image merges the slices with the merge's weights times each slice's local focus "
                             "energy to the power K (default: the checkpoint's pipeline.focus_sharpness, 32; 0: the "
                             "merge's weights as they are): the sharpest slice where focus is decisive, the merge's "
                             "blend where slices tie (shipped model: efs_dev_dense +7.18 against +6.69 dB; "
                             "docs/results.md); the depth reads the merge's own weights")
    parser.add_argument("--merge-scale", type=int, default=None, metavar="N",
                        help="the merge net sees the stack averaged down by N and its weights are upsampled "
                             "(default: the checkpoint's pipeline.merge_scale, 2; 1: full resolution, about 2-4 s "
                             "more per 260x346 sweep at paper size on 2 CPU cores; shipped model: the image within "
                             "0.04 dB, the depth within 0.02 AbsRel: docs/results.md)")
    parser.add_argument("--sim-size", type=parse_size, default=None, metavar="HxW", help="render sim: inputs at HxW")
    parser.add_argument("--format", choices=sorted(FORMATS), default=None,
                        help="the event files' format (default: detected from content, then suffix)")
    single = parser.add_argument_group("one event file (--input EVENTS)")
    single.add_argument("--image", type=Path, default=None, metavar="FRAME", help="the conventional frame (PNG)")
    single.add_argument("--meta", type=Path, default=None, metavar="FILE",
                        help="meta JSON/YAML (default: EVENTS' sidecar, e.g. rec.json beside rec.raw)")
    single.add_argument("--sweep-us", type=int, nargs=2, default=None, metavar=("START", "END"),
                        help="sweep start and end, µs on the events' clock")
    single.add_argument("--focus-m", type=float, nargs=2, default=None, metavar=("NEAR", "FAR"),
                        help="focus distance at the sweep's start and end, metres (linear in diopters)")
    single.add_argument("--image-time-us", type=int, default=None, metavar="T",
                        help="the frame's moment (default: the sweep start)")
    single.add_argument("--polarity-flip", action="store_true", help="negate every event (ON/OFF reversed)")
    single.add_argument("--event-response", choices=EVENT_RESPONSES, default=None,
                        help="what the event pixels respond to: gamma (the frame's stored values, as for events "
                             "simulated from the frames; the default) or linear (linear light, as a real "
                             "photoreceptor beside an sRGB-encoded frame); the contrast calibration and the "
                             "integration take that log")
    return parser


def capture_options(args: argparse.Namespace) -> CaptureOptions:
    return CaptureOptions(args.format, args.image, args.meta,
                          meta_flags(args.sweep_us, args.focus_m, args.image_time_us, args.polarity_flip,
                                     args.event_response))


def check_options(args: argparse.Namespace) -> None:
    """Range checks argparse cannot express, before anything heavy is loaded."""
    if not 0 <= args.frames <= MAX_GIF_FRAMES:
        raise InputError(f"--frames must be in 0..{MAX_GIF_FRAMES}, got {args.frames}")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a folder")
    overlap = PipelineConfig.tile_overlap_px
    if args.anchor_sigma is not None and not (math.isfinite(args.anchor_sigma) and args.anchor_sigma >= 0):
        raise InputError(f"--anchor-sigma must be a fraction >= 0 of the image's longer side (0: off), "
                         f"got {args.anchor_sigma}")
    if args.focus_sharpness is not None and not (math.isfinite(args.focus_sharpness) and args.focus_sharpness >= 0):
        raise InputError(f"--focus-sharpness must be >= 0 (0: off), got {args.focus_sharpness}")
    if args.event_contrast is not None and not (math.isfinite(args.event_contrast) and args.event_contrast > 0):
        raise InputError(f"--event-contrast must be a positive log step per event, got {args.event_contrast}")
    if args.merge_scale is not None and args.merge_scale < 1:
        raise InputError(f"--merge-scale must be >= 1 (1: full resolution), got {args.merge_scale}")
    if args.tile is not None and args.tile <= 2 * overlap:
        raise InputError(f"--tile must exceed twice the tile overlap ({2 * overlap} px), got {args.tile}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_options(args)
        device = pick_device(args.device)
        model = load_model(args.ckpt, device)
        if args.event_contrast is not None and model.refocus is not None and has_fixed_event_gain(model.refocus):
            raise InputError(f"--event-contrast: the refocus net of {model.checkpoint.path} has one global event "
                             f"gain, not a per-sweep contrast, so it cannot take a given one")
        sources = resolve_inputs(args.input, args.name, model.checkpoint.cfg, args.sim_size, capture_options(args))
        cfg = with_pipeline_overrides(model.checkpoint.cfg, args.grid, args.max_slices, args.tile, args.runtime,
                                      args.search_probe, args.contrast_estimator, args.anchor_sigma, args.recolour,
                                      args.focus_sharpness, args.merge_scale, args.event_contrast)
        print(f"checkpoint {model.checkpoint.path} ({model.summary()}), {len(sources)} sweep(s) on {device}",
              file=sys.stderr)
        for source in tqdm(sources, desc="sweeps", unit="sweep"):
            report = process(source, model, cfg, args.out, args.frames, device, args.video)
            tqdm.write(summary_line(report), file=sys.stderr)
    except INPUT_ERRORS as error:
        message = " ".join(str(error).splitlines())
        parser.exit(2, f"{parser.prog}: error: {message}\n")
    print(f"wrote {len(sources)} sweep(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
