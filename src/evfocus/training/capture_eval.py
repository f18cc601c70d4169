"""Real captures (``data.captures``) through the test and predict steps.

A capture with ground truth (``aif/``, ``depth/``) is scored exactly as the simulated test sweeps are: the same
``AIFEvaluator``, so its summary has the simulated test's keys (``test/captures/aif/pipeline/psnr``, …). Every
capture, with or without ground truth, gets its outputs written (``<run>/captures/<name>/``: aif.png, depth.png,
depth.npy, depth_confidence.npy, weights.png, sharpness.json) and no-reference sharpness figures of its AIF
image and its input frame (``metrics.sharpness``): without ground truth they are the only evidence that
refocusing sharpened anything. Under ``on_error: skip`` a capture that cannot be read or processed is reported
(a warning, and ``skipped`` in the summary) and the others go on.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from evfocus.data.capture_set import CaptureFailure
from evfocus.metrics import sharpness
from evfocus.pipeline.aif import AIFPipeline, MergeFn
from evfocus.pipeline.search import RefocusFn
from evfocus.pipeline.settings import pipeline_config
from evfocus.sweep import Sweep
from evfocus.training.aif_eval import AIFEvaluator
from evfocus.visualize import write_images

SHARPNESS_OF = ("pipeline", "input")


class CaptureEvaluator:
    """Runs the pipeline on each capture, writes its outputs, scores it; ``compute`` sums it all up."""

    def __init__(self, cfg: DictConfig, integration_contrast: float | None, out_dir: Path,
                 references: bool = True) -> None:
        """``references``: also score the network-free references on captures with ground truth (the test)."""
        self.cfg = cfg
        self.on_error = cfg.data.captures.on_error
        self.out_dir = out_dir
        self.with_truth = AIFEvaluator(cfg, integration_contrast, references)
        self.records: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []

    @torch.no_grad()
    def update(self, item: Sweep | CaptureFailure, refocus: RefocusFn, merge: MergeFn | None,
               device: torch.device) -> dict[str, Any] | None:
        """One capture: its record (name, ground truth or not, sharpness), or None when it was skipped."""
        if isinstance(item, CaptureFailure):
            return self.skip(item)
        self.with_truth.to(device)
        try:
            if item.aif is not None:
                result = self.with_truth.update(item, refocus, merge, device)
            else:
                result = AIFPipeline(refocus, merge, pipeline_config(self.cfg, item, device))(item, device)
        except ValueError as error:  # evfocus's input errors: a capture the pipeline cannot take
            if self.on_error == "stop":
                raise
            return self.skip(CaptureFailure(item.name, str(item.meta.get("root", "")), " ".join(str(error).split())))
        record = {"name": item.name, "ground_truth": item.aif is not None, "files": item.meta.get("files"),
                  "sharpness": {"pipeline": sharpness(result.aif), "input": sharpness(item.image)}}
        folder = self.out_dir / item.name
        folder.mkdir(parents=True, exist_ok=True)
        write_images(folder, item, result)
        (folder / "sharpness.json").write_text(json.dumps(record, indent=1))
        self.records.append(record)
        return record

    def skip(self, failure: CaptureFailure) -> None:
        warnings.warn(f"data.captures: skipped capture '{failure.name}' ({failure.where}): {failure.error}",
                      stacklevel=2)
        self.skipped.append({"name": failure.name, "where": failure.where, "error": failure.error})

    def compute(self) -> dict[str, Any]:
        """``truth``: the AIF summary of the captures with ground truth (None without any); ``sharpness``: mean
        no-reference figures of the AIF images and the input frames over all processed captures."""
        with_truth = sum(record["ground_truth"] for record in self.records)
        truth = self.with_truth.compute() if with_truth else None
        means = {source: {key: _mean([r["sharpness"][source][key] for r in self.records])
                          for key in ("gradient_energy", "laplacian_variance")} for source in SHARPNESS_OF}
        return {"num_captures": len(self.records), "num_with_ground_truth": with_truth,
                "truth": truth, "sharpness": means, "captures": self.records, "skipped": self.skipped,
                "outputs": str(self.out_dir)}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
