"""Which focus-search settings work best? Search domain (time vs event count) × sharpness measure; or, with
``--variants``, does a faster search make the same decisions as today's?

Scores the whole pipeline (search → stack → merge) of a trained checkpoint on the *validation*
sweeps — choosing defaults on the test set would leak — by AIF PSNR and depth AbsRel.

    python benchmarks/compare_search.py --ckpt runs/evfocus/quickstart-refocus [--sweeps 6]

``--variants`` takes ``pipeline`` overrides, one variant each (``search.probe_scale=2``,
``search.probe_scale=2,search.max_iters=20``), and runs each beside the checkpoint's own settings on the same
sweeps (validation sweeps, and the captures of any ``--input`` folder): per variant, the share of
searched patches whose found time lies within the search tolerance of today's, the largest gap in
tolerances, the AIF PSNR change and the search time as a ratio to today's (medians, same process).

    python benchmarks/compare_search.py --ckpt RUN --variants search.probe_scale=2 --input ../shared/samples/efs_dev
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from omegaconf import DictConfig, OmegaConf

from evfocus.checkpoints import load_nets, load_stage_checkpoint
from evfocus.config import with_pipeline_changes
from evfocus.data.captures import list_captures, read_capture
from evfocus.data.simulated import build_eval_sweeps
from evfocus.image_scores import image_quality
from evfocus.pipeline.aif import AIFPipeline, AIFResult
from evfocus.pipeline.depth import depth_errors
from evfocus.pipeline.settings import pipeline_config
from evfocus.sweep import Sweep


def with_variant(cfg: DictConfig, text: str) -> DictConfig:
    """``cfg`` with ``key=value,key=value`` applied under ``pipeline`` (dotted keys, values parsed as YAML:
    ``anchor_sigma_fraction=null`` sets None), type-checked by the config's schema."""
    return with_pipeline_changes(OmegaConf.merge(cfg, {}), [item for item in text.split(",") if item])


def run(cfg: DictConfig, refocus, merge, sweep: Sweep) -> tuple[AIFResult, float]:
    config = pipeline_config(cfg, sweep)
    result = AIFPipeline(refocus, merge, config)(sweep)
    return result, config.search.tolerance_us


def compare_variants(cfg: DictConfig, refocus, merge, sweeps: list[Sweep], variants: list[str], repeats: int) -> None:
    """Today's settings and each variant on every sweep, interleaved, ``repeats`` times (timings: medians)."""
    settings = {"today": cfg} | {text: with_variant(cfg, text) for text in variants}
    print("| variant | searched patches within tolerance of today's | max gap (tolerances) | AIF PSNR − today's (dB) "
          "| search probes | search s / today's (median) |")
    print("|---|---|---|---|---|---|")
    rows: dict[str, dict[str, list]] = {name: {"within": [], "gap": [], "psnr": [], "probes": [], "ratio": []}
                                        for name in settings}
    for sweep in sweeps:
        seconds: dict[str, list[float]] = {name: [] for name in settings}
        results: dict[str, AIFResult] = {}
        for _ in range(repeats):
            for name, variant_cfg in settings.items():
                results[name], tolerance = run(variant_cfg, refocus, merge, sweep)
                seconds[name].append(results[name].seconds["search"])
        today = results["today"]
        searched = ~today.search.low_event_mask.flatten()
        for name, result in results.items():
            gap = ((result.search.times_us - today.search.times_us).abs().flatten()[searched] / tolerance)
            row = rows[name]
            row["within"].append(float((gap <= 1.0).float().mean()) if bool(searched.any()) else 1.0)
            row["gap"].append(float(gap.max()) if bool(searched.any()) else 0.0)
            psnr = image_quality(result.aif, sweep.aif)["psnr"] - image_quality(today.aif, sweep.aif)["psnr"]
            row["psnr"].append(psnr)
            row["probes"].append(int(torch.isfinite(result.search.probes_t_us).sum()))
            row["ratio"].append(statistics.median(seconds[name]) / statistics.median(seconds["today"]))
        print(f"<!-- {sweep.name}: " + ", ".join(f"{name} {statistics.median(s):.2f} s" for name, s in seconds.items())
              + " -->", flush=True)
    for name, row in rows.items():
        print(f"| {name} | {100 * statistics.mean(row['within']):.1f}% | {max(row['gap']):.2f} | "
              f"{statistics.mean(row['psnr']):+.3f} (worst {min(row['psnr']):+.3f}) | "
              f"{statistics.mean(row['probes']):.0f} | "
              f"{statistics.median(row['ratio']):.2f} |")


def compare_settings(cfg: DictConfig, refocus, merge, sweeps: list[Sweep]) -> None:
    print("| domain | sharpness | AIF PSNR (dB) | input PSNR (dB) | depth AbsRel | refocus calls | s/sweep |")
    print("|---|---|---|---|---|---|---|")
    for domain in ("time", "events"):
        for sharpness in ("variance", "gradient"):
            settings = OmegaConf.merge(cfg, {"pipeline": {"search": {"domain": domain, "sharpness": sharpness}}})
            psnr, identity, abs_rel, calls, seconds = [], [], [], [], []
            for sweep in sweeps:
                result, _ = run(settings, refocus, merge, sweep)
                psnr.append(image_quality(result.aif, sweep.aif)["psnr"])
                identity.append(image_quality(sweep.image, sweep.aif)["psnr"])
                abs_rel.append(depth_errors(result.depth_m, sweep.depth_m)["abs_rel"])
                calls.append(result.num_refocus_calls)
                seconds.append(result.seconds["total"])
            print(f"| {domain} | {sharpness} | {statistics.mean(psnr):.2f} | {statistics.mean(identity):.2f} | "
                  f"{statistics.mean(abs_rel):.3f} | {statistics.mean(calls):.1f} | {statistics.median(seconds):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint file, weights file or run folder (any stage)")
    parser.add_argument("--sweeps", type=int, default=6, help="validation sweeps to score")
    parser.add_argument("--variants", nargs="*", default=None,
                        help="pipeline overrides to compare with today's settings (key=value[,key=value])")
    parser.add_argument("--input", nargs="*", default=[], help="with --variants: capture folders to add")
    parser.add_argument("--repeats", type=int, default=1, help="with --variants: timed runs per sweep and variant")
    args = parser.parse_args()
    torch.set_num_threads(2)

    checkpoint = load_stage_checkpoint(args.ckpt)
    cfg = checkpoint.cfg
    refocus, merge = load_nets(checkpoint)
    sweeps = build_eval_sweeps(cfg, "val", cfg.seed)[: args.sweeps] if args.sweeps else []
    sweeps += [read_capture(folder, name) for folder in args.input for name in list_captures(folder)]
    started = time.perf_counter()
    print(f"checkpoint {checkpoint.path} (stage {checkpoint.stage}); {len(sweeps)} sweeps "
          f"({args.sweeps} validation {cfg.sim.height}x{cfg.sim.width}, captures of {args.input or 'no folder'}), "
          f"grid {cfg.pipeline.search.grid_size}")
    if args.variants is None:
        compare_settings(cfg, refocus, merge, sweeps)
    else:
        compare_variants(cfg, refocus, merge, sweeps, args.variants, args.repeats)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
