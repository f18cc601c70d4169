"""Stage registry: ``stage:`` in the config picks the LightningModule and its data."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
from omegaconf import DictConfig

from evfocus.checkpoints import CheckpointError
from evfocus.config import ConfigError, to_container
from evfocus.data.datamodule import SimulatedSweepDataModule
from evfocus.models.registry import check_model_name
from evfocus.training.baseline_module import BaselineModule
from evfocus.training.refocus_module import RefocusModule
from evfocus.training.stack_module import StackModule


def _refocus(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
    try:
        module = RefocusModule(to_container(cfg), load_init_weights=_starts_fresh(cfg))
    except CheckpointError as error:
        raise ConfigError(f"stack.refocus_ckpt: {error}") from None
    return module, SimulatedSweepDataModule(cfg)


def _stack(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
    try:
        module = StackModule(to_container(cfg), load_init_weights=_starts_fresh(cfg))
    except CheckpointError as error:
        raise ConfigError(f"stack: {error}") from None
    return module, SimulatedSweepDataModule(cfg)


def _starts_fresh(cfg: DictConfig) -> bool:
    """A resumed or test-only run gets every weight from its checkpoint: it skips the stage initialisation."""
    return cfg.ckpt_path is None and cfg.test_ckpt is None


def _baseline(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
    return BaselineModule(to_container(cfg)), SimulatedSweepDataModule(cfg)


STAGE_BUILDERS: dict[str, Callable[[DictConfig], tuple[L.LightningModule, L.LightningDataModule]]] = {
    "refocus": _refocus,
    "merge": _stack,
    "joint": _stack,
    "baseline": _baseline,
}


def build_stage(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The stage's module and data; ``load_config`` accepts only the stages of ``config.STAGE_METRICS``,
    which must be those built here (a test keeps the two lists equal). ``model.name`` is checked here, against
    the network registry the schema cannot see (``config`` imports no other layer)."""
    check_model_name(cfg)
    return STAGE_BUILDERS[cfg.stage](cfg)

