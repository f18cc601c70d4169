"""Simulation-gap statistics: capture folders (e.g. efs_dev) beside our simulator at their geometry.

    python benchmarks/sim_gap.py --captures ../shared/samples/efs_dev ../shared/samples/efs_dev_dense [--sweeps 12]

Prints, per capture and per simulated sensor (DVS-Voltmeter DAVIS346 with k1 × 1 and × 3, gamma
response, 260×346, largest blur radius 8–11 px, 0.45–0.9 s sweeps of 160 frames, train-split
scenes), the median (range) of: events per pixel, the share of pixels with any event, the ON fraction,
the mean luma gradient of the all-in-focus image, the spread of log(L + 20) (the Voltmeter's response),
the PSNR of the frame against the all-in-focus image, and the share of events in each quarter of the
sweep. docs/simulation_gap.md holds the figures.
"""

from __future__ import annotations

import argparse
import statistics

import kornia
import torch

from evfocus.config import load_config
from evfocus.data.captures import list_captures, read_capture
from evfocus.image_scores import image_quality
from evfocus.sim.simulator import SweepSimulator
from evfocus.sweep import Sweep

COLUMNS = ("events/px", "active px", "ON fraction", "AIF luma gradient", "std log(L+20)", "PSNR frame vs AIF")
EFS_GEOMETRY = ["sim.height=260", "sim.width=346", "data.crop_size=64", "sim.num_frames=160",
                "sim.max_blur_radius_px_range=[8.0,11.0]", "sim.duration_us_range=[450000,900000]",
                "sim.event_response=gamma"]


def luma(image: torch.Tensor) -> torch.Tensor:
    return (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None, None]


def statistics_of(sweep: Sweep) -> tuple[list[float], list[float]]:
    """The COLUMNS values and the share of events per quarter of the sweep."""
    events, pixels = sweep.events, sweep.height * sweep.width
    counts = torch.bincount(events.y.long() * sweep.width + events.x.long(), minlength=pixels)
    gradient = kornia.filters.spatial_gradient(luma(sweep.aif)).pow(2).sum(2).sqrt().mean()
    quarters = torch.histc((events.t_us.double() - sweep.schedule.t_start_us) / sweep.schedule.duration_us, 4, 0, 1)
    values = [len(events) / pixels, float((counts > 0).float().mean()), float((events.p > 0).float().mean()),
              float(gradient), float(torch.log(luma(sweep.aif) * 255 + 20).std()),
              image_quality(sweep.image, sweep.aif)["psnr"]]
    return values, (quarters / quarters.sum()).tolist()


def print_row(label: str, rows: list[tuple[list[float], list[float]]]) -> None:
    cells = []
    for column in zip(*(values for values, _ in rows), strict=True):
        median = statistics.median(column)
        cells.append(f"{median:.2f}" if len(column) == 1 else f"{median:.2f} ({min(column):.2f}–{max(column):.2f})")
    quarters = [statistics.mean(q[i] for _, q in rows) for i in range(4)]
    print(f"| {label} | " + " | ".join(cells) + " | " + " ".join(f"{q:.2f}" for q in quarters) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captures", nargs="*", default=[], help="capture folders to describe")
    parser.add_argument("--sweeps", type=int, default=12, help="simulated sweeps per sensor")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| sweeps | " + " | ".join(COLUMNS) + " | events per sweep quarter |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for root in args.captures:
        for name in list_captures(root):
            print_row(f"{root} {name}", [statistics_of(read_capture(root, name))])
    for k1_scale in (1, 3):
        sensor = f"sim.voltmeter.k1_scale_range=[{k1_scale},{k1_scale}]"
        cfg = load_config("configs/quickstart.yaml", [*EFS_GEOMETRY, sensor])
        simulator = SweepSimulator(cfg.sim, "train")
        print_row(f"simulated, k1 × {k1_scale}", [statistics_of(simulator.simulate(7000 + seed))
                                                 for seed in range(args.sweeps)])


if __name__ == "__main__":
    main()
