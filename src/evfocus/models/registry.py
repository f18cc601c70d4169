"""The networks an experiment config names: ``model.name`` picks one from ``MODELS``, the one place a network
is added, together with the stages that can train it.

- ``evrefocusnet``: the refocus network ``(image, events) → image`` of the ``refocus``/``merge``/``joint``
  stages, sized by ``data.num_bins``, ``model.*`` (and ``merge_model.*`` for its merge net).
- every image-only baseline of ``models.baselines.BASELINES`` (``drbnet``, ``ifan``, ``kpac``, ``apl``,
  ``unet_image``): ``image → image``, trained by stage ``baseline``, sized by ``model.preset`` and
  ``model.options`` (the baseline's constructor arguments).

One registry for both kinds, so ``model.name`` has one list of known names, and a name is checked against
the stage before anything runs: a name never points at a network the configured stage cannot train.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf
from torch import nn

from evfocus.config import ConfigError
from evfocus.models.baselines import BASELINES, ImageBaseline, build_baseline
from evfocus.models.merge import EvMergeNet
from evfocus.models.refocus import EvRefocusNet

EVENT_STAGES = ("refocus", "merge", "joint")
BASELINE_STAGE = "baseline"


class UnknownModelError(ValueError):
    """``model.name`` names no network of ``MODELS``, or one the configured stage cannot train."""


@dataclass(frozen=True)
class ModelEntry:
    """How to build one network from a config, and the stages that train it."""

    build: Callable[[DictConfig], nn.Module]
    stages: tuple[str, ...]


def _evrefocusnet(cfg: DictConfig) -> EvRefocusNet:
    return EvRefocusNet(num_bins=cfg.data.num_bins, width=cfg.model.width, depth=cfg.model.depth,
                        norm=cfg.model.norm, event_gain_init=cfg.model.event_gain_init,
                        contrast=cfg.model.contrast, response_aware=cfg.model.event_response_aware)


def _baseline_builder(name: str) -> Callable[[DictConfig], ImageBaseline]:
    def build(cfg: DictConfig) -> ImageBaseline:
        return build_baseline(name, cfg.model.preset, **OmegaConf.to_container(cfg.model.options, resolve=True))
    return build


MODELS: dict[str, ModelEntry] = {
    "evrefocusnet": ModelEntry(_evrefocusnet, EVENT_STAGES),
    **{name: ModelEntry(_baseline_builder(name), (BASELINE_STAGE,)) for name in BASELINES},
}


def model_entry(name: str, stage: str | None = None) -> ModelEntry:
    """The entry registered as ``name`` (trained by ``stage`` when given), or ``UnknownModelError`` saying why."""
    if name not in MODELS:
        raise UnknownModelError(f"model.name: '{name}' is not one of {sorted(MODELS)}")
    entry = MODELS[name]
    if stage is not None and stage not in entry.stages:
        known = sorted(n for n, e in MODELS.items() if stage in e.stages)
        raise UnknownModelError(f"model.name: '{name}' is trained by stage {' or '.join(entry.stages)}, not "
                                f"'{stage}'; stage '{stage}' trains {known}")
    return entry


def _check_baseline_size(cfg: DictConfig) -> None:
    """``model.preset`` is a preset of the baseline and ``model.options`` are arguments of its constructor."""
    spec = BASELINES[cfg.model.name]
    preset = cfg.model.preset
    if preset is not None and preset not in spec.presets:
        raise ConfigError(f"model.preset: '{preset}' is not a preset of {cfg.model.name}; one of "
                          f"{sorted(spec.presets)} (or null: the constructor's defaults)")
    accepted = set(inspect.signature(spec.builder).parameters)
    unknown = sorted(set(cfg.model.options) - accepted)
    if unknown:
        raise ConfigError(f"model.options: {unknown} are not arguments of {cfg.model.name}; it takes "
                          f"{sorted(accepted)}")


def check_model_name(cfg: DictConfig) -> None:
    """``ConfigError`` unless ``model.name`` is in ``MODELS``, trained by ``stage``, and (for a baseline) its
    preset and options fit: the schema cannot check these (``config`` imports no other layer), so the entry
    point and the stage builder do, before anything runs."""
    try:
        model_entry(cfg.model.name, cfg.stage)
    except UnknownModelError as error:
        raise ConfigError(str(error)) from None
    if cfg.stage == BASELINE_STAGE:
        _check_baseline_size(cfg)


def build_refocus_net(cfg: DictConfig) -> EvRefocusNet:
    """The refocus network ``model.name`` names, sized by the config."""
    return model_entry(cfg.model.name, "refocus").build(cfg)


def build_baseline_net(cfg: DictConfig) -> ImageBaseline:
    """The image-only baseline ``model.name`` names, at ``model.preset`` with ``model.options``."""
    return model_entry(cfg.model.name, BASELINE_STAGE).build(cfg)


def build_merge_net(cfg: DictConfig) -> EvMergeNet:
    return EvMergeNet(num_bins=cfg.data.num_bins, width=cfg.merge_model.width, depth=cfg.merge_model.depth,
                      norm=cfg.merge_model.norm, prior=cfg.merge_model.prior)
