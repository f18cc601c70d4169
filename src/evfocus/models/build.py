"""The networks an experiment config describes (``model``, ``merge_model``, ``data.num_bins``)."""

from __future__ import annotations

from omegaconf import DictConfig

from evfocus.models.merge import EvMergeNet
from evfocus.models.refocus import EvRefocusNet


def build_refocus_net(cfg: DictConfig) -> EvRefocusNet:
    return EvRefocusNet(num_bins=cfg.data.num_bins, width=cfg.model.width, depth=cfg.model.depth,
                        norm=cfg.model.norm, event_gain_init=cfg.model.event_gain_init,
                        contrast=cfg.model.contrast)


def build_merge_net(cfg: DictConfig) -> EvMergeNet:
    return EvMergeNet(num_bins=cfg.data.num_bins, width=cfg.merge_model.width, depth=cfg.merge_model.depth,
                      norm=cfg.merge_model.norm)
