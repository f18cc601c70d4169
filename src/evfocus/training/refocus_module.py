"""Stage ``refocus``: train EvRefocusNet to turn (frame at t0, events t0→t) into the frame at t."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from evfocus.metrics import build_metrics
from evfocus.training.base_module import Batch, EventStageModule
from evfocus.training.optim import build_optimizers


class RefocusModule(EventStageModule):
    """Loss L1 + SSIM (+ gradient, + LPIPS when weighted); PSNR/SSIM/LPIPS on refocus pairs.

    Its test also scores the *identity* baseline (the input frame as the prediction), the figure a
    refocus network has to beat to be worth its events, and the whole AIF task with a Sobel merge.
    """

    def __init__(self, cfg: dict[str, Any], load_init_weights: bool = True) -> None:
        super().__init__(cfg)
        self.val_metrics = build_metrics(self.cfg)
        if load_init_weights and self.cfg.stack.refocus_ckpt is not None:
            self.load_refocus_ckpt()  # fine-tuning: another run's (or the shipped) net instead of the identity

    def forward(self, batch: Batch) -> Tensor:
        return self.refocus_net(batch["image"], batch["events"], log_contrast=self.log_contrast(batch, "context_image"),
                                linear=batch.get("linear_response"))

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        log_contrast = self.log_contrast(batch, "context_image")
        pred = self.refocus_net(batch["image"], batch["events"], log_contrast=log_contrast,
                                linear=batch.get("linear_response"))
        loss = self.checked_loss(pred, batch["target"])
        if self.refocus_net.contrast_estimator is not None:
            loss = loss + self.contrast_loss(log_contrast, batch)
        return {"loss": loss, "pred": pred.detach()}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        pred = self(batch)
        total, _ = self.loss(pred, batch["target"])
        self.log("val/loss", total, batch_size=pred.shape[0])
        self.val_metrics.update(pred.float().clamp(0, 1), batch["target"].float())

    def on_validation_epoch_end(self) -> None:
        self.log_image_metrics("val", self.val_metrics)

    def configure_optimizers(self) -> Any:
        return build_optimizers(self.refocus_net.parameters(), self.cfg.optim, self.trainer)
