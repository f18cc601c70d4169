"""Sweeps → all-in-focus images, depth maps and refocus videos with a trained checkpoint.

    python src/aif.py --ckpt RUN_DIR_OR_CKPT --input CAPTURE_ROOT [MORE ...] --out DIR
        [--name NAME ...] [--device cuda|cpu] [--tile PX] [--grid N] [--max-slices S] [--frames F]
        [--sim-size HxW]

``--input`` takes any mix of:

- a capture folder in the reference layout (``blurry/<name>.png`` + ``events/<name>.npy`` +
  ``meta/<name>.json``, optional ``aif/`` and ``depth/`` ground truth): every capture in it, or only
  the ``--name`` ones;
- one capture's file, e.g. ``ROOT/blurry/<name>.png`` or ``ROOT/events/<name>.npy``;
- ``sim:SEEDS`` (``sim:1``, ``sim:0-3``, ``sim:1,5,7``): test-split sweeps of the checkpoint's own
  simulator (``--sim-size HxW`` renders them at another size).

Per sweep, ``DIR/<name>/`` gets ``aif.png``, ``depth.png`` (turbo over the sweep's diopter range,
near = warm), ``depth.npy`` (float32 metres, H×W), ``depth_confidence.npy`` (float32 in [0, 1], H×W;
``evfocus.pipeline.depth.depth_confidence``), ``weights.png`` (the index of each pixel's
heaviest slice, viridis, nearest slice dark), ``refocus.gif`` (the frame refocused at ``--frames``
times evenly spread over the sweep; a strip under each frame marks the sweep position in the
depth map's colours) and ``report.json`` (inputs, sweep timing, search and merge details, timings,
settings and — with ground truth — AIF PSNR/SSIM and depth errors). A sweep's folder appears only
once all its files are written: a failure leaves no partial folder, and an earlier output of the
same name stays as it was.

A refocus-stage checkpoint has no merge net: its slices are merged by Sobel energy, as the
reference's ablation does (``report.json`` says which merge ran). Bad input stops the run with one
line naming the problem and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Spinning OpenMP threads starve everything else on small shared CPU machines (see src/train.py);
# must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import imageio.v3 as iio
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from tqdm import tqdm

from evfocus.checkpoints import CheckpointError, StageCheckpoint, load_nets, load_stage_checkpoint
from evfocus.config import ConfigError
from evfocus.data.captures import list_captures, read_capture
from evfocus.events.binning import EventRepresentationError
from evfocus.events.focal_stack import EventFocalStack
from evfocus.events.io import EventFileError
from evfocus.events.stream import EventStreamError
from evfocus.optics import FocusSchedule, OpticsError
from evfocus.pipeline.aif import AIFPipeline, AIFResult, PipelineConfig, refocus_stack
from evfocus.pipeline.depth import depth_errors, depth_scores, normalised_diopter
from evfocus.pipeline.settings import pipeline_config
from evfocus.sweep import Sweep, SweepError
from evfocus.visualize import colour_map

STAGES_WITH_REFOCUS = ("refocus", "merge", "joint")
CAPTURE_SUBFOLDERS = ("blurry", "events", "meta", "aif", "depth")
GIF_FRAME_MS = 80  # 12.5 frames/s: 32 frames loop in about 2.6 s
MAX_GIF_FRAMES = 500
SIM_PATTERN = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
# Errors that mean "this input or checkpoint is unusable": reported in one line, never a traceback.
INPUT_ERRORS = (CheckpointError, EventFileError, EventStreamError, EventRepresentationError, SweepError,
                OpticsError, ConfigError)


class InputError(ValueError):
    """A command-line input that names nothing usable (missing folder, unknown capture, bad option)."""


@dataclass(frozen=True)
class SweepSource:
    """One sweep to process, read lazily so only one sweep's events sit in memory at a time."""

    name: str
    description: str
    load: Callable[[], Sweep]


@dataclass
class Model:
    """The checkpoint's nets, in eval mode on the chosen device, plus what to report about them."""

    checkpoint: StageCheckpoint
    refocus: nn.Module
    merge: nn.Module | None

    @property
    def merge_name(self) -> str:
        return "EvMergeNet" if self.merge is not None else "sobel_energy"


# ---------------------------------------------------------------------------------- arguments
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
    parser.add_argument("--ckpt", required=True, metavar="RUN_OR_CKPT",
                        help="a run folder (its best checkpoint, else last.ckpt) or .ckpt")
    parser.add_argument("--input", required=True, nargs="+", metavar="INPUT",
                        help="capture folder(s), capture file(s) (ROOT/blurry/<name>.png) or sim:SEEDS")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder; one sub-folder per sweep")
    parser.add_argument("--name", action="append", default=None,
                        help="only these captures of the folder inputs (repeatable)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--tile", type=positive_int, default=None, metavar="PX",
                        help="run the nets on overlapping tiles of at most PX pixels (large images)")
    parser.add_argument("--grid", type=positive_int, default=None, metavar="N", help="focus-search patch grid N (N×N)")
    parser.add_argument("--max-slices", type=positive_int, default=None, metavar="S",
                        help="most focal-stack slices to merge")
    parser.add_argument("--frames", type=int, default=32, metavar="F", help="refocus.gif length (0: no GIF)")
    parser.add_argument("--sim-size", type=parse_size, default=None, metavar="HxW", help="render sim: inputs at HxW")
    return parser


def check_options(args: argparse.Namespace) -> None:
    """Range checks argparse cannot express, before anything heavy is loaded."""
    if not 0 <= args.frames <= MAX_GIF_FRAMES:
        raise InputError(f"--frames must be in 0..{MAX_GIF_FRAMES}, got {args.frames}")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a folder")
    overlap = PipelineConfig.tile_overlap_px
    if args.tile is not None and args.tile <= 2 * overlap:
        raise InputError(f"--tile must exceed twice the tile overlap ({2 * overlap} px), got {args.tile}")


def pick_device(name: str | None) -> torch.device:
    """The requested device, checked now so a missing GPU fails before any work, not mid-sweep."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"--device {name!r} is not a torch device ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    return device


# ---------------------------------------------------------------------------------- checkpoint
def load_model(path: str, device: torch.device) -> Model:
    """Refocus net (+ merge net for merge/joint stages) from a checkpoint or run folder."""
    checkpoint = load_stage_checkpoint(path, STAGES_WITH_REFOCUS)
    refocus, merge = load_nets(checkpoint)
    refocus, merge = refocus.to(device), (merge.to(device) if merge is not None else None)
    return Model(checkpoint, refocus, merge)


# ---------------------------------------------------------------------------------- inputs
def parse_seeds(spec: str) -> list[int]:
    """``1`` / ``0-3`` / ``1,5,7-9`` → seeds in the order given, duplicates dropped."""
    if not SIM_PATTERN.fullmatch(spec):
        raise InputError(f"--input sim:{spec}: expected seeds like sim:1, sim:0-3 or sim:1,5,7")
    seeds: list[int] = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise InputError(f"--input sim:{spec}: range {part} runs backwards")
        seeds.extend(seed for seed in range(first, last + 1) if seed not in seeds)
    return seeds


def sim_sources(spec: str, cfg: DictConfig, size: tuple[int, int] | None) -> list[SweepSource]:
    """Test-split sweeps of the checkpoint's simulator: the sweeps its own test step scored."""
    from evfocus.sim.simulator import SweepSimulator

    sim_cfg = OmegaConf.create(OmegaConf.to_container(cfg.sim, resolve=True))
    if size is not None:
        sim_cfg.height, sim_cfg.width = size
    simulator = SweepSimulator(sim_cfg, "test")
    where = f"sim {sim_cfg.height}x{sim_cfg.width}"
    return [SweepSource(f"sim-test-{seed}", f"{where} seed {seed}", lambda seed=seed: simulator.simulate(seed))
            for seed in parse_seeds(spec)]


def capture_source(root: Path, name: str) -> SweepSource:
    return SweepSource(name, str(root / "blurry" / f"{name}.png"), lambda: read_capture(root, name))


def folder_sources(root: Path, names: list[str] | None) -> tuple[list[SweepSource], list[str]]:
    """A reference-layout folder's captures (all, or those among ``--name``) and every name it holds."""
    available = list_captures(root)
    if not available:
        raise InputError(f"{root}: no captures (no blurry/<name>.png with a matching events/<name>.npy)")
    chosen = available if names is None else [name for name in names if name in available]
    return [capture_source(root, name) for name in chosen], available


def file_source(path: Path) -> SweepSource:
    """``ROOT/<blurry|events|meta|aif|depth>/<name>.*`` → that capture of ROOT."""
    if path.parent.name not in CAPTURE_SUBFOLDERS:
        raise InputError(f"{path}: not a capture folder or a capture file (expected ROOT, ROOT/blurry/<name>.png, "
                         "ROOT/events/<name>.npy or sim:SEEDS)")
    root, name = path.parent.parent, path.stem
    if name not in list_captures(root):
        raise InputError(f"{path}: {root} has no capture '{name}' "
                         f"(needs blurry/{name}.png and events/{name}.npy)")
    return capture_source(root, name)


def resolve_inputs(inputs: list[str], names: list[str] | None, cfg: DictConfig,
                   sim_size: tuple[int, int] | None) -> list[SweepSource]:
    """Every ``--input`` → the sweeps to process, checked up front (names must not collide in --out)."""
    sources: list[SweepSource] = []
    folder_names: list[str] = []
    if sim_size is not None and not any(text.startswith("sim:") for text in inputs):
        raise InputError("--sim-size applies to sim: inputs, but no --input is one")
    for text in inputs:
        if text.startswith("sim:"):
            sources.extend(sim_sources(text[4:], cfg, sim_size))
            continue
        path = Path(text)
        if not path.exists():
            raise InputError(f"--input {text}: no such file or folder")
        if path.is_dir():
            found, available = folder_sources(path, names)
            sources.extend(found)
            folder_names.extend(available)
        else:
            sources.append(file_source(path))
    if names is not None:
        if not folder_names:
            raise InputError("--name selects captures of folder inputs, but no --input is a folder")
        unknown = [name for name in names if name not in folder_names]
        if unknown:
            shown = ", ".join(sorted(set(folder_names))[:10]) + (", ..." if len(set(folder_names)) > 10 else "")
            raise InputError(f"no capture named {', '.join(unknown)} in the folder input(s) (available: {shown})")
    seen: dict[str, str] = {}
    for source in sources:
        if source.name in seen:
            raise InputError(f"two inputs are both named '{source.name}' ({seen[source.name]} and "
                             f"{source.description}); their outputs would overwrite each other")
        seen[source.name] = source.description
    return sources


# ---------------------------------------------------------------------------------- pipeline
def pipeline_settings(cfg: DictConfig, args: argparse.Namespace) -> DictConfig:
    """The checkpoint's config with the command-line overrides of its ``pipeline`` section applied."""
    settings = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    if args.grid is not None:
        settings.pipeline.search.grid_size = args.grid
    if args.max_slices is not None:
        settings.pipeline.max_slices = args.max_slices
    if args.tile is not None:
        settings.pipeline.tile_px = args.tile
    return settings


def sweep_pipeline_config(settings: DictConfig, sweep: Sweep, device: torch.device) -> PipelineConfig:
    """Per sweep, because tolerances and event floors scale with its size and duration."""
    grid = settings.pipeline.search.grid_size
    if grid > min(sweep.height, sweep.width):
        raise InputError(f"{sweep.name}: a {grid}x{grid} search grid does not fit its "
                         f"{sweep.height}x{sweep.width} image (use a smaller --grid)")
    return pipeline_config(settings, sweep, device)


@torch.no_grad()
def refocus_frames(model: Model, config: PipelineConfig, sweep: Sweep, times_us: Tensor,
                   device: torch.device) -> np.ndarray:
    """The frame refocused at each time (F,), batched and tiled like the stack: (F, H, W, 3) uint8.

    Chunks are converted to uint8 at once, so a long GIF of a large frame never holds F float images.
    """
    schedule = sweep.schedule
    events = sweep.events.to(device)
    image = sweep.image.to(device)
    focal_stack = EventFocalStack.from_events(events, schedule.t_start_us, schedule.t_end_us,
                                              config.efs_fine_bins)
    refocus = model.refocus.for_sweep(image, focal_stack, float(sweep.image_time_us))
    frames = []
    for chunk in times_us.to(device).split(config.slices_per_batch):
        stack, _ = refocus_stack(refocus, image, sweep.image_time_us, focal_stack, chunk,
                                 config.search.num_bins, config.slices_per_batch, config.tile_px,
                                 config.tile_overlap_px)
        frames.append(to_uint8(stack))
    return np.concatenate(frames)


def to_uint8(images: Tensor) -> np.ndarray:
    """(…, C, H, W) in [0, 1] → (…, H, W, 3) uint8; grey is repeated so every writer sees RGB."""
    if images.shape[-3] == 1:
        images = images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    pixels = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.movedim(-3, -1).cpu().numpy()


def position_strip(frames: np.ndarray, times_us: Tensor, schedule: FocusSchedule) -> np.ndarray:
    """Frames with a strip underneath: its filled length and colour mark the sweep position.

    It tells a viewer where in the sweep a frame sits, in the depth map's colours; it also keeps
    consecutive GIF frames distinct (Pillow's GIF writer drops a frame identical to the previous
    one, which would shorten the video where a patch of the sweep has no events).
    """
    count, height, width = frames.shape[:3]
    strip = np.full((count, max(3, height // 60), width, 3), 40, dtype=np.uint8)
    fraction = ((times_us.double() - schedule.t_start_us) / schedule.duration_us).clamp(0, 1)
    colours = to_uint8(colour_map(1.0 - fraction.float()[None, None], "turbo"))[0]  # (F, 3): near = warm
    for index in range(count):
        filled = max(1, round(float(fraction[index]) * width))
        strip[index, :, :filled] = colours[index]
    return np.concatenate([frames, strip], axis=1)


def write_gif(path: Path, frames: np.ndarray) -> None:
    """(F, H, W, 3) uint8 → a looping GIF with one median-cut palette for all frames, dithered.

    Pillow's default quantises every frame by median cut on its own: 0.8 s per 346×260 frame on a
    busy 2-core machine (longer than refocusing it), and colour gradients band. One palette from
    a sample of the frames, then Floyd–Steinberg onto it, costs ~0.01 s a frame and looks smooth.
    """
    sample = frames[:: max(1, len(frames) // 8)][:8, ::2, ::2]
    palette = Image.fromarray(np.concatenate(list(sample), axis=0)).quantize(255, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
              for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=GIF_FRAME_MS, loop=0)


# ---------------------------------------------------------------------------------- metrics + report
def quality_metrics(sweep: Sweep, result: AIFResult) -> dict[str, Any] | None:
    """AIF and input-frame PSNR/SSIM (data_range 1, full RGB image) and depth errors, when truth exists."""
    metrics: dict[str, Any] = {}
    if sweep.aif is not None:
        target = sweep.aif.float().cpu()[None]
        for label, image in (("aif", result.aif.float().cpu().clamp(0, 1)), ("input", sweep.image.float().cpu())):
            metrics[label] = {
                "psnr": float(peak_signal_noise_ratio(image[None], target, data_range=1.0)),
                "ssim": float(structural_similarity_index_measure(image[None], target, data_range=1.0)),
            }
    if sweep.depth_m is not None:
        truth = sweep.depth_m.float().cpu()
        valid = torch.isfinite(truth)  # +inf marks pixels with no surface
        if bool(valid.any()):
            metrics["depth"] = depth_scores(result.depth_m.float().cpu(), result.depth_confidence.cpu(), truth)
            metrics["patch_depth"] = depth_errors(result.patch_depth_m.float().cpu(), truth, valid)
            metrics["depth_valid_fraction"] = float(valid.float().mean())
    return metrics or None


def source_info(sweep: Sweep, source: SweepSource) -> dict[str, Any]:
    """Where the sweep came from: files and polarity convention of a capture, or the simulator draw."""
    meta = sweep.meta
    if meta.get("source") == "capture":
        return {"kind": "capture", "root": meta["root"], "files": meta["files"], "polarity": meta["polarity"],
                "schedule_source": meta["schedule_source"]}
    return {"kind": "sim", "description": source.description, **meta}


def build_report(sweep: Sweep, source: SweepSource, result: AIFResult, model: Model, config: PipelineConfig,
                 gif_times_us: Tensor, seconds: dict[str, float], device: torch.device) -> dict[str, Any]:
    """Everything needed to trust or reproduce this output, as plain JSON values."""
    schedule = sweep.schedule
    events = sweep.events
    search = result.search
    grid = config.search.grid_size
    num_on = int((events.p > 0).sum())
    note = None if model.merge is not None else "refocus-stage checkpoint: no merge net, Sobel-energy merge"
    return {
        "name": sweep.name,
        "source": source_info(sweep, source),
        "image_size": {"height": sweep.height, "width": sweep.width, "channels": int(sweep.image.shape[0])},
        "events": {"count": len(events), "on": num_on, "off": len(events) - num_on,
                   "first_us": int(events.t_us[0]) if len(events) else None,
                   "last_us": int(events.t_us[-1]) if len(events) else None},
        "sweep": {"t_start_us": schedule.t_start_us, "t_end_us": schedule.t_end_us,
                  "duration_us": schedule.duration_us, "near_m": schedule.near_m, "far_m": schedule.far_m},
        "image_time_us": int(sweep.image_time_us),
        "slice_times_us": result.slice_times_us.tolist(),
        "slice_focus_m": schedule.focus_m(result.slice_times_us.double().cpu()).tolist(),
        "patch_grid": {"grid_size": grid, "boxes_top_left_height_width": search.patch_boxes.tolist()},
        "patch_focus_times_us": search.times_us.reshape(grid, grid).tolist(),
        "low_event_patches": search.low_event_mask.reshape(grid, grid).tolist(),
        "num_low_event_patches": int(search.low_event_mask.sum()),
        "num_refocus_calls": result.num_refocus_calls,
        "search_refocus_calls": search.num_refocus_calls,
        "seconds": seconds,
        "checkpoint": {"path": str(model.checkpoint.path), "stage": model.checkpoint.stage,
                       "merge": model.merge_name, "note": note},
        "device": str(device),
        "pipeline": dataclasses.asdict(config),
        "refocus_gif": {"frames": len(gif_times_us), "frame_ms": GIF_FRAME_MS,
                        "times_us": gif_times_us.tolist()},
        "metrics": quality_metrics(sweep, result),
    }


def jsonable(value: Any) -> Any:
    """Non-finite floats → None, so the report is strict JSON any reader accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


# ---------------------------------------------------------------------------------- one sweep
@contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A hidden sibling folder to write into, renamed to ``final`` only when the block succeeds.

    A failure anywhere in the block leaves no folder behind, and an earlier output of the same name
    untouched; success replaces that earlier output, which is deleted only once the new one is in place.
    """
    if final.exists() and not final.is_dir():
        raise InputError(f"{final}: exists and is not a folder; it cannot hold this sweep's outputs")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    earlier = final.with_name(f".{final.name}.earlier-{uuid.uuid4().hex[:8]}")
    if final.exists():
        final.rename(earlier)
    staging.rename(final)
    shutil.rmtree(earlier, ignore_errors=True)


def write_images(folder: Path, sweep: Sweep, result: AIFResult) -> None:
    """aif.png, depth.png + depth.npy (metres) and weights.png (heaviest slice per pixel)."""
    schedule = sweep.schedule
    iio.imwrite(folder / "aif.png", to_uint8(result.aif))
    depth = result.depth_m.float().cpu()
    iio.imwrite(folder / "depth.png", to_uint8(colour_map(normalised_diopter(depth, schedule), "turbo")))
    np.save(folder / "depth.npy", depth[0].numpy().astype(np.float32))
    np.save(folder / "depth_confidence.npy", result.depth_confidence[0].float().cpu().numpy())
    np.save(folder / "depth_confidence.npy", result.depth_confidence[0].float().cpu().numpy())
    slices = result.slice_index.float().cpu() / max(1, len(result.slice_times_us) - 1)
    iio.imwrite(folder / "weights.png", to_uint8(colour_map(slices[None], "viridis")))


def process(source: SweepSource, model: Model, settings: DictConfig, args: argparse.Namespace,
            device: torch.device) -> dict[str, Any]:
    """Read one sweep, run search → stack → merge, write its outputs; returns its report.

    ``DIR/<name>/`` appears only once all of its files are written (see ``staged_folder``).
    """
    started = time.perf_counter()
    sweep = source.load()
    config = sweep_pipeline_config(settings, sweep, device)
    seconds = {"load": time.perf_counter() - started}
    result = AIFPipeline(model.refocus, model.merge, config)(sweep, device)
    seconds.update(result.seconds)

    schedule = sweep.schedule
    gif_times = torch.linspace(schedule.t_start_us, schedule.t_end_us, args.frames, dtype=torch.float64)
    with staged_folder(args.out / sweep.name) as folder:
        if args.frames:
            mark = time.perf_counter()
            frames = refocus_frames(model, config, sweep, gif_times, device)
            seconds["refocus_gif"] = time.perf_counter() - mark
            write_gif(folder / "refocus.gif", position_strip(frames, gif_times, schedule))
        mark = time.perf_counter()
        write_images(folder, sweep, result)
        seconds["write"] = time.perf_counter() - mark
        report = build_report(sweep, source, result, model, config, gif_times, seconds, device)
        (folder / "report.json").write_text(json.dumps(jsonable(report), indent=1, allow_nan=False))
    return report


def summary_line(report: dict[str, Any]) -> str:
    size = report["image_size"]
    line = (f"{report['name']}: {size['height']}x{size['width']}, {report['events']['count']} events, "
            f"{len(report['slice_times_us'])} slices, {report['num_refocus_calls']} refocus calls, "
            f"{report['seconds']['total']:.2f} s pipeline")
    metrics = report["metrics"] or {}
    if "aif" in metrics:
        line += f", AIF PSNR {metrics['aif']['psnr']:.2f} dB (input {metrics['input']['psnr']:.2f})"
    if "depth" in metrics:
        line += f", depth abs_rel {metrics['depth']['abs_rel']:.3f}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_options(args)
        device = pick_device(args.device)
        model = load_model(args.ckpt, device)
        sources = resolve_inputs(args.input, args.name, model.checkpoint.cfg, args.sim_size)
        settings = pipeline_settings(model.checkpoint.cfg, args)
        print(f"checkpoint {model.checkpoint.path} (stage {model.checkpoint.stage}, merge {model.merge_name}), "
              f"{len(sources)} sweep(s) on {device}", file=sys.stderr)
        for source in tqdm(sources, desc="sweeps", unit="sweep"):
            tqdm.write(summary_line(process(source, model, settings, args, device)), file=sys.stderr)
    except (InputError, *INPUT_ERRORS) as error:
        message = " ".join(str(error).splitlines())
        parser.exit(2, f"{parser.prog}: error: {message}\n")
    print(f"wrote {len(sources)} sweep(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
