"""AdamW with the scheduler named in ``optim.scheduler`` (optionally after a linear warm-up)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig


def build_optimizers(params: Iterable[torch.nn.Parameter], optim: DictConfig, trainer: L.Trainer) -> dict[str, Any]:
    optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    if optim.scheduler == "none":
        return {"optimizer": optimizer}
    if optim.scheduler == "cosine":
        total_steps = max(1, int(trainer.estimated_stepping_batches) - optim.warmup_steps)
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        interval = "step"
    else:  # "step": the reference schedule, ×gamma at epoch milestones
        main = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(optim.milestones_epochs),
                                                    gamma=optim.gamma)
        interval = "epoch"
    scheduler = main
    if optim.warmup_steps > 0:
        if interval != "step":
            raise ValueError("optim.warmup_steps needs optim.scheduler=cosine (a per-step schedule)")
        warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=optim.warmup_steps)
        scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, main],
                                                          milestones=[optim.warmup_steps])
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
