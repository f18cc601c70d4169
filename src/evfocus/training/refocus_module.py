"""Stage ``refocus``: train EvRefocusNet to turn (frame at t0, events t0→t) into the frame at t."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from evfocus.models.refocus import EvRefocusNet
from evfocus.training.callbacks import NonFiniteLossError
from evfocus.training.losses import ReconstructionLoss
from evfocus.training.metrics import ImageQualityMetrics
from evfocus.training.optim import build_optimizers

Batch = dict[str, Tensor]


def build_refocus_net(cfg: DictConfig) -> EvRefocusNet:
    return EvRefocusNet(num_bins=cfg.data.num_bins, width=cfg.model.width, depth=cfg.model.depth,
                        norm=cfg.model.norm)


def build_metrics(cfg: DictConfig) -> ImageQualityMetrics:
    lpips = {"auto": "auto", "on": True, "off": False}[cfg.eval.lpips]
    return ImageQualityMetrics(lpips=lpips)


class RefocusModule(L.LightningModule):
    """Loss L1 + SSIM (+ gradient, + LPIPS when weighted); PSNR/SSIM/LPIPS on val and test.

    The test step also scores the *identity* baseline (the input frame as the prediction), the
    figure a refocus network has to beat to be worth its events.
    """

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = OmegaConf.create(cfg)
        self.net = build_refocus_net(self.cfg)
        loss = self.cfg.loss
        self.loss = ReconstructionLoss(l1_weight=loss.l1, ssim_weight=loss.ssim, lpips_weight=loss.lpips,
                                       gradient_weight=loss.gradient)
        self.val_metrics = build_metrics(self.cfg)
        self.test_metrics = build_metrics(self.cfg)
        self.test_identity_metrics = build_metrics(self.cfg)

    def forward(self, image: Tensor, events: Tensor) -> Tensor:
        return self.net(image, events)

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        pred = self(batch["image"], batch["events"])
        total, parts = self.loss(pred, batch["target"])
        if not torch.isfinite(total):
            raise NonFiniteLossError(
                f"non-finite training loss ({float(total)}) at global step {self.global_step}; "
                f"parts: { {k: float(v) for k, v in parts.items()} }. The last good checkpoint is kept; "
                "lower optim.lr or check the data, then resume with ckpt_path=last."
            )
        batch_size = pred.shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=batch_size)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        return {"loss": total, "pred": pred.detach()}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        pred = self(batch["image"], batch["events"])
        total, _ = self.loss(pred, batch["target"])
        self.log("val/loss", total, batch_size=pred.shape[0])
        self.val_metrics.update(pred.float().clamp(0, 1), batch["target"].float())

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        pred = self(batch["image"], batch["events"])
        target = batch["target"].float()
        self.test_metrics.update(pred.float().clamp(0, 1), target)
        self.test_identity_metrics.update(batch["image"].float(), target)
        return {"pred": pred.detach()}

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)
        self._log_metrics("test/identity", self.test_identity_metrics)

    def _log_metrics(self, prefix: str, metrics: ImageQualityMetrics) -> None:
        for name, value in metrics.compute().items():
            if value is not None:  # LPIPS without backbone weights: recorded as null by train()
                self.log(f"{prefix}/{name}", value, prog_bar=name == "psnr", sync_dist=True)
        metrics.reset()

    def configure_optimizers(self) -> Any:
        return build_optimizers(self.net.parameters(), self.cfg.optim, self.trainer)
