"""What every stage's LightningModule shares: the loss and its NaN guard, metric logging, the test, predict.

The test scores the whole all-in-focus task on the test sweeps with ``AIFEvaluator`` — the same for
every stage, image-only baselines included, so the stages' ``results.json`` compare directly. The event
stages (``EventStageModule``: refocus, merge, joint) also score their refocus net on refocus pairs at
sampled times (refocus PSNR/SSIM/LPIPS against the identity); see ``SimulatedSweepDataModule.test_dataloader``.
With ``data.captures.root`` a third loader brings real captures to the event stages (``CaptureEvaluator``),
and predict runs on those captures alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from evfocus.checkpoints import load_stage_checkpoint, load_weights
from evfocus.config import ConfigError
from evfocus.data.capture_set import CaptureFailure
from evfocus.metrics import ImageQualityMetrics, build_metrics
from evfocus.models.registry import build_refocus_net
from evfocus.sweep import Sweep
from evfocus.training.aif_eval import AIFEvaluator, fit_integration_contrast, flat_scalars
from evfocus.training.callbacks import NonFiniteLossError
from evfocus.training.capture_eval import CaptureEvaluator
from evfocus.training.losses import ReconstructionLoss
from evfocus.visualize import aif_panel

Batch = dict[str, Tensor]
CAPTURES = 2  # test loader index of the real captures (event stages; after refocus pairs and sweeps)
AIF_PANEL_CAPTION = "input | all-in-focus | ground truth | depth | slice index"


def build_loss(cfg: DictConfig) -> ReconstructionLoss | None:
    """The reconstruction loss ``loss.*`` weighs; None when every weight is 0 (APL trains without pairs)."""
    loss = cfg.loss
    if not any((loss.l1, loss.ssim, loss.lpips, loss.gradient)):
        return None
    return ReconstructionLoss(l1_weight=loss.l1, ssim_weight=loss.ssim, lpips_weight=loss.lpips,
                              gradient_weight=loss.gradient)


class StageModule(L.LightningModule):
    """Base of the stage modules; subclasses add their nets, ``training_step``, validation and ``test_sweep``."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = OmegaConf.create(cfg)
        self.loss = build_loss(self.cfg)
        self.aif_evaluator: AIFEvaluator | None = None
        self.aif_summary: dict[str, Any] | None = None
        self.capture_evaluator: CaptureEvaluator | None = None
        self.capture_summary: dict[str, Any] | None = None

    # ---------------------------------------------------------------- what subclasses provide
    def test_sweep(self, sweep: Sweep) -> dict[str, Any]:
        """Score one test sweep with ``self.aif_evaluator``; returns ``{"panel": image, "caption": text}``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared steps
    def checked_total(self, total: Tensor, parts: dict[str, Tensor], batch_size: int, prefix: str = "train") -> Tensor:
        """``total`` with its parts logged; a non-finite total stops the run (last good checkpoint kept)."""
        if not torch.isfinite(total):
            raise NonFiniteLossError(
                f"non-finite training loss ({float(total)}) at global step {self.global_step}; "
                f"parts: { {k: float(v) for k, v in parts.items()} }. The last good checkpoint is kept; "
                "lower optim.lr or check the data, then resume with ckpt_path=last."
            )
        self.log(f"{prefix}/loss", total, prog_bar=True, batch_size=batch_size)
        for name, value in parts.items():
            self.log(f"{prefix}/{name}", value, batch_size=batch_size)
        return total

    def checked_loss(self, pred: Tensor, target: Tensor, prefix: str = "train") -> Tensor:
        """The reconstruction loss of ``pred``, checked and logged (``checked_total``)."""
        return self.checked_total(*self.loss(pred, target), batch_size=pred.shape[0], prefix=prefix)

    def log_image_metrics(self, prefix: str, metrics: ImageQualityMetrics) -> None:
        for name, value in metrics.compute().items():
            if value is not None:  # LPIPS without backbone weights: recorded as null by train()
                self.log(f"{prefix}/{name}", value, prog_bar=name == "psnr", sync_dist=True)
        metrics.reset()

    def log_aif_validation(self, evaluator: AIFEvaluator) -> None:
        """``val/psnr`` etc. of the AIF task on the validation sweeps (and ``val/depth_abs_rel`` when the
        stage makes depth); resets ``evaluator`` for the next validation."""
        summary = evaluator.compute()
        evaluator.reset()
        for name, value in summary["aif"]["pipeline"].items():
            if value is not None:
                self.log(f"val/{name}", value, prog_bar=name == "psnr", sync_dist=True)
        if summary["depth"]["pipeline"]["abs_rel"] is not None:
            self.log("val/depth_abs_rel", summary["depth"]["pipeline"]["abs_rel"], sync_dist=True)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, Sweep | CaptureFailure):
            return batch  # the pipeline moves what it needs, when it needs it
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # ---------------------------------------------------------------- test: whole sweeps (+ refocus pairs)
    def on_test_start(self) -> None:
        contrast = fit_integration_contrast(self.cfg)
        self.aif_evaluator = AIFEvaluator(self.cfg, contrast).to(self.device)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any] | None:
        if dataloader_idx == CAPTURES:
            return self.test_capture(batch)
        return self.test_sweep(batch) if isinstance(batch, Sweep) else self.test_refocus_pairs(batch)

    def test_refocus_pairs(self, batch: Batch) -> dict[str, Any] | None:
        """Only the event stages have a refocus-pairs test loader (``EventStageModule``)."""
        raise NotImplementedError(f"stage {self.cfg.stage} has no refocus-pairs test")

    def test_capture(self, batch: Sweep | CaptureFailure) -> dict[str, Any] | None:
        """Only the event stages are evaluated on captures (``EventStageModule``)."""
        raise NotImplementedError(f"stage {self.cfg.stage} is not evaluated on captures")

    def on_test_epoch_end(self) -> None:
        self.aif_summary = self.aif_evaluator.compute()
        for name, value in flat_scalars(self.aif_summary, "test").items():
            self.log(name, value, sync_dist=True)
        self._log_aif_table(self.aif_summary)
        if self.capture_evaluator is not None:
            self.capture_summary = self.capture_evaluator.compute()
            figures = {key: self.capture_summary[key] for key in ("truth", "sharpness")}
            for name, value in flat_scalars(figures, "test/captures").items():
                self.log(name, value, sync_dist=True)
            self.capture_evaluator = None

    # ---------------------------------------------------------------- predict: captures only
    def on_predict_epoch_end(self) -> None:
        """The summary in ``captures/summary.json`` of the run folder (predict has no results.json)."""
        if self.capture_evaluator is not None:
            self.capture_summary = self.capture_evaluator.compute()
            if self.trainer.is_global_zero:
                (self.capture_evaluator.out_dir / "summary.json").write_text(json.dumps(self.capture_summary,
                                                                                        indent=1))
            self.capture_evaluator = None

    def _captures(self, integration_contrast: float | None, references: bool = True) -> CaptureEvaluator:
        """This test's or predict's capture evaluator, made at the first capture; outputs go to
        ``<default_root_dir>/captures`` (the run folder under ``train``)."""
        if self.capture_evaluator is None:
            out_dir = Path(self.trainer.default_root_dir) / "captures"
            self.capture_evaluator = CaptureEvaluator(self.cfg, integration_contrast, out_dir, references)
        return self.capture_evaluator

    def _log_aif_table(self, summary: dict[str, Any]) -> None:
        columns = ["method", "psnr", "ssim", "lpips", "abs_rel", "rmse_m", "rmse_diopter", "seconds_per_sweep"]
        rows = []
        for method in [*summary["aif"], *(m for m in summary["depth"] if m not in summary["aif"])]:
            image = summary["aif"].get(method, {})
            depth = summary["depth"].get(method, {})
            rows.append([method, image.get("psnr"), image.get("ssim"), image.get("lpips"), depth.get("abs_rel"),
                         depth.get("rmse_m"), depth.get("rmse_diopter"), summary["seconds_per_sweep"].get(method)])
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key="test/aif_table", columns=columns, data=rows)


class EventStageModule(StageModule):
    """The event stages' common part: the refocus net, its contrast, and the refocus-pairs test."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        if self.loss is None:
            raise ConfigError("loss: l1, ssim, lpips and gradient are all 0; the event stages need one > 0")
        self.refocus_net = build_refocus_net(self.cfg)
        self.test_metrics = build_metrics(self.cfg)
        self.test_identity_metrics = build_metrics(self.cfg)

    def load_refocus_ckpt(self) -> None:
        """Copy the refocus net of ``stack.refocus_ckpt`` (any event stage's run, checkpoint or weights file) into
        this stage's; raises ``CheckpointError`` when it is missing or does not fit."""
        source = load_stage_checkpoint(self.cfg.stack.refocus_ckpt, ("refocus", "merge", "joint"))
        load_weights(self.refocus_net, source, "refocus_net.", "refocus net")

    def merge_fn(self) -> Any:
        """The merge used by the AIF pipeline (``None``: Sobel-energy merge)."""
        return None

    def log_contrast(self, batch: Batch, image_key: str) -> Tensor | None:
        """The refocus net's per-sample event contrast estimate (N,), or None when it has no estimator;
        ``batch[image_key]`` is the sweep's own frame (crop), ``batch["sweep_bins"]`` its events."""
        if self.refocus_net.contrast_source is None:
            return None
        return self.refocus_net.estimate_log_contrast(batch[image_key], batch["sweep_bins"], batch["prior_contrast"])

    def contrast_loss(self, log_contrast: Tensor, batch: Batch) -> Tensor:
        """``loss.contrast`` × squared log error of the estimated contrast against the sweep's best fit
        (logged), so the estimator learns its job directly, not only through the refocus loss."""
        error = (log_contrast - batch["target_contrast"].to(log_contrast.dtype).log()).pow(2).mean()
        self.log("train/contrast_log_error", error.detach().sqrt(), batch_size=log_contrast.shape[0])
        return self.cfg.loss.contrast * error

    def test_refocus_pairs(self, batch: Batch) -> dict[str, Any]:
        pred = self.refocus_net(batch["image"], batch["events"], log_contrast=self.log_contrast(batch, "context_image"),
                                linear=batch.get("linear_response"))
        target = batch["target"].float()
        self.test_metrics.update(pred.float().clamp(0, 1), target)
        self.test_identity_metrics.update(batch["image"].float(), target)
        return {"pred": pred.detach()}

    def test_capture(self, batch: Sweep | CaptureFailure) -> dict[str, Any] | None:
        return self._captures(self.aif_evaluator.integration_contrast).update(
            batch, self.refocus_net, self.merge_fn(), self.device)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any] | None:
        return self._captures(None, references=False).update(batch, self.refocus_net, self.merge_fn(), self.device)

    def test_sweep(self, sweep: Sweep) -> dict[str, Any]:
        result = self.aif_evaluator.update(sweep, self.refocus_net, self.merge_fn(), self.device)
        return {"panel": aif_panel(sweep, result), "caption": AIF_PANEL_CAPTION}

    def on_test_epoch_end(self) -> None:
        self.log_image_metrics("test/refocus", self.test_metrics)
        self.log_image_metrics("test/refocus_identity", self.test_identity_metrics)
        super().on_test_epoch_end()
