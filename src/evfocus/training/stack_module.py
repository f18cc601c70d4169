"""Stages ``merge`` and ``joint``: EvMergeNet on focal stacks, then both nets end to end.

``merge``: the refocus net is frozen (loaded from ``stack.refocus_ckpt``); the stack is the frame
refocused at the oracle slice times, at the times the focus search finds on each crop
(``stack.slice_source=search``: the slices the pipeline will hand the merge at test time), or —
``stack.teacher_forcing`` — the ground-truth frames.
``joint``: both nets train, initialised from ``stack.refocus_ckpt`` / ``stack.merge_ckpt``; the
slices come from the focus search on each crop (``stack.slice_source=search``, not differentiable:
its times are used as given) and gradients flow through refocusing and merging. A refocus loss at
the oracle slices (weight ``stack.refocus_loss_weight``) keeps the refocus net a refocus net.
Validation runs the whole pipeline on the validation sweeps (``val/psnr`` = AIF PSNR).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from evfocus.checkpoints import CheckpointError, load_stage_checkpoint, load_weights
from evfocus.events.focal_stack import EventFocalStack, cumulative_segments
from evfocus.models.merge import EvMergeNet, MergeOutput
from evfocus.models.registry import build_merge_net
from evfocus.pipeline.aif import find_slices
from evfocus.pipeline.settings import search_config
from evfocus.sweep import Sweep
from evfocus.training.aif_eval import AIFEvaluator
from evfocus.training.base_module import Batch, EventStageModule
from evfocus.training.optim import build_optimizers


def crop_search_settings(cfg: DictConfig) -> DictConfig:
    """``pipeline.search`` as the joint stage runs it on every training crop, once per crop per step:
    on the oracle grid, at its own coarser tolerance, in time, with no event floor (a crop carries
    signed counts only) and all patches in one network call."""
    stack = cfg.stack
    return OmegaConf.merge(cfg.pipeline.search, {
        "grid_size": stack.oracle_grid, "tolerance_fraction": stack.search_tolerance_fraction, "domain": "time",
        "min_events_per_px": 0.0, "max_crops_per_call": stack.oracle_grid**2})


class StackModule(EventStageModule):
    """EvRefocusNet + EvMergeNet trained on focal-stack crops (``data/stack_samples.py``)."""

    def __init__(self, cfg: dict[str, Any], load_init_weights: bool = True) -> None:
        super().__init__(cfg)
        self.merge_net = build_merge_net(self.cfg)
        if load_init_weights:
            self._load_init_weights()
        self.frozen_refocus = self.cfg.stage == "merge"
        if self.frozen_refocus:
            self.refocus_net.requires_grad_(False)
        self.val_evaluator = AIFEvaluator(self.cfg, integration_contrast=None, references=False)
        self.crop_search = crop_search_settings(self.cfg)

    def _load_init_weights(self) -> None:
        stack = self.cfg.stack
        if stack.refocus_ckpt is not None:
            self.load_refocus_ckpt()
        elif self.cfg.stage == "merge" and not stack.teacher_forcing:
            raise CheckpointError("stage merge: set stack.refocus_ckpt to a refocus run (folder or .ckpt), "
                                  "or stack.teacher_forcing=true to train on ground-truth frames")
        if self.cfg.stage == "joint" and stack.merge_ckpt is not None:
            source = load_stage_checkpoint(stack.merge_ckpt, ("merge", "joint"))
            load_weights(self.merge_net, source, "merge_net.", "merge net")
            if stack.refocus_ckpt is None:
                load_weights(self.refocus_net, source, "refocus_net.", "refocus net")

    def train(self, mode: bool = True) -> StackModule:
        super().train(mode)
        if self.frozen_refocus:
            self.refocus_net.eval()  # frozen: its norms and dropout stay in inference mode
        return self

    def merge_fn(self) -> EvMergeNet:
        return self.merge_net

    # ---------------------------------------------------------------- training
    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        slice_pos, valid = batch["slice_pos"], batch["valid"]
        if self.cfg.stack.slice_source == "search":
            slice_pos, valid = self._searched_slices(batch)
        stack = self._stack(batch, slice_pos, valid)
        merged = self._merge(batch, stack, slice_pos, valid)
        loss = self.checked_loss(merged.image, batch["aif"])
        if self.cfg.stage == "joint" and self.cfg.stack.refocus_loss_weight > 0:
            oracle = self._refocused(batch, batch["slice_pos"])
            mask = batch["valid"]
            refocus_loss, _ = self.loss(oracle[mask], batch["slice_frames"][mask])
            self.log("train/refocus_loss", refocus_loss, batch_size=mask.shape[0])
            loss = loss + self.cfg.stack.refocus_loss_weight * refocus_loss
        if not self.frozen_refocus and self.refocus_net.contrast_estimator is not None:
            loss = loss + self.contrast_loss(self.log_contrast(batch, "image"), batch)
        return {"loss": loss}

    def _refocused(self, batch: Batch, slice_pos: Tensor) -> Tensor:
        """The crops refocused at every slice position: (N, S, C, h, w)."""
        num, slices = slice_pos.shape
        crop = torch.arange(num, device=slice_pos.device).repeat_interleave(slices)
        t0 = batch["image_pos"].repeat_interleave(slices)
        events = cumulative_segments(batch["cumulative"], 0.0, 1.0, t0, slice_pos.flatten(),
                                          self.cfg.data.num_bins, crop_index=crop)
        images = batch["image"][crop]
        log_contrast = self.log_contrast(batch, "image")
        log_contrast = None if log_contrast is None else log_contrast[crop]
        linear = batch.get("linear_response")
        linear = None if linear is None else linear[crop]
        return self.refocus_net(images, events, log_contrast=log_contrast,
                                linear=linear).reshape(num, slices, *images.shape[1:])

    def _stack(self, batch: Batch, slice_pos: Tensor, valid: Tensor) -> Tensor:
        if self.cfg.stage == "merge" and self.cfg.stack.teacher_forcing:
            return batch["slice_frames"]
        if self.frozen_refocus:
            with torch.no_grad():
                return self._refocused(batch, slice_pos)
        return self._refocused(batch, slice_pos)

    def _merge(self, batch: Batch, stack: Tensor, slice_pos: Tensor, valid: Tensor) -> MergeOutput:
        num, slices = slice_pos.shape
        half = self.cfg.pipeline.merge_window_fraction
        crop = torch.arange(num, device=slice_pos.device).repeat_interleave(slices)
        flat = slice_pos.flatten()
        events = cumulative_segments(batch["cumulative"], 0.0, 1.0, (flat - half).clamp(0, 1),
                                          (flat + half).clamp(0, 1), self.cfg.data.num_bins, crop_index=crop)
        events = events.reshape(num, slices, *events.shape[1:])
        return self.merge_net(stack, events, valid)

    @torch.no_grad()
    def _searched_slices(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The pipeline's slices of every crop with the current refocus net → padded slice positions.

        A crop's sample keeps its times as fractions of its sweep (sweeps of any length batch together);
        its focal stack converts them to µs and back (``EventFocalStack.time_us``/``fraction``).
        """
        max_slices = batch["slice_pos"].shape[1]
        positions = torch.zeros_like(batch["slice_pos"])
        valid = torch.zeros_like(batch["valid"])
        was_training = self.refocus_net.training
        self.refocus_net.eval()
        for index in range(batch["image"].shape[0]):
            image = batch["image"][index]
            focal_stack = EventFocalStack(batch["cumulative"][index], 0, round(float(batch["duration_us"][index])))
            image_time_us = float(focal_stack.time_us(batch["image_pos"][index]))
            search = search_config(self.crop_search, self.cfg.data.num_bins, image.shape[-2], image.shape[-1],
                                   focal_stack.t_end_us - focal_stack.t_start_us, image.device)
            linear = "linear_response" in batch and bool(batch["linear_response"][index])
            refocus = self.refocus_net.for_sweep(image, focal_stack, image_time_us,
                                                 float(batch["prior_contrast"][index]),
                                                 response="linear" if linear else "gamma")
            _, times_us = find_slices(image, image_time_us, focal_stack, refocus, search, max_slices)
            times = focal_stack.fraction(times_us)
            positions[index, :len(times)] = times.to(positions.dtype)
            positions[index, len(times):] = batch["image_pos"][index]
            valid[index, :len(times)] = True
        self.refocus_net.train(was_training)
        return positions, valid

    # ---------------------------------------------------------------- validation: the whole pipeline
    def validation_step(self, batch: Sweep, batch_idx: int) -> None:
        self.val_evaluator.update(batch, self.refocus_net, self.merge_net, self.device)

    def on_validation_epoch_end(self) -> None:
        self.log_aif_validation(self.val_evaluator)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        return build_optimizers(params, self.cfg.optim, self.trainer)
