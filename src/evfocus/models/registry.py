"""The networks an experiment config names: ``model.name`` picks one from ``MODELS``, the one place a network
is added (with ``data.num_bins``, ``model.*`` and ``merge_model.*`` as its sizes).

Every name here is a refocus network ``(image, events) → image`` that the ``refocus``/``merge``/``joint``
stages train. Image-only networks (``models.baselines.BASELINES``) join ``MODELS`` together with the
stage that trains them: a name must never point at a network no stage can train.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from evfocus.config import ConfigError
from evfocus.models.merge import EvMergeNet
from evfocus.models.refocus import EvRefocusNet


class UnknownModelError(ValueError):
    """``model.name`` names no network of ``MODELS``."""


def _evrefocusnet(cfg: DictConfig) -> EvRefocusNet:
    return EvRefocusNet(num_bins=cfg.data.num_bins, width=cfg.model.width, depth=cfg.model.depth,
                        norm=cfg.model.norm, event_gain_init=cfg.model.event_gain_init,
                        contrast=cfg.model.contrast)


MODELS: dict[str, Callable[[DictConfig], EvRefocusNet]] = {
    "evrefocusnet": _evrefocusnet,
}


def model_builder(name: str) -> Callable[[DictConfig], EvRefocusNet]:
    """The builder registered as ``name``, or ``UnknownModelError`` listing the known names."""
    if name not in MODELS:
        raise UnknownModelError(f"model.name: '{name}' is not one of {sorted(MODELS)}")
    return MODELS[name]


def check_model_name(cfg: DictConfig) -> None:
    """``ConfigError`` unless ``model.name`` is in ``MODELS``: the schema cannot check it (``config`` imports
    no other layer), so the entry point and the stage builder do, before anything runs."""
    try:
        model_builder(cfg.model.name)
    except UnknownModelError as error:
        raise ConfigError(str(error)) from None


def build_refocus_net(cfg: DictConfig) -> EvRefocusNet:
    """The refocus network ``model.name`` names, sized by the config."""
    return model_builder(cfg.model.name)(cfg)


def build_merge_net(cfg: DictConfig) -> EvMergeNet:
    return EvMergeNet(num_bins=cfg.data.num_bins, width=cfg.merge_model.width, depth=cfg.merge_model.depth,
                      norm=cfg.merge_model.norm)
