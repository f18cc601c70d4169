"""Stage registry: ``stage:`` in the config picks the LightningModule and its data."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
from omegaconf import DictConfig

from evfocus.config import ConfigError, to_container
from evfocus.data.datamodule import SimulatedSweepDataModule
from evfocus.training.refocus_module import RefocusModule


def _refocus(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
    return RefocusModule(to_container(cfg)), SimulatedSweepDataModule(cfg)


STAGE_BUILDERS: dict[str, Callable[[DictConfig], tuple[L.LightningModule, L.LightningDataModule]]] = {
    "refocus": _refocus,
}


def build_stage(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
    if cfg.stage not in STAGE_BUILDERS:
        raise ConfigError(f"stage: '{cfg.stage}' is not implemented yet (available: {sorted(STAGE_BUILDERS)})")
    return STAGE_BUILDERS[cfg.stage](cfg)
