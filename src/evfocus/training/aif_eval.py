"""The whole all-in-focus task scored on fixed sweeps, for every stage's test step.

Methods scored side by side on the same sweeps (docs/architecture.md, "The method"):

- ``pipeline``: this stage's nets — search → stack → EvMergeNet (the refocus stage, which has no
  merge net, merges with Sobel energy, so its ``pipeline`` equals ``gradient_merge``);
- ``gradient_merge``: the same refocused stack merged by Sobel energy (the reference's ablation);
- ``integration``: no network at all — ``log I0 + c·Σ events`` refocusing with the contrast each
  sweep's own frame and events give (``events.contrast``, no ground truth), searched and merged by
  Sobel energy: the reference a learned pipeline must beat on any sensor;
- ``integration_sim_fit``: the same with one c fitted on the simulated validation sweeps (it suits
  our simulator's sensors only);
- ``identity``: the input frame as the all-in-focus image.

An image-only baseline (stage ``baseline``) takes the place of ``pipeline``; see ``AIFEvaluator``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from evfocus.data.simulated import EvalRefocusSet, build_eval_sweeps
from evfocus.events.integration import EventIntegrator, fit_contrast
from evfocus.metrics import build_metrics
from evfocus.pipeline.aif import AIFPipeline, AIFResult, MergeFn, sobel_remerge
from evfocus.pipeline.depth import depth_scores
from evfocus.pipeline.references import self_calibrated_integrator
from evfocus.pipeline.search import RefocusFn
from evfocus.pipeline.settings import pipeline_config
from evfocus.sweep import Sweep

DEPTH_KEYS = ("abs_rel", "rmse_m", "rmse_diopter", "abs_rel_confident", "confident_fraction")
IMAGE_KEYS = ("psnr", "ssim", "lpips")
AIF_METHODS = ("pipeline", "gradient_merge", "integration", "integration_sim_fit", "identity")


def fit_integration_contrast(cfg: DictConfig) -> float:
    """c of the event-integration reference, fitted on the validation sweeps' refocus pairs (never test)."""
    sweeps = build_eval_sweeps(cfg, "val", cfg.seed)
    pairs = [(s["image"], s["events"], s["target"]) for s in EvalRefocusSet(cfg, sweeps, "val", cfg.seed)]
    return fit_contrast(pairs)


class _DepthMeans:
    """Mean of each depth score over the sweeps that have it (a sweep may have no confident pixel)."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {key: [] for key in DEPTH_KEYS}

    def update(self, scores: dict[str, float | None]) -> None:
        for key in DEPTH_KEYS:
            if scores[key] is not None:
                self.values[key].append(scores[key])

    def compute(self) -> dict[str, float | None]:
        return {key: _mean(values) for key, values in self.values.items()}


class AIFEvaluator(nn.Module):
    """Accumulates AIF quality, depth errors and seconds per sweep for each method over test sweeps.

    ``update`` scores an event stage's nets as ``pipeline``; ``update_baseline`` scores an image-only
    network there instead (one forward over the frame: no depth, no stack, no refocus calls — those
    fields stay ``None``, and so does ``gradient_merge``, the Sobel merge of a stack it does not make).
    The references are the same either way, so every stage's summary has the same keys.
    """

    def __init__(self, cfg: DictConfig, integration_contrast: float | None, references: bool = True) -> None:
        """``references=False`` scores only this stage's pipeline (and the free identity): for validation."""
        super().__init__()
        self.cfg = cfg
        self.integration_contrast = integration_contrast if references else None
        self.references = references
        self.methods = list(AIF_METHODS)
        if not references:
            self.methods = ["pipeline", "identity"]
        elif integration_contrast is None:
            self.methods.remove("integration_sim_fit")
        self.image_metrics = nn.ModuleDict({m: build_metrics(cfg) for m in self.methods})
        # "mid_sweep": one constant depth, the sweep's middle focus (in diopters) — the floor a
        # depth-from-focus map must beat to say anything about the scene.
        self.depth = {m: _DepthMeans() for m in [*self.methods, "mid_sweep"] if m != "identity"}
        self.seconds: dict[str, list[float]] = {m: [] for m in self.methods if m != "identity"}
        self.scored: set[str] = set()
        self.refocus_calls: list[int] = []
        self.num_slices: list[int] = []
        self.num_sweeps = 0
        self.contrasts: dict[str, list[float]] = {"pipeline": [], "integration": []}

    def _pipeline(self, refocus: RefocusFn, merge: MergeFn | None, sweep: Sweep,
                  device: torch.device) -> AIFPipeline:
        return AIFPipeline(refocus, merge, pipeline_config(self.cfg, sweep, device))

    def _references(self, sweep: Sweep, device: torch.device) -> dict[str, AIFResult]:
        """The network-free references on ``sweep``: integration at its own contrast (and at the fitted one)."""
        runs: dict[str, Callable[[], AIFResult]] = {}
        if self.references:
            own = self_calibrated_integrator(sweep, device, self.cfg.pipeline.contrast_estimator)
            runs["integration"] = lambda: self._pipeline(own, None, sweep, device)(sweep, device)
        if self.integration_contrast is not None:
            integrator = EventIntegrator(self.integration_contrast)
            runs["integration_sim_fit"] = lambda: self._pipeline(integrator, None, sweep, device)(sweep, device)
        return {name: run() for name, run in runs.items()}

    @torch.no_grad()
    def update(self, sweep: Sweep, refocus: RefocusFn, merge: MergeFn | None, device: torch.device) -> AIFResult:
        """Score every method on one sweep with this stage's nets; returns their pipeline result (for panels)."""
        target = _target(sweep, device)
        results = {"pipeline": self._pipeline(refocus, merge, sweep, device)(sweep, device),
                   **self._references(sweep, device)}
        if self.references:  # same search and stack, Sobel merge (the refocus stage has no other merge)
            frame = sweep.image.to(device) if self.cfg.pipeline.recolour else None
            results["gradient_merge"] = (sobel_remerge(results["pipeline"], sweep.schedule, frame,
                                                       self.cfg.pipeline.focus_sharpness) if merge is not None
                                         else results["pipeline"])
        self._record(sweep, results, target, device)
        self.refocus_calls.append(results["pipeline"].num_refocus_calls)
        self.num_slices.append(len(results["pipeline"].slice_times_us))
        return results["pipeline"]

    @torch.no_grad()
    def update_baseline(self, sweep: Sweep, net: nn.Module, device: torch.device) -> Tensor:
        """Score an image-only network (frame → all-in-focus image) as ``pipeline`` beside the references;
        returns its (C, H, W) estimate."""
        target = _target(sweep, device)
        started = time.perf_counter()
        estimate = net(sweep.image.to(device)[None].float())[0]
        seconds = time.perf_counter() - started
        self.image_metrics["pipeline"].update(estimate[None].clamp(0, 1), target)
        self.seconds["pipeline"].append(seconds)
        self.scored.add("pipeline")
        self._record(sweep, self._references(sweep, device), target, device)
        return estimate

    def _record(self, sweep: Sweep, results: dict[str, AIFResult], target: Tensor, device: torch.device) -> None:
        """Scores of ``results`` on one sweep, plus what every sweep adds: the identity and the depth floor."""
        for name, values in self.contrasts.items():
            if name in results and results[name].contrast is not None:
                values.append(results[name].contrast)
        for name, result in results.items():
            self.image_metrics[name].update(result.aif[None].clamp(0, 1), target)
            self.seconds[name].append(result.seconds["total"])
            if sweep.depth_m is not None:
                self.depth[name].update(depth_scores(result.depth_m, result.depth_confidence, sweep.depth_m))
        if sweep.depth_m is not None:
            schedule = sweep.schedule
            mid_sweep_m = 2.0 / (schedule.near_diopter + schedule.far_diopter)
            truth = sweep.depth_m.to(device)
            constant = torch.full_like(truth, mid_sweep_m)
            self.depth["mid_sweep"].update(depth_scores(constant, torch.zeros_like(truth), truth))
        self.image_metrics["identity"].update(sweep.image.to(device)[None], target)
        self.scored.update([*results, "identity"])
        self.num_sweeps += 1

    def compute(self) -> dict[str, Any]:
        """{"aif": {method: psnr/ssim/lpips}, "depth": {method: errors}, "seconds_per_sweep": …}; a method
        with nothing to score (a baseline's ``gradient_merge``) is ``None`` throughout."""
        return {
            "aif": {m: self.image_metrics[m].compute() if m in self.scored else dict.fromkeys(IMAGE_KEYS)
                    for m in self.methods},
            "depth": {m: d.compute() for m, d in self.depth.items()},
            "seconds_per_sweep": {m: (sum(s) / len(s) if s else None) for m, s in self.seconds.items()},
            "refocus_calls_per_sweep": _mean(self.refocus_calls),
            "slices_per_sweep": _mean(self.num_slices),
            "integration_contrast": self.integration_contrast,
            "contrast_per_sweep": {name: _mean(values) for name, values in self.contrasts.items()},
            "num_sweeps": self.num_sweeps,
        }

    def reset(self) -> None:
        for metrics in self.image_metrics.values():
            metrics.reset()
        self.depth = {m: _DepthMeans() for m in self.depth}
        self.seconds = {m: [] for m in self.seconds}
        self.scored = set()
        self.refocus_calls, self.num_slices, self.num_sweeps = [], [], 0
        self.contrasts = {name: [] for name in self.contrasts}


def _target(sweep: Sweep, device: torch.device) -> Tensor:
    if sweep.aif is None:
        raise ValueError(f"{sweep.name}: the AIF evaluation needs a ground-truth all-in-focus image")
    return sweep.aif.to(device)[None]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def flat_scalars(summary: dict[str, Any], prefix: str) -> dict[str, float]:
    """``{"aif": {"pipeline": {"psnr": 30}}}`` → ``{"<prefix>/aif/pipeline/psnr": 30}`` (finite numbers only)."""
    flat: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            flat.update(flat_scalars(value, name))
        elif isinstance(value, int | float) and math.isfinite(value):
            flat[name] = float(value)
    return flat
