"""All-in-focus pipeline end to end: batched vs ``reference`` mode, same nets, same sweep, one process.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_aif.py --domains events --repeats 3 --reference-repeats 2
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_aif.py --repeats 3 --reference-repeats 0   # 2 CPU cores

On 2 shared CPU cores the reference mode takes ~15 min per run at full size (and its 64-slice EvMergeNet
call needs many GB), so ``--reference-repeats 0`` runs only the batched pipeline and projects the reference
mode from its unit costs timed in the same process (one full-image refocus pass, single-crop probes;
the reference's probe count follows exactly from the batched search's, its merge is scaled linearly in
the slice count, which underestimates it). Use the full comparison on a GPU (``--device cuda``).

The reference implementation itself (a checkout of HYLZ-2019/EFS, run by ``official_efs.py`` in its own
process) joins the same run with ``--official DIR``, and the whole ``src/aif.py`` command with
``--command-repeats`` (``--command-runtimes``, ``--command-search-probes``, ``--command-merge-scales`` for its
flags):

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_aif.py --capture ../shared/samples/efs_dev_dense/d01_shelf \
        --repeats 2 --reference-repeats 0 --command-repeats 2 --command-search-probes net integration \
        --runtime auto --official /tmp/EFS --official-repeats 2

Issue 3 §7: a 260×346 sweep with about 1 M events, an 8×8 patch grid, the paper-size nets of
``configs/merge.yaml`` (EvRefocusNet width 64 → 4.86 M parameters, EvMergeNet width 47 → 5.77 M, the
reference's sizes). ``mode="reference"`` reproduces the reference implementation's costs (sequential
per-patch golden section probing both interior points, one slice per patch = 64 full-image refocus
calls, merge of all 64 slices); ``mode="batched"`` is ours (all patches per refocus call, one new
probe per iteration, found times clustered into at most ``pipeline.max_slices`` slices).

The nets are randomly initialised (seeded): speed does not depend on the weights. EvRefocusNet is the
identity at initialisation (its last 1×1 conv ``to_residual`` starts at zero), which would make every
probe equally sharp; here that conv gets small random weights (``--residual-std``) so the probes
differ and the golden section takes real decisions. Both modes see the same nets, so with a unimodal
sharpness curve they should find the same brackets; the script reports how many patches agree.

The sweep comes from the simulator (ideal event model, fixed threshold, linear response; seed and
threshold picked so the sweep has ~1 M events). Runs of the two modes are interleaved so that they
share the load of a shared machine alike; wall and process CPU seconds are reported (GPU wall seconds,
synchronised, with ``--device cuda``). Prints Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from aif_command import peak_rss_gb, reset_peak_rss, time_command, write_weights
from official_efs import time_official
from torch import Tensor

from evfocus.config import load_config
from evfocus.data.captures import read_capture
from evfocus.events.focal_stack import EventFocalStack
from evfocus.models.registry import build_merge_net, build_refocus_net
from evfocus.models.runtime import RUNTIME_CHOICES, prepared, resolve_runtime
from evfocus.pipeline.aif import SEARCH_PROBES, AIFPipeline, AIFResult
from evfocus.pipeline.search import PatchGrid
from evfocus.pipeline.settings import pipeline_config
from evfocus.sim.simulator import SweepSimulator
from evfocus.sweep import Sweep

STEPS = ("events", "search", "stack", "merge", "total")
SIM_OVERRIDES = ["sim.event_model=ideal", "sim.ideal.threshold_range=[0.12,0.12]", "sim.event_response=linear"]


class TimedNet:
    """Wraps a net: counts forwards and the items (crops or images) they carry, with their seconds."""

    def __init__(self, net: torch.nn.Module, device: torch.device) -> None:
        self.net, self.device = net, device
        self.calls: list[tuple[int, int, int, float]] = []  # (batch, height, width, seconds)

    def __getattr__(self, name: str) -> Any:  # e.g. encode_image, which the search uses when present
        return getattr(self.net, name)

    def for_sweep(self, *args: Any, **options: Any) -> TimedNet:
        """The net as fitted to one sweep (``EvRefocusNet.for_sweep``), still counted: the pipeline calls that."""
        fitted = TimedNet(self.net.for_sweep(*args, **options), self.device)
        fitted.calls = self.calls
        return fitted

    def __call__(self, *inputs: Tensor, **options: Any) -> Any:
        start = time.perf_counter()
        output = self.net(*inputs, **options)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.calls.append((*inputs[0].shape[:1], *inputs[0].shape[-2:], time.perf_counter() - start))
        return output


def build_sweep(args: argparse.Namespace) -> tuple[Any, Sweep]:
    if args.capture is not None:
        return load_config(args.config, args.override), read_capture(args.capture.parent, args.capture.name)
    overrides = [f"sim.height={args.height}", f"sim.width={args.width}", f"sim.num_frames={args.frames}",
                 *SIM_OVERRIDES, *args.override]
    cfg = load_config(args.config, overrides)
    return cfg, SweepSimulator(cfg.sim, "test").simulate(args.sweep_seed)


def build_nets(cfg: Any, args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(args.seed)
    refocus, merge = build_refocus_net(cfg), build_merge_net(cfg)
    with torch.no_grad():
        refocus.to_residual.weight.normal_(0.0, args.residual_std)
    return refocus.to(device).eval(), merge.to(device).eval()


def run_once(refocus: TimedNet, merge: TimedNet, config: Any, sweep: Sweep, device: torch.device) -> dict:
    refocus.calls.clear()
    merge.calls.clear()
    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with prepared((refocus.net, merge.net), config.runtime):  # the wrappers hide the modules from the pipeline
        cpu, wall = time.process_time(), time.perf_counter()
        result: AIFResult = AIFPipeline(refocus, merge, config)(sweep, device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_gb = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else peak_rss_gb()
    height, width = sweep.image.shape[-2:]
    search_calls = [c for c in refocus.calls if c[1:3] != (height, width)]
    stack_calls = [c for c in refocus.calls if c[1:3] == (height, width)]
    return {
        "result": result, "wall": wall, "cpu": cpu, "peak_gb": peak_gb,
        **{f"s_{k}": v for k, v in result.seconds.items()},
        "search_calls": len(search_calls), "probes": sum(c[0] for c in search_calls),
        "search_net_s": sum(c[3] for c in search_calls),
        "stack_calls": len(stack_calls), "stack_images": sum(c[0] for c in stack_calls),
        "stack_net_s": sum(c[3] for c in stack_calls),
        "merge_calls": len(merge.calls), "merge_net_s": sum(c[3] for c in merge.calls),
        "slices": len(result.slice_times_us),
    }


def unit_costs(refocus: torch.nn.Module, sweep: Sweep, crop: tuple[int, int], num_bins: int, probes: int,
               device: torch.device) -> dict:
    """Seconds of the reference's unit operations: one full-image refocus pass (batch 1) and single-crop
    probes (batch 1, the search crop size); random inputs of the right shapes (speed does not depend on
    the values)."""
    height, width = sweep.image.shape[-2:]
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, height, width, generator=generator).to(device)
    events = torch.randn(1, num_bins, height, width, generator=generator).to(device)
    with torch.no_grad():
        start = time.perf_counter()
        refocus(image, events)
        full = _synced(start, device)
        crops = image[..., :crop[0], :crop[1]].clone(), events[..., :crop[0], :crop[1]].clone()
        start = time.perf_counter()
        for _ in range(probes):
            refocus(*crops)
        probe = _synced(start, device) / probes
    return {"full_s": full, "probe_s": probe}


def _synced(start: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def project_reference(batched: list[dict], units: list[dict], num_patches: int, merge_scale: int = 1) -> dict:
    """The reference mode's seconds from its unit costs: same event step; per searched patch two probes per
    bracket shrink (batched makes shrinks + 1, so reference probes = 2 × (batched probes − searched
    patches)); one full-image pass per patch; EvMergeNet over 64 slices = 64 / S × the batched merge
    (a shared per-slice encoder: cost linear in S), × ``merge_scale``² when the batched merge ran on the stack
    averaged down (the reference merges at full size; cost about linear in pixels)."""
    first = batched[0]["result"]
    per_patch = torch.isfinite(first.search.probes_t_us).sum(dim=1)
    probes = int((2 * (per_patch - 1)).clamp_min(0).sum())
    probe_s, full_s = (statistics.median(u[k] for u in units) for k in ("probe_s", "full_s"))
    seconds = {"events": median(batched, "s_events"), "search": probes * probe_s, "stack": num_patches * full_s,
               "merge": median(batched, "merge_net_s") * num_patches / batched[0]["slices"] * merge_scale ** 2}
    seconds["total"] = sum(seconds.values())
    return {"probes": probes, "probe_s": probe_s, "full_s": full_s, "seconds": seconds}


def to_coordinate(times_us: Tensor, counts: Tensor, t_start: float, t_end: float, domain: str) -> np.ndarray:
    """Found times (P,) in the search's own unit: µs, or the patch's cumulative event count."""
    times = times_us.flatten().double().cpu().numpy()
    if domain == "time":
        return times
    counts = counts.cpu().numpy()
    nodes = np.linspace(t_start, t_end, counts.shape[1])
    return np.array([np.interp(t, nodes, row) for t, row in zip(times, counts, strict=True)])


def agreement(batched: AIFResult, reference: AIFResult, sweep: Sweep, config: Any) -> dict:
    search = config.search
    schedule = sweep.schedule
    counts = EventFocalStack.from_events(sweep.events, schedule.t_start_us, schedule.t_end_us, config.efs_fine_bins,
                                         count_grid=search.grid_size).patch_counts
    searched = ~batched.search.low_event_mask.flatten().cpu().numpy()
    dt_us = (batched.search.times_us - reference.search.times_us).abs().flatten().cpu().numpy()
    coords = [to_coordinate(r.search.times_us, counts, schedule.t_start_us, schedule.t_end_us, search.domain)
              for r in (batched, reference)]
    in_tol = np.abs(coords[0] - coords[1]) / search.tolerance
    return {
        "searched": int(searched.sum()), "patches": searched.size,
        "max_dt_us": float(dt_us.max()), "median_dt_us": float(np.median(dt_us[searched])) if searched.any() else 0.0,
        "max_tol": float(in_tol.max()),
        "same_bracket": float((in_tol[searched] < 0.01).mean()) if searched.any() else 1.0,
        "within_tol": float((in_tol[searched] <= 1.0).mean()) if searched.any() else 1.0,
    }


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report_projection(config: Any, batched: list[dict], units: list[dict], projection: dict,
                      device: torch.device) -> None:
    search = config.search
    clock = "GPU wall s (synchronised)" if device.type == "cuda" else "wall s"
    print(f"\n### Domain `{search.domain}`: batched measured, reference projected from unit costs "
          f"(tolerance {search.tolerance:g}, min_events {search.min_events}, max_slices {config.max_slices}, "
          f"slices_per_batch {config.slices_per_batch}, runtime {config.runtime}, "
          f"search probe {config.search_probe}, merge scale {config.merge_scale})\n")
    print(f"| mode | reps | {clock} median | min | CPU s median | events | search | stack | merge | "
          "refocus calls (search + stack) | patch probes | full-image refocus passes | slices | peak GB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    walls = [r["wall"] for r in batched]
    b = batched[0]
    print(f"| batched (measured) | {len(batched)} | {statistics.median(walls):.3g} | {min(walls):.3g} | "
          f"{median(batched, 'cpu'):.3g} | " + " | ".join(f"{median(batched, f's_{k}'):.3g}" for k in STEPS[:-1])
          + f" | {b['search_calls'] + b['stack_calls']} ({b['search_calls']} + {b['stack_calls']}) | {b['probes']} "
          f"| {b['stack_images']} | {b['slices']} | {max(r['peak_gb'] for r in batched):.2f} |")
    sec = projection["seconds"]
    patches = config.search.grid_size ** 2
    print(f"| reference (projected) | {len(units)} unit reps | {sec['total']:.3g} | | | "
          + " | ".join(f"{sec[k]:.3g}" for k in STEPS[:-1])
          + f" | {projection['probes'] + patches} ({projection['probes']} + {patches}) | {projection['probes']} | "
          f"{patches} | {patches} | – |")
    print(f"\nUnit costs (medians, same process, interleaved with the batched runs): one full-image refocus "
          f"pass at batch 1 {projection['full_s']:.3g} s (batched stack: {median(batched, 'stack_net_s'):.3g} s "
          f"for {b['stack_images']} images in {b['stack_calls']} call(s) = "
          f"{median(batched, 'stack_net_s') / max(b['stack_images'], 1):.3g} s/image); one single-crop probe "
          f"{1e3 * projection['probe_s']:.3g} ms (batched search: "
          f"{1e3 * median(batched, 'search_net_s') / max(b['probes'], 1):.3g} ms/probe over {b['search_calls']} "
          f"calls); batched merge net {median(batched, 'merge_net_s'):.3g} s for {b['slices']} slices.")
    print(f"\nProjected speed-up (reference / batched, wall medians): "
          f"{sec['total'] / median(batched, 'wall'):.1f}x; per step: "
          + ", ".join(f"{k} {sec[k] / median(batched, f's_{k}'):.1f}x" for k in STEPS[1:-1]) + ".")


def report(domain: str, config: Any, runs: dict[str, list[dict]], agree: dict, device: torch.device) -> None:
    search = config.search
    tol = f"{search.tolerance_events:g} events" if search.domain == "events" else f"{search.tolerance_us:.0f} µs"
    print(f"\n### Domain `{domain}` (tolerance {tol}, min_events {search.min_events}, "
          f"max_slices {config.max_slices}, slices_per_batch {config.slices_per_batch}, runtime {config.runtime}, "
          f"search probe {config.search_probe}, merge scale {config.merge_scale})\n")
    clock = "GPU wall s (synchronised)" if device.type == "cuda" else "wall s"
    print(f"| mode | reps | {clock} median | min | CPU s median | events | search | stack | merge | "
          "refocus calls (search + stack) | patch probes | full-image refocus passes | slices | merge calls | "
          "peak GB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for mode, rs in runs.items():
        walls = [r["wall"] for r in rs]
        print(f"| {mode} | {len(rs)} | {statistics.median(walls):.3g} | {min(walls):.3g} | {median(rs, 'cpu'):.3g} | "
              + " | ".join(f"{median(rs, f's_{k}'):.3g}" for k in STEPS[:-1])
              + f" | {rs[0]['search_calls'] + rs[0]['stack_calls']} ({rs[0]['search_calls']} + "
              f"{rs[0]['stack_calls']}) | {rs[0]['probes']} | {rs[0]['stack_images']} | {rs[0]['slices']} | "
              f"{rs[0]['merge_calls']} | {max(r['peak_gb'] for r in rs):.2f} |")
    b, r = runs["batched"], runs["reference"]
    print(f"\nSpeed-up (reference / batched, medians): wall {median(r, 'wall') / median(b, 'wall'):.1f}x, "
          f"CPU {median(r, 'cpu') / median(b, 'cpu'):.1f}x; per step: "
          + ", ".join(f"{k} {median(r, f's_{k}') / median(b, f's_{k}'):.1f}x" for k in STEPS[1:-1]) + ".")
    print("\nNet time inside the steps (medians): "
          + "; ".join(f"{mode}: search net {median(rs, 'search_net_s'):.3g} s for {rs[0]['probes']} probes "
                      f"({1e3 * median(rs, 'search_net_s') / max(rs[0]['probes'], 1):.3g} ms/probe), "
                      f"stack net {median(rs, 'stack_net_s'):.3g} s for {rs[0]['stack_images']} images "
                      f"({median(rs, 'stack_net_s') / max(rs[0]['stack_images'], 1):.3g} s/image), "
                      f"merge net {median(rs, 'merge_net_s'):.3g} s" for mode, rs in runs.items()) + ".")
    print(f"\nPatch times, batched vs reference ({agree['searched']} of {agree['patches']} patches searched, "
          f"the rest have < min_events and keep the frame time): max |Δt| {agree['max_dt_us']:.0f} µs "
          f"(median {agree['median_dt_us']:.0f} µs), max {agree['max_tol']:.2f}x the tolerance; same bracket "
          f"(|Δ| < 0.01 tolerance) {100 * agree['same_bracket']:.0f}%, within the tolerance "
          f"{100 * agree['within_tol']:.0f}%.")


def report_command(commands: list[dict], references: list[float], domains: list[str]) -> None:
    """The whole ``src/aif.py`` command (its own settings, default outputs) against the reference mode, a row
    per set of flags it ran with."""
    steps = ("load", "events", "search", "stack", "merge", "total", "refocus_gif", "write")
    print(f"\n### Whole `src/aif.py` command ({len(commands)} runs, interleaved with the runs above)\n")
    print("| flags | runs | wall s median (min) | " + " | ".join(steps) + " | rest: imports, nets, report | "
          "peak GB | reference mode / command |")
    print("|---|---|---|" + "---|" * len(steps) + "---|---|---|")
    for variant in dict.fromkeys(c["variant"] for c in commands):
        runs = [c for c in commands if c["variant"] == variant]
        wall = statistics.median(c["wall"] for c in runs)
        seconds = {key: statistics.median(c["seconds"].get(key, 0.0) for c in runs) for key in steps}
        rest = wall - sum(seconds[key] for key in ("load", "total", "refocus_gif", "write"))
        ratios = ", ".join(f"{ref / wall:.1f}x ({domain})" for domain, ref in zip(domains, references, strict=True))
        print(f"| {variant} | {len(runs)} | **{wall:.3g}** ({min(c['wall'] for c in runs):.3g}) | "
              + " | ".join(f"{seconds[key]:.3g}" for key in steps)
              + f" | {rest:.3g} | {max(c['peak_gb'] for c in runs):.2f} | **{ratios}** |")


def report_official(officials: list[dict], batched: dict[str, float], commands: list[dict]) -> None:
    """The reference implementation itself (``official_efs.py``) against our batched pipeline and command."""
    pipeline = statistics.median(o["pipeline_s"] for o in officials)
    wall = statistics.median(o["wall_s"] for o in officials)
    steps = ("event_binning", "patch_probe", "stack_pass", "merge")
    first = officials[0]
    print(f"\n### The reference implementation itself ({len(officials)} runs, interleaved with the runs above; "
          f"{first['height']}x{first['width']}, {first['events']:,} events)\n")
    print("| process wall s | pipeline s | " + " | ".join(f"{step} s (calls)" for step in steps) + " | peak GB |")
    print("|---|---|" + "---|" * len(steps) + "---|")
    seconds = {step: statistics.median(o["seconds"][step] for o in officials) for step in steps}
    print(f"| {wall:.3g} | {pipeline:.3g} | "
          + " | ".join(f"{seconds[step]:.3g} ({first['calls'][step]})" for step in steps)
          + f" | {max(o['peak_gb'] for o in officials):.2f} |")
    ratios = [f"batched pipeline ({domain} domain) {pipeline / ours:.1f}x" for domain, ours in batched.items()]
    for variant in dict.fromkeys(c["variant"] for c in commands):
        ours = statistics.median(c["wall"] for c in commands if c["variant"] == variant)
        ratios.append(f"whole command ({variant}) {wall / ours:.1f}x")
    print("\nReference implementation / ours (pipeline against pipeline, process wall against command wall): "
          + "; ".join(ratios) + ".")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/merge.yaml", help="paper-size nets (merge.yaml)")
    parser.add_argument("--height", type=int, default=260)
    parser.add_argument("--width", type=int, default=346)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--sweep-seed", type=int, default=1)
    parser.add_argument("--override", nargs="*", default=[], help="more config overrides, key=value")
    parser.add_argument("--capture", type=Path, default=None, metavar="ROOT/NAME",
                        help="a capture instead of a simulated sweep (e.g. ../shared/samples/efs_dev_dense/d01_shelf)")
    parser.add_argument("--command-repeats", type=int, default=0,
                        help="also time the whole src/aif.py command on --capture this many times (same nets, "
                             "written as a weights file; its own default settings and outputs)")
    parser.add_argument("--command-runtimes", nargs="+", choices=RUNTIME_CHOICES, default=None,
                        help="time the command with each of these --runtime values (default: its default)")
    parser.add_argument("--command-search-probes", nargs="+", choices=SEARCH_PROBES, default=None,
                        help="and with each of these --search-probe values (default: its default)")
    parser.add_argument("--command-merge-scales", nargs="+", type=int, default=None,
                        help="and with each of these --merge-scale values (default: its default)")
    parser.add_argument("--search-probe", choices=SEARCH_PROBES, default=None,
                        help="what probes the batched mode's search (default: the config's pipeline.search.probe, "
                             "integration since 2026-12-01); "
                             "the reference mode always probes with the net")
    parser.add_argument("--official", type=Path, default=None, metavar="DIR",
                        help="a checkout of HYLZ-2019/EFS: also time the reference implementation itself on "
                             "--capture (official_efs.py; needs opencv-python-headless and tensorboardX)")
    parser.add_argument("--official-repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="net initialisation")
    parser.add_argument("--residual-std", type=float, default=0.02,
                        help="std of EvRefocusNet.to_residual weights (0 at init: the identity)")
    parser.add_argument("--domains", nargs="+", default=["events"], choices=["events", "time"])
    parser.add_argument("--tolerance-events", type=float, default=1000.0)
    parser.add_argument("--min-events", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="batched runs")
    parser.add_argument("--reference-repeats", type=int, default=2,
                        help="0: do not run the reference mode; project it from unit costs instead")
    parser.add_argument("--unit-probes", type=int, default=16, help="single-crop probes timed per unit rep")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default=None,
                        help="how the batched mode's nets run (default: the config's pipeline.runtime, "
                             "channels_last; 'auto' is src/aif.py's default); the "
                             "reference mode always runs plain torch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed runs of each mode first (default: 1 on a GPU, where the first calls "
                             "initialise CUDA and load kernels; 0 on the CPU)")
    args = parser.parse_args()
    if args.command_repeats and args.capture is None:
        parser.error("--command-repeats needs --capture (src/aif.py reads capture folders)")
    if args.official and args.capture is None:
        parser.error("--official needs --capture (the reference implementation reads a frame and an event list)")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    start = time.perf_counter()
    cfg, sweep = build_sweep(args)
    refocus_net, merge_net = build_nets(cfg, args, device)
    refocus, merge = TimedNet(refocus_net, device), TimedNet(merge_net, device)
    params = [sum(p.numel() for p in net.parameters()) / 1e6 for net in (refocus_net, merge_net)]
    print(f"Sweep {sweep.name}: {sweep.height}x{sweep.width}, {len(sweep.events):,} events over "
          f"{sweep.schedule.duration_us / 1e6:.3g} s ({time.perf_counter() - start:.3g} s to build or read); "
          f"EvRefocusNet {params[0]:.3g} M (width {cfg.model.width}, {cfg.data.num_bins} bins), EvMergeNet "
          f"{params[1]:.3g} M (width {cfg.merge_model.width}); device {device}, {args.threads} threads; "
          f"to_residual std {args.residual_std}.")

    weights_dir = tempfile.TemporaryDirectory(prefix="bench_aif_")
    weights = write_weights(refocus_net, merge_net, cfg, Path(weights_dir.name)) if args.command_repeats else None
    commands: list[dict] = []
    command_variants = [(runtime, probe, scale) for runtime in args.command_runtimes or [None]
                        for probe in args.command_search_probes or [None]
                        for scale in args.command_merge_scales or [None]]
    references: list[float] = []  # the reference mode's wall seconds (measured medians or projected totals)
    officials: list[dict] = []  # runs of the reference implementation itself
    batched_walls: dict[str, float] = {}

    def run_separate_processes() -> bool:
        """One more round of the whole command (each flag set) and of the reference implementation, while
        fewer than asked have run, between the in-process runs so they share the machine's load; False when
        all have run."""
        ran = False
        if weights is not None and len(commands) < args.command_repeats * len(command_variants):
            for runtime, probe, scale in command_variants:
                commands.append(time_command(weights, args.capture, args.device, args.threads, runtime, probe, scale))
                print(f"<!-- command: {commands[-1]} -->", flush=True)
            ran = True
        if args.official and len(officials) < args.official_repeats:
            officials.append(time_official(args.official, args.capture, args.seed, args.threads, args.device))
            print(f"<!-- official: {officials[-1]} -->", flush=True)
            ran = True
        return ran

    for domain in args.domains:
        configs = {}
        for mode in ("batched", "reference"):
            config = pipeline_config(cfg, sweep, device, mode)
            search = dataclasses.replace(config.search, domain=domain, tolerance_events=args.tolerance_events,
                                         min_events=args.min_events)
            runtime = (resolve_runtime(args.runtime or config.runtime, device) if mode == "batched"
                       else "torch")  # the reference: plain torch
            probe = (args.search_probe or config.search_probe) if mode == "batched" else "net"
            merge_scale = config.merge_scale if mode == "batched" else 1  # the reference merges at full size
            configs[mode] = dataclasses.replace(config, search=search, runtime=runtime, search_probe=probe,
                                                merge_scale=merge_scale)
        runs: dict[str, list[dict]] = {"batched": [], "reference": []}
        units: list[dict] = []
        crop = PatchGrid.build(sweep.height, sweep.width, configs["batched"].search.grid_size,
                               configs["batched"].search.margin_px).crop_size
        counts = {"batched": args.repeats, "reference": args.reference_repeats}
        warmup = args.warmup if args.warmup is not None else int(device.type == "cuda")
        for _ in range(warmup):
            for mode, count in counts.items():
                if count:
                    run_once(refocus, merge, configs[mode], sweep, device)
        for rep in range(max(counts.values())):
            for mode, count in counts.items():
                if rep < count:
                    runs[mode].append(run_once(refocus, merge, configs[mode], sweep, device))
                    print(f"<!-- {domain} {mode} rep {rep}: {runs[mode][-1]['wall']:.3g} s wall, "
                          f"{runs[mode][-1]['cpu']:.3g} s CPU -->", flush=True)
            if args.reference_repeats == 0:
                units.append(unit_costs(refocus_net, sweep, crop, cfg.data.num_bins, args.unit_probes, device))
                print(f"<!-- units rep {rep}: {units[-1]} -->", flush=True)
            run_separate_processes()
        batched_walls[domain] = median(runs["batched"], "wall")
        if args.reference_repeats == 0:
            projection = project_reference(runs["batched"], units, configs["batched"].search.grid_size ** 2,
                                           configs["batched"].merge_scale)
            report_projection(configs["batched"], runs["batched"], units, projection, device)
            references.append(projection["seconds"]["total"])
            continue
        references.append(median(runs["reference"], "wall"))
        agree = agreement(runs["batched"][0]["result"], runs["reference"][0]["result"], sweep,
                          configs["batched"])
        report(domain, configs["batched"], runs, agree, device)
    while run_separate_processes():
        pass
    if commands:
        report_command(commands, references, args.domains)
    if officials:
        report_official(officials, batched_walls, commands)
    weights_dir.cleanup()
    print(f"\nTotal benchmark time {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
