"""Trains ``models.depth_head.DepthHead`` on cached fusion features (``training.depth_head_data``).

The loss is the AbsRel of the mixed depth before the pipeline's edge-aware regulariser, over the pixels with
ground truth; validation scores the depth after ``pipeline.depth.regularise_depth`` as the pipeline smooths it,
guided by the all-in-focus grey the features hold (the pipeline's guide is the colour image: close, not equal),
beside the fixed rule's on the same sweeps (``val/<set>/rule_abs_rel``), so every log shows what the head adds.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from evfocus.models.depth_head import DepthHead
from evfocus.pipeline.depth import regularise_depth
from evfocus.pipeline.depth_fusion import CONFIDENCE, GREY, fused_position, position_depth_m
from evfocus.training.callbacks import NonFiniteLossError


def _abs_rel_per_sweep(pred_m: Tensor, true_m: Tensor) -> Tensor:
    """(N,) mean |pred − true| / true over each sweep's pixels with ground truth (+inf marks none)."""
    valid = torch.isfinite(true_m)
    safe_true = torch.where(valid, true_m, torch.ones_like(true_m))
    error = torch.where(valid, (pred_m - safe_true).abs() / safe_true, torch.zeros_like(pred_m))
    return error.flatten(1).sum(dim=1) / valid.flatten(1).sum(dim=1).clamp_min(1)


class DepthHeadModule(L.LightningModule):
    def __init__(self, settings: dict[str, Any], val_names: list[str]) -> None:
        super().__init__()
        self.save_hyperparameters({"settings": settings, "val_names": val_names})
        self.settings = settings
        self.val_names = val_names
        self.depth_head = DepthHead()
        self.val_scores: dict[str, list[Tensor]] = {}

    def _depth(self, batch: list[Tensor], correction: Tensor | None = None) -> tuple[Tensor, Tensor]:
        features, true_m, near, far = batch
        features = features.float()
        if correction is None:
            correction = self.depth_head(features)
        position = fused_position(features, correction)
        return position_depth_m(position, near[:, None, None, None], far[:, None, None, None]), true_m

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        pred_m, true_m = self._depth(batch)
        loss = _abs_rel_per_sweep(pred_m, true_m).mean()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite depth head loss at step {self.global_step}; the last good "
                                     "checkpoint is kept: lower --lr, then resume with --resume")
        self.log("train/abs_rel", loss, prog_bar=True, batch_size=len(true_m))
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_scores = {}

    def validation_step(self, batch: list[Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        features = batch[0].float()
        name = self.val_names[dataloader_idx]
        for method, correction in (("abs_rel", None), ("rule_abs_rel", torch.zeros_like(features[:, :2]))):
            pred_m, true_m = self._depth(batch, correction)
            smoothed = torch.stack([regularise_depth(depth, sweep[CONFIDENCE:CONFIDENCE + 1], sweep[GREY:GREY + 1])
                                    for depth, sweep in zip(pred_m, features, strict=True)])
            self.val_scores.setdefault(f"{name}/{method}", []).append(_abs_rel_per_sweep(smoothed, true_m))

    def on_validation_epoch_end(self) -> None:
        means = {key: torch.cat(values).mean() for key, values in self.val_scores.items()}
        for key, value in means.items():
            self.log(f"val/{key}", value, add_dataloader_idx=False)
        # the checkpoint's choice: the mean over the validation sets (one per sensor sensitivity)
        self.log("val/abs_rel", torch.stack([means[f"{name}/abs_rel"] for name in self.val_names]).mean(),
                 prog_bar=True, add_dataloader_idx=False)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.depth_head.parameters(), lr=self.settings["lr"])
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.settings["steps"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
