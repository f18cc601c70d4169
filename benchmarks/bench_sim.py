"""Simulator and training-data throughput on CPU, with a per-stage breakdown.

Part ``sim``: the full ``SweepSimulator.simulate`` (scene → luma frames → events → RGB frames,
AIF, depth) at 128×128 and 256×256, 120 frames, driven through ``data.simulated.sweep_samples``
— the path the training stream takes — so the same runs give sweeps/s and refocus samples/s.
Each repeat is a different sweep seed (scenes differ in layer count and slant); one warm-up first.
Project target: one 256×256, 120-frame sweep (render + events) in under 1 s on 2 cores.

Part ``data``: with ``configs/quickstart.yaml`` as is, (a) samples/s the streaming DataModule's
``train_dataloader`` delivers iterated alone, (b) samples/s the quickstart training step consumes
(EvRefocusNet forward + L1/SSIM loss + backward + grad clip + AdamW step, fp32, real batches) and
their ratio (target >= 2x), (a) and (b) interleaved so that they share the machine's load alike;
(c) both together, as in training, where the worker and the step share the 2 cores.

Part ``whatif``: where a DataLoader worker's time goes (stage breakdown) and how config variants
change the simulation cost per sample, in-process at 1 torch thread — what a worker runs at (torch
sets 1 thread in every DataLoader worker) — interleaved with training steps for the ratio.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sim.py --part sim --repeats 5
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sim.py --part data --repeats 5 --workers 0 1 2
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sim.py --part whatif --repeats 5

The DataModule is used through ``train_dataloader()`` with its train set built directly
(``setup("fit")`` would also simulate and cache the validation sweeps, which is not what is timed).
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import default_collate

import evfocus.data.samples as samples_module
import evfocus.data.simulated as simulated_module
import evfocus.sim.simulator as simulator_module
from evfocus.config import load_config
from evfocus.data.datamodule import SimulatedSweepDataModule
from evfocus.data.simulated import SimulatedRefocusStream, derive_seed
from evfocus.events.focal_stack import EventFocalStack
from evfocus.models.registry import build_refocus_net
from evfocus.sim.simulator import SweepSimulator
from evfocus.training.losses import ReconstructionLoss

STAGES = ("scene", "luma render", "events", "rgb render", "aif+depth", "sim other",
          "efs build", "contrast fields", "efs segments", "cut other")


class StageTimer:
    """Wall seconds per simulator/sample stage, from wrappers around the names the real code path calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._inside_exclusive = False
        self._wrap(simulator_module, "sample_scene", lambda a, k: "scene")
        self._wrap(simulator_module, "render_focal_frames",
                   lambda a, k: f"{k.get('channels', a[3] if len(a) > 3 else 'luma')} render")
        self._wrap(SweepSimulator, "_events", lambda a, k: "events")
        self._wrap(simulator_module, "render_all_in_focus", lambda a, k: "aif+depth")
        self._wrap(simulator_module, "render_depth", lambda a, k: "aif+depth")
        self._wrap(SweepSimulator, "simulate", lambda a, k: "simulate")
        self._wrap(EventFocalStack, "from_events", lambda a, k: "efs build")
        self._wrap(EventFocalStack, "segments", lambda a, k: "efs segments")
        self._wrap(simulated_module, "refocus_samples", lambda a, k: "cut")
        # the prior (blur fit) and the teacher contrast; the focal-stack segments they cut are counted here
        self._wrap(samples_module, "sweep_contrast_fields", lambda a, k: "contrast fields", exclusive=True)

    def _wrap(self, owner: object, name: str, stage: Callable[[tuple, dict], str], exclusive: bool = False) -> None:
        """Time ``owner.name``; within an ``exclusive`` stage the other wrappers do not count."""
        is_classmethod = isinstance(inspect.getattr_static(owner, name), classmethod)
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            if self._inside_exclusive:
                return original(*args, **kwargs)
            start = time.perf_counter()
            self._inside_exclusive = exclusive
            try:
                return original(*args, **kwargs)
            finally:
                self._inside_exclusive = False
                self.seconds[stage(args, kwargs)] += time.perf_counter() - start

        if is_classmethod:
            setattr(owner, name, classmethod(lambda cls, *args, **kwargs: timed(*args, **kwargs)))
        else:
            setattr(owner, name, timed)

    def take(self) -> dict[str, float]:
        """Stage seconds since the last call; ``sim other`` / ``cut other`` are the unwrapped remainders."""
        s, self.seconds = dict(self.seconds), defaultdict(float)
        named = ("scene", "luma render", "events", "rgb render", "aif+depth")
        s["sim other"] = s.get("simulate", 0.0) - sum(s.get(k, 0.0) for k in named)
        s["cut other"] = s.get("cut", 0.0) - sum(s.get(k, 0.0) for k in ("efs build", "contrast fields",
                                                                          "efs segments"))
        return s


TIMER: StageTimer  # installed by main(): the wrappers patch the simulator modules process-wide


class SweepRunner:
    """Timed ``sweep_samples`` calls of one config: sweep seeds 0, 1, ... (so variants see the same scenes)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.simulator = SweepSimulator(cfg.sim, "train")
        self.generator = torch.Generator().manual_seed(0)
        self.index = 0
        self.samples: list[dict] = []

    def __call__(self) -> dict[str, float]:
        TIMER.take()
        start, cpu = time.perf_counter(), time.process_time()
        self.samples = simulated_module.sweep_samples(self.cfg, self.simulator, "refocus",
                                                      derive_seed(self.cfg.seed, self.index), self.generator)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
        self.index += 1
        return {**TIMER.take(), "total": total, "cpu": cpu}


def sweep_runs(cfg, repeats: int) -> list[dict[str, float]]:
    """``repeats`` timed sweeps after one warm-up (texture photos, FFT plans, OTF tables)."""
    runner = SweepRunner(cfg)
    return [runner() for _ in range(repeats + 1)][1:]


def med(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run.get(key, 0.0) for run in runs)


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def breakdown_table(rows: list[tuple[str, list[dict[str, float]]]]) -> None:
    print("| setting | " + " | ".join(STAGES) + " | simulate | samples cut | total |")
    print("|---|" + "---|" * (len(STAGES) + 3))
    for label, runs in rows:
        total = med(runs, "total")
        cells = [f"{med(runs, k):.3f} ({100 * med(runs, k) / total:.0f}%)" for k in STAGES]
        print(f"| {label} | {' | '.join(cells)} | {med(runs, 'simulate'):.3f} | {med(runs, 'cut'):.3f} "
              f"| {total:.3f} |")


def part_sim(args: argparse.Namespace) -> None:
    print(f"## simulator: {args.config}, {args.frames} frames, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} sweeps (different seeds) after 1 warm-up, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| size | frames | samples/sweep | simulate s (median / min / max) | sweeps/s | < 1 s "
          "| luma render + events s (median / min / max) | < 1 s | samples/s (sweep + cut) | CPU s per sweep + cut |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        base = load_config(args.config)
        cfg = load_config(args.config, [f"sim.height={size}", f"sim.width={size}", f"sim.num_frames={args.frames}",
                                        f"data.crop_size={min(base.data.crop_size, size)}"])
        runs = sweep_runs(cfg, args.repeats)
        render_events = [r.get("luma render", 0.0) + r.get("events", 0.0) for r in runs]
        simulate, core = med(runs, "simulate"), statistics.median(render_events)
        samples_per_s = cfg.data.samples_per_sweep / med(runs, "total")
        sim_all = [r["simulate"] for r in runs]
        print(f"| {size}×{size} | {args.frames} | {cfg.data.samples_per_sweep} | {simulate:.3f} / {min(sim_all):.3f}"
              f" / {max(sim_all):.3f} | {1 / simulate:.2f} | {verdict(simulate < 1)} | {core:.3f} / "
              f"{min(render_events):.3f} / {max(render_events):.3f} | {verdict(core < 1)} | {samples_per_s:.2f} "
              f"| {med(runs, 'cpu'):.2f} |")
        rows.append((f"{size}×{size} F={args.frames}", runs))
    print("\nStage breakdown, median seconds per sweep (share of the total):\n")
    breakdown_table(rows)


def timed_batches(batches: Iterator, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        next(batches)
    return time.perf_counter() - start


def train_step_fn(cfg) -> Callable[[dict], None]:
    net = build_refocus_net(cfg)
    loss = ReconstructionLoss(l1_weight=cfg.loss.l1, ssim_weight=cfg.loss.ssim, lpips_weight=cfg.loss.lpips,
                              gradient_weight=cfg.loss.gradient)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    net.train()

    def step(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        log_contrast = (None if net.contrast_source is None else  # the training module's step, per-sweep contrast
                        net.estimate_log_contrast(batch["context_image"], batch["sweep_bins"], batch["prior_contrast"]))
        prediction = net(batch["image"], batch["events"], log_contrast=log_contrast,
                         linear=batch.get("linear_response"))
        total, _ = loss(prediction, batch["target"])
        total.backward()
        if cfg.optim.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip_norm)
        optimizer.step()

    return step


def loader(config_path: str, num_workers: int):
    """The DataModule's own ``train_dataloader()`` over a fresh training stream."""
    cfg = load_config(config_path, [f"data.num_workers={num_workers}"])
    datamodule = SimulatedSweepDataModule(cfg)
    datamodule.train_set = SimulatedRefocusStream(cfg, cfg.seed)
    return datamodule.train_dataloader()


def part_data(args: argparse.Namespace) -> None:
    cfg = load_config(args.data_config)
    data, batch, window = cfg.data, cfg.data.batch_size, args.window_batches
    epoch_batches = len(SimulatedRefocusStream(cfg, cfg.seed)) // batch
    for workers in args.workers:
        prefetch = 2 * workers  # DataLoader's default prefetch_factor=2 per worker
        if 1 + args.repeats * (window + prefetch) > epoch_batches or 1 + args.concurrent_steps > epoch_batches:
            raise SystemExit(f"one epoch holds {epoch_batches} batches: lower --repeats, --window-batches "
                             "or --concurrent-steps")
    print(f"## DataModule vs training: {args.data_config} ({cfg.sim.height}×{cfg.sim.width}, F={cfg.sim.num_frames}, "
          f"{data.samples_per_sweep} samples/sweep, batch {batch}, crop {data.crop_size}, B={data.num_bins}, "
          f"num_workers={data.num_workers}, precision {cfg.trainer.get('precision')}), torch {torch.__version__}, "
          f"main process {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}\n")
    print(f"(a) loader alone and (b) training step alone, interleaved: per repeat {args.steps_per_window} training "
          f"steps (worker idle: its prefetch queue is full), then the prefetched batches are dropped and "
          f"{window} batches timed; median of {args.repeats} repeats.\n")
    print("| num_workers | first batch s | (a) loader samples/s | (b) step s (median / min / max) "
          "| (b) samples/s | (a)/(b) | >= 2x |")
    print("|---|---|---|---|---|---|---|")
    step, warm, kept = train_step_fn(cfg), False, []
    step_s: dict[int, float] = {}
    for workers in args.workers:
        batches = iter(loader(args.data_config, workers))
        start = time.perf_counter()
        kept = [next(batches)]
        first = time.perf_counter() - start
        if not warm:
            step(kept[0])  # warm-up
            warm = True
        if workers:  # the other prefetch slots fill while the first batch's buffers did
            time.sleep(first)
        walls, steps = [], []
        for _ in range(args.repeats):
            for index in range(args.steps_per_window):
                start = time.perf_counter()
                step(kept[index % len(kept)])
                steps.append(time.perf_counter() - start)
            kept = [next(batches) for _ in range(2 * workers)] or kept  # drop the prefetched batches
            walls.append(timed_batches(batches, window))
            if workers:  # let the workers refill their prefetch queue before the next training window
                time.sleep(1.5 * 2 * workers * walls[-1] / window)
        del batches
        delivered, step_s[workers] = window * batch / statistics.median(walls), statistics.median(steps)
        consumed = batch / step_s[workers]
        print(f"| {workers} | {first:.2f} | {delivered:.2f} | {step_s[workers]:.3f} / {min(steps):.3f} / "
              f"{max(steps):.3f} | {consumed:.2f} | {delivered / consumed:.2f}x "
              f"| {verdict(delivered >= 2 * consumed)} |")

    print(f"\n(c) training fed by the loader (worker and step share the cores), {args.concurrent_steps} steps:\n")
    print("| num_workers | samples/s | step s median (alone, from (b)) | time waiting for data |")
    print("|---|---|---|---|")
    for workers in args.workers:
        batches = iter(loader(args.data_config, workers))
        step(next(batches))
        waits, steps, start = [], [], time.perf_counter()
        for _ in range(args.concurrent_steps):
            t0 = time.perf_counter()
            item = next(batches)
            t1 = time.perf_counter()
            step(item)
            waits.append(t1 - t0)
            steps.append(time.perf_counter() - t1)
        wall = time.perf_counter() - start
        del batches
        print(f"| {workers} | {args.concurrent_steps * batch / wall:.2f} | {statistics.median(steps):.3f} "
              f"({step_s[workers]:.3f}) | {100 * sum(waits) / wall:.0f}% |")


def part_whatif(args: argparse.Namespace) -> None:
    """Simulation cost per sample of config variants, in-process at 1 thread (what a worker runs at),
    each repeat interleaved with one training step at --threads so the ratios share the machine's load."""
    cfg = load_config(args.data_config)
    variants = {"as configured": []}
    for override in args.variants:
        variants[override.replace(",", ", ")] = override.split(",")
    runners = {label: SweepRunner(load_config(args.data_config, overrides)) for label, overrides in variants.items()}
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in variants}
    step, steps = train_step_fn(cfg), []
    for repeat in range(args.repeats + 1):
        for label, runner in runners.items():
            torch.set_num_threads(1)
            run = runner()
            if repeat:
                runs[label].append(run)
        torch.set_num_threads(args.threads)
        batch = default_collate(runners["as configured"].samples[:cfg.data.batch_size])
        start = time.perf_counter()
        step(batch)
        if repeat:
            steps.append(time.perf_counter() - start)
    consumed = cfg.data.batch_size / statistics.median(steps)
    print(f"## What-if: {args.data_config} variants, sweep + sample cut in-process at 1 thread (a DataLoader "
          f"worker's setting), median of {args.repeats} sweeps (seeds 1..{args.repeats}, the same scenes for every "
          f"variant), interleaved with training steps at {args.threads} threads: {statistics.median(steps):.3f} s "
          f"per batch of {cfg.data.batch_size} = {consumed:.2f} samples/s. Load average {os.getloadavg()[0]:.1f}.\n")
    print("| variant | s per sweep + cut (median / min) | samples/s | vs training step |")
    print("|---|---|---|---|")
    for label, runner in runners.items():
        rate = runner.cfg.data.samples_per_sweep / med(runs[label], "total")
        print(f"| {label} | {med(runs[label], 'total'):.3f} / {min(r['total'] for r in runs[label]):.3f} "
              f"| {rate:.2f} | {rate / consumed:.2f}x |")
    print("\nStage breakdown, median seconds per sweep (share of the total), 1 thread:\n")
    breakdown_table(list(runs.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("sim", "data", "whatif", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=5, help="timed sweeps / loader windows (median taken)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is 2)")
    parser.add_argument("--config", default="configs/refocus.yaml", help="config of the simulator part")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--data-config", default="configs/quickstart.yaml")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="DataLoader num_workers to time (default: the config's)")
    parser.add_argument("--window-batches", type=int, default=6, help="batches per timed loader window")
    parser.add_argument("--steps-per-window", type=int, default=2, help="training steps timed per repeat")
    parser.add_argument("--concurrent-steps", type=int, default=10)
    parser.add_argument("--variants", nargs="*", default=[
        "data.samples_per_sweep=16", "data.samples_per_sweep=32", "sim.num_frames=32",
        "sim.num_frames=32,data.samples_per_sweep=16", "sim.event_model=ideal"],
        help="what-if config overrides (comma-separated within one variant)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global TIMER
    TIMER = StageTimer()
    if args.workers is None:
        args.workers = [load_config(args.data_config).data.num_workers]
    if args.part in ("sim", "all"):
        part_sim(args)
    if args.part in ("data", "all"):
        part_data(args)
    if args.part in ("whatif", "all"):
        part_whatif(args)


if __name__ == "__main__":
    main()
