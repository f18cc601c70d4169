"""Stage ``baseline``: an image-only network (``models.baselines``) from the defocused frame to the all-in-focus
image, trained on the same simulated sweeps and scored on the same AIF task as the event stages.

The loss of each network (docs/baselines.md says why):

- the project's reconstruction loss (``loss.l1``, ``loss.ssim``, …) of the estimate against the all-in-focus
  crop, unless all its weights are 0 (``configs/baselines/apl.yaml``: APL trains without pairs);
- ``ifan`` adds its paper's terms at 1/8 resolution: ``loss.reblur`` × the MSE of its reblurring network
  (the ground truth blurred by filters derived from IFAN's own) against the defocused input, and
  ``loss.defocus`` × the MSE of its defocus map against the signed blur that ground-truth depth and the
  sweep's optics give (``data.baseline_samples``), in 1/8-resolution pixels — in place of IFAN's dual-pixel
  disparity loss, since our sweeps have no dual-pixel views;
- ``apl`` adds ``loss.adversarial`` × the BCE that a discriminator calls its estimate real. The discriminator
  learns (BCE) to tell the estimates from *unpaired* sharp crops of other sweeps (``sample["sharp"]``). Two
  optimizers, one per side, each stepped once per batch (Lightning manual optimization; APL's released
  script never steps its generator: here the detector and the generator both learn).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from evfocus.config import ConfigError
from evfocus.models.baselines import APL, IFAN, IFANReblur
from evfocus.models.registry import build_baseline_net
from evfocus.sweep import Sweep
from evfocus.training.aif_eval import AIFEvaluator
from evfocus.training.base_module import Batch, StageModule
from evfocus.training.optim import build_optimizers
from evfocus.visualize import image_only_panel

# IFAN's defocus map lives on the 1/8 grid: its target is the full-resolution blur in 1/8-grid pixels
IFAN_SCALE = 8


def adversarial_bce(logits: Tensor, real: bool) -> Tensor:
    """BCE of discriminator logits against "real" (1) or "fake" (0) for every image."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))


class BaselineModule(StageModule):
    """An image-only network with its paper's extra losses (module doc); validation and test on whole sweeps."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.net = build_baseline_net(self.cfg)
        self.reblur_net = self.net.build_reblur_net() if isinstance(self.net, IFAN) else None
        self.discriminator = self.net.build_discriminator() if isinstance(self.net, APL) else None
        if self.loss is None and self.discriminator is None:
            raise ConfigError(f"loss: l1, ssim, lpips and gradient are all 0, and {self.cfg.model.name} has no "
                              "loss of its own; set one > 0")
        self.automatic_optimization = self.discriminator is None
        self.val_evaluator = AIFEvaluator(self.cfg, integration_contrast=None, references=False)

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)

    # ---------------------------------------------------------------- losses
    def network_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """(weighted total, unweighted terms, estimate) of the network's loss on a batch (module doc)."""
        weights = self.cfg.loss
        parts: dict[str, Tensor] = {}
        terms: list[Tensor] = []
        if isinstance(self.net, IFAN):
            out = self.net.forward_with_aux(batch["image"])
            pred = out.image
            parts["reblur"] = F.mse_loss(self.reblur_net(batch["aif"], out.filters),
                                         IFANReblur.downsample(batch["image"]))
            parts["defocus"] = F.mse_loss(out.defocus, IFANReblur.downsample(batch["defocus_px"]) / IFAN_SCALE)
            terms += [weights.reblur * parts["reblur"], weights.defocus * parts["defocus"]]
        else:
            pred = self.net(batch["image"])
        if self.discriminator is not None:
            parts["adversarial"] = adversarial_bce(self.discriminator(pred), real=True)
            terms.append(weights.adversarial * parts["adversarial"])
        if self.loss is not None:
            reconstruction, reconstruction_parts = self.loss(pred, batch["aif"])
            parts.update(reconstruction_parts)
            terms.append(reconstruction)
        return torch.stack(terms).sum(), parts, pred

    def discriminator_loss(self, batch: Batch, pred: Tensor) -> Tensor:
        """APL's discriminator: unpaired sharp crops are real, the network's estimates fake (mean of the two BCEs)."""
        real = adversarial_bce(self.discriminator(batch["sharp"]), real=True)
        fake = adversarial_bce(self.discriminator(pred.detach()), real=False)
        return (real + fake) / 2

    # ---------------------------------------------------------------- training
    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        if self.automatic_optimization:
            total, parts, pred = self.network_loss(batch)
            return {"loss": self.checked_total(total, parts, pred.shape[0]), "pred": pred.detach()}
        return self._adversarial_step(batch)

    def _adversarial_step(self, batch: Batch) -> dict[str, Tensor]:
        """One step of the network, then one of the discriminator on the same estimates."""
        net_optimizer, discriminator_optimizer = self.optimizers()
        self.toggle_optimizer(net_optimizer)  # the network's loss leaves the discriminator's gradients alone
        total, parts, pred = self.network_loss(batch)
        self._step(net_optimizer, self.checked_total(total, parts, pred.shape[0]))
        self.untoggle_optimizer(net_optimizer)
        self.toggle_optimizer(discriminator_optimizer)
        loss = self.discriminator_loss(batch, pred)
        self._step(discriminator_optimizer, self.checked_total(loss, {}, pred.shape[0], "train/discriminator"))
        self.untoggle_optimizer(discriminator_optimizer)
        self._step_schedulers("step")
        return {"loss": total.detach(), "pred": pred.detach()}

    def _step(self, optimizer: Any, loss: Tensor) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.cfg.optim.grad_clip_norm:
            self.clip_gradients(optimizer, gradient_clip_val=self.cfg.optim.grad_clip_norm,
                                gradient_clip_algorithm="norm")
        optimizer.step()

    def _step_schedulers(self, interval: str) -> None:
        """Manual optimization steps its schedulers itself: each at the interval it was configured with."""
        for config in self.trainer.lr_scheduler_configs:
            if config.interval == interval:
                config.scheduler.step()

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            self._step_schedulers("epoch")

    def configure_optimizers(self) -> Any:
        params = [*self.net.parameters(), *(self.reblur_net.parameters() if self.reblur_net is not None else [])]
        network = build_optimizers(params, self.cfg.optim, self.trainer)
        if self.discriminator is None:
            return network
        return network, build_optimizers(self.discriminator.parameters(), self.cfg.optim, self.trainer)

    # ---------------------------------------------------------------- validation and test: whole sweeps
    def validation_step(self, batch: Sweep, batch_idx: int) -> None:
        self.val_evaluator.update_baseline(batch, self.net, self.device)

    def on_validation_epoch_end(self) -> None:
        self.log_aif_validation(self.val_evaluator)

    def test_sweep(self, sweep: Sweep) -> dict[str, Any]:
        estimate = self.aif_evaluator.update_baseline(sweep, self.net, self.device)
        return {"panel": image_only_panel(sweep, estimate), "caption": "input | all-in-focus | ground truth"}
