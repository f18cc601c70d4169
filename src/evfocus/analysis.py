"""Run folders and sweep summaries → pandas tables and per-sweep scores: the code behind the notebooks.

Tables come from each run's ``results.json`` (``runs_table``), offline, or from the wandb API
(``wandb_runs_table``, with ``WANDB_MODE=online``); scores per test sweep (PSNR against defocus size
and event density, the search's probes, the AIF images and depth maps) come from re-running a run's
checkpoint on its own test sweeps (``evaluate_run``), optionally beside other runs' checkpoints on the
same sweeps (e.g. the image-only baselines of issue 11, which make an all-in-focus image and no depth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig

from evfocus.checkpoints import load_baseline, load_depth_head, load_nets, load_stage_checkpoint
from evfocus.data.simulated import build_eval_sweeps
from evfocus.pipeline.aif import AIFPipeline, AIFResult
from evfocus.pipeline.references import self_calibrated_integrator
from evfocus.pipeline.settings import pipeline_config
from evfocus.sim.simulator import SweepSimulator
from evfocus.sweep import Sweep
from evfocus.sweeps.run_folder import read_results, results_metrics

HEADLINE = {"psnr": "test/aif/pipeline/psnr", "ssim": "test/aif/pipeline/ssim", "lpips": "test/aif/pipeline/lpips",
            "depth_abs_rel": "test/depth/pipeline/abs_rel", "integration_psnr": "test/aif/integration/psnr",
            "identity_psnr": "test/aif/identity/psnr", "seconds_per_sweep": "test/seconds_per_sweep/pipeline"}
SPREAD_METRICS = ("psnr", "ssim", "lpips", "depth_abs_rel")


def method_name(config: dict[str, Any]) -> str:
    """A run's method: the baseline's model name, else ``pipeline`` (the evfocus stages)."""
    return config["model"]["name"] if config.get("stage") == "baseline" else "pipeline"


def find_runs(root: str | Path) -> list[Path]:
    """Every run folder under ``root`` that holds a ``results.json``, sorted."""
    return sorted(path.parent for path in Path(root).rglob("results.json"))


def _row(name: str, stage: str, seed: Any, method: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"run": name, "method": method, "stage": stage, "seed": seed,
            **{column: metrics.get(key) for column, key in HEADLINE.items()}}


def runs_table(runs: str | Path | list[Path]) -> pd.DataFrame:
    """One row per run folder (a folder of runs, or a list of run folders): method, seed, headline scores."""
    folders = find_runs(runs) if isinstance(runs, str | Path) else [Path(r) for r in runs]
    rows = []
    for folder in folders:
        results = read_results(folder)
        if results is None:
            continue
        row = _row(folder.name, results["stage"], results["seed"], method_name(results["config"]),
                   results_metrics(results))
        rows.append({**row, "wall_time_s": results.get("wall_time_s"), "run_dir": str(folder)})
    return pd.DataFrame(rows)


def wandb_runs_table(project: str, entity: str | None = None, filters: dict[str, Any] | None = None) -> pd.DataFrame:
    """The same table from the wandb API (runs' summaries and configs; needs ``wandb login``)."""
    import wandb

    api = wandb.Api()
    path = f"{entity}/{project}" if entity else project
    rows = [_row(run.name, run.config.get("stage"), run.config.get("seed"), method_name(run.config), run.summary)
            for run in api.runs(path, filters=filters)]
    return pd.DataFrame(rows)


def seed_spread(table: pd.DataFrame, metrics: tuple[str, ...] = SPREAD_METRICS) -> pd.DataFrame:
    """Mean, standard deviation and count over seeds, one row per method, best mean PSNR first."""
    present = [m for m in metrics if m in table and table[m].notna().any()]
    spread = table.groupby("method")[present].agg(["mean", "std", "count"])
    return spread.sort_values(("psnr", "mean"), ascending=False) if "psnr" in present else spread


def sweep_summary(folder: str | Path) -> pd.DataFrame:
    """A sweep folder's ``summary.csv`` (written by ``src/sweep.py``), best first."""
    return pd.read_csv(Path(folder) / "summary.csv")


# ------------------------------------------------------------------------------ per test sweep
@dataclass
class ImageOnlyResult:
    """What an image-only baseline makes of a sweep: the all-in-focus estimate alone (no depth)."""

    aif: torch.Tensor  # (C, H, W) in [0, 1]
    depth_m: None = None


@dataclass
class SweepOutcome:
    """One test sweep and what each method made of it."""

    sweep: Sweep
    # "pipeline" (the run's nets) and "integration" (no network), plus any other runs' by method name
    results: dict[str, AIFResult | ImageOnlyResult]


def psnr(image: torch.Tensor, target: torch.Tensor) -> float:
    mse = float((image.float().clamp(0, 1) - target.float()).pow(2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def _run_pipeline(cfg: DictConfig, refocus: Any, merge: Any, sweep: Sweep, depth_head: Any = None) -> AIFResult:
    config = pipeline_config(cfg, sweep)
    return AIFPipeline(refocus, merge, config, depth_head)(sweep, "cpu")


@dataclass
class TrainedRun:
    """A run folder's config and nets (its best checkpoint), ready to run the pipeline on sweeps; or, for an
    image-only baseline's run (stage ``baseline``), its network (``image_only``)."""

    cfg: DictConfig
    refocus: Any
    merge: Any
    image_only: Any = None
    depth_head: Any = None  # a weights file's learned depth fusion (pipeline.depth_fusion), if it has one

    @classmethod
    def load(cls, run_dir: str | Path) -> TrainedRun:
        checkpoint = load_stage_checkpoint(run_dir, ("refocus", "merge", "joint", "baseline"))
        if checkpoint.stage == "baseline":
            return cls(checkpoint.cfg, None, None, load_baseline(checkpoint))
        return cls(checkpoint.cfg, *load_nets(checkpoint), depth_head=load_depth_head(checkpoint))

    @property
    def method(self) -> str:
        return str(self.cfg.model.name) if self.image_only is not None else "pipeline"

    @torch.no_grad()
    def estimate(self, sweep: Sweep) -> AIFResult | ImageOnlyResult:
        """The run's own result on ``sweep``: the pipeline, or the baseline's estimate from the frame alone."""
        if self.image_only is not None:
            return ImageOnlyResult(self.image_only(sweep.image.float()[None])[0].clamp(0, 1))
        return _run_pipeline(self.cfg, self.refocus, self.merge, sweep, self.depth_head)

    def outcome(self, sweep: Sweep) -> SweepOutcome:
        """The run's pipeline and event integration (no network) on ``sweep``."""
        if self.image_only is not None:
            raise ValueError("an image-only baseline's run has no pipeline: pass it to evaluate_run as one of "
                             "`others`")
        integrator = self_calibrated_integrator(sweep, "cpu")
        pipeline = _run_pipeline(self.cfg, self.refocus, self.merge, sweep, self.depth_head)
        return SweepOutcome(sweep, {"pipeline": pipeline,
                                    "integration": _run_pipeline(self.cfg, integrator, None, sweep)})

    def simulate(self, seed: int, num_frames: int = 5) -> Sweep:
        """A new sweep from the run's simulator settings, with ``num_frames`` ground-truth frames kept."""
        frames = torch.linspace(0, self.cfg.sim.num_frames - 1, num_frames).round().long().tolist()
        return SweepSimulator(self.cfg.sim, "test").simulate(seed, frames)


def evaluate_run(run_dir: str | Path, max_sweeps: int | None = None,
                 others: list[str | Path] = ()) -> tuple[pd.DataFrame, list[SweepOutcome]]:
    """A run's checkpoint on its own test sweeps: a table (one row per sweep and method: PSNR, defocus
    radius, events per pixel) and the outcomes (images, depth, search probes) for figures. ``others``:
    more run folders (e.g. image-only baselines) run on the same sweeps, each named by its method."""
    run = TrainedRun.load(run_dir)
    extra = [TrainedRun.load(folder) for folder in others]
    rows, outcomes = [], []
    for sweep in build_eval_sweeps(run.cfg, "test", run.cfg.seed)[:max_sweeps]:
        outcome = run.outcome(sweep)
        outcome.results.update({other.method: other.estimate(sweep) for other in extra})
        outcomes.append(outcome)
        common = {"sweep": sweep.name, "max_blur_radius_px": sweep.meta["max_blur_radius_px"],
                  "events_per_px": len(sweep.events) / (sweep.height * sweep.width)}
        rows += [{**common, "method": name, "psnr": psnr(result.aif, sweep.aif)}
                 for name, result in outcome.results.items()]
        rows.append({**common, "method": "identity", "psnr": psnr(sweep.image, sweep.aif)})
    return pd.DataFrame(rows), outcomes


def best_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The best run (test PSNR) of each method in ``runs_table``'s table, best first."""
    ranked = table.dropna(subset=["psnr"]).sort_values("psnr", ascending=False)
    return ranked.groupby("method", sort=False).head(1)
