"""``train(cfg) -> (results, objects)``: one plain function the CLI, tests, sweeps and notebooks share.

It owns the run folder ``runs/<project>/<run_name>/``: resolved ``config.yaml``,
``checkpoints/`` (``last.ckpt`` + best by ``cfg.monitor``), ``metrics.csv``, ``results.json``,
``samples/`` and the offline wandb run.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from evfocus.checkpoints import CheckpointError, load_stage_checkpoint, resolve_checkpoint
from evfocus.config import ConfigError, to_container
from evfocus.training.callbacks import DataEpoch, GracefulInterrupt, ImagePanels, PeriodicLastCheckpoint
from evfocus.training.csv_history import HistoryCSVLogger
from evfocus.training.provenance import device_description, package_versions
from evfocus.training.stages import build_stage


def resolve_run_dir(cfg: DictConfig) -> tuple[Path, str | None]:
    """The run folder and the checkpoint to resume from (``ckpt_path``: None, ``last`` or a file)."""
    project_dir = Path(cfg.runs_dir) / cfg.project
    if cfg.ckpt_path is None:
        name = cfg.run_name or f"{cfg.stage}-{datetime.now():%Y%m%d-%H%M%S}"
        return project_dir / name, None
    if cfg.ckpt_path == "last":
        if cfg.run_name is not None:
            run_dir = project_dir / cfg.run_name
        else:
            candidates = sorted(project_dir.glob(f"{cfg.stage}-*/checkpoints/last.ckpt"),
                                key=lambda p: p.stat().st_mtime)
            if not candidates:
                raise ConfigError(f"ckpt_path=last: no run of stage '{cfg.stage}' with a last.ckpt under "
                                  f"{project_dir}; pass run_name=... or a checkpoint file")
            run_dir = candidates[-1].parent.parent
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        if not checkpoint.is_file():
            raise ConfigError(f"ckpt_path=last: {checkpoint} does not exist")
        return run_dir, str(checkpoint)
    checkpoint = Path(cfg.ckpt_path)
    if not checkpoint.is_file():
        raise ConfigError(f"ckpt_path: checkpoint file {checkpoint} does not exist")
    inside_run = checkpoint.parent.name == "checkpoints"
    run_dir = checkpoint.parent.parent if inside_run else project_dir / (cfg.run_name or checkpoint.stem)
    return run_dir, str(checkpoint)


def _check_checkpoint_stage(checkpoint: str, stage: str, key: str = "ckpt_path") -> None:
    try:
        load_stage_checkpoint(checkpoint, (stage,))
    except CheckpointError as error:
        raise ConfigError(f"{key}: {error}") from None


def _test_only_checkpoint(cfg: DictConfig) -> str:
    """The checkpoint ``test_ckpt`` names (a run folder gives its best), checked to be of this stage."""
    try:
        checkpoint = str(resolve_checkpoint(cfg.test_ckpt))
    except CheckpointError as error:
        raise ConfigError(f"test_ckpt: {error}") from None
    _check_checkpoint_stage(checkpoint, cfg.stage, "test_ckpt")
    return checkpoint


def _wandb_logger(cfg: DictConfig, run_dir: Path, run_name: str) -> WandbLogger | None:
    settings = cfg.logging.wandb
    mode = os.environ.get("WANDB_MODE", settings.mode)
    if not settings.enabled or mode == "disabled":
        return None
    return wandb_run_logger(run_dir, run_name, mode, to_container(cfg), settings.project or cfg.project,
                            settings.entity, list(settings.tags))


def wandb_run_logger(run_dir: Path, run_name: str, mode: str, config: dict[str, Any], project: str,
                     entity: str | None = None, tags: list[str] | None = None) -> WandbLogger:
    """The wandb run of ``run_dir``: its id is kept in ``run_dir/wandb_id.txt``, so a resumed run continues the
    same wandb run instead of starting another."""
    id_file = run_dir / "wandb_id.txt"
    if not id_file.is_file():
        id_file.write_text(f"{run_name}-{int(time.time())}")
    return WandbLogger(project=project, entity=entity, name=run_name, save_dir=str(run_dir),
                       id=id_file.read_text().strip(), resume="allow", mode=mode, tags=tags or [], config=config,
                       log_model=False)


def _make_trainer(cfg: DictConfig, run_dir: Path, loggers: list[Logger], callbacks: list[L.Callback],
                  automatic_optimization: bool = True) -> L.Trainer:
    """The Trainer of ``trainer:``; it clips gradients at ``optim.grad_clip_norm`` unless the module steps
    its optimizers itself (manual optimization clips in the module)."""
    trainer_kwargs = to_container(cfg)["trainer"]
    if automatic_optimization:
        trainer_kwargs.setdefault("gradient_clip_val", cfg.optim.grad_clip_norm or None)
    try:
        return L.Trainer(default_root_dir=str(run_dir), logger=loggers, callbacks=callbacks, **trainer_kwargs)
    except TypeError as error:
        raise ConfigError(f"trainer: {error} (keys under 'trainer:' go to lightning.Trainer unchanged)") from None


def _metric_group(metrics: dict[str, Any], prefix: str) -> dict[str, float | None]:
    """Test metrics under ``prefix``; LPIPS is ``None`` when it could not be computed."""
    group = {name: metrics.get(f"{prefix}/{name}") for name in ("psnr", "ssim", "lpips")}
    return {k: (float(v) if v is not None else None) for k, v in group.items()}


def _baselines(stage: str, refocus: dict[str, Any], aif: dict[str, Any]) -> dict[str, Any]:
    """What the headline figures are compared with, measured on the same test data."""
    if stage == "refocus":
        return {"identity": refocus["identity"]}
    return {name: value for name, value in aif.get("aif", {}).items() if name != "pipeline"}


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit, test and record one run; returns (results, {"trainer", "module", "datamodule", "run_dir"}).
    With ``test_ckpt`` set it only tests those weights (e.g. on other simulator settings)."""
    started = time.time()
    run_dir, resume_from = resolve_run_dir(cfg)
    if resume_from is not None:
        _check_checkpoint_stage(resume_from, cfg.stage)
    tested = _test_only_checkpoint(cfg) if cfg.test_ckpt is not None else None
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True)

    module, datamodule = build_stage(cfg)
    checkpoints = run_dir / "checkpoints"
    loggers: list[Logger] = [HistoryCSVLogger(run_dir, resume_from=resume_from)]  # keeps metrics.csv on resume
    wandb_logger = _wandb_logger(cfg, run_dir, run_dir.name)
    if wandb_logger is not None:
        loggers.append(wandb_logger)
    best = ModelCheckpoint(dirpath=checkpoints, filename="best-{epoch:03d}-{step:07d}", monitor=cfg.monitor,
                           mode=cfg.monitor_mode, save_top_k=1, save_last=False, auto_insert_metric_name=False)
    callbacks: list[L.Callback] = [
        best,
        PeriodicLastCheckpoint(checkpoints / "last.ckpt", cfg.checkpoint_every_n_steps),
        GracefulInterrupt(checkpoints / "last.ckpt"),
        DataEpoch(),
        ImagePanels(run_dir / "samples", cfg.logging.image_every_n_steps, cfg.logging.num_panel_images),
        LearningRateMonitor(logging_interval="step"),
    ]
    trainer = _make_trainer(cfg, run_dir, loggers, callbacks, module.automatic_optimization)
    if tested is None:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    best_path = tested or best.best_model_path or None
    trainer.test(module, datamodule=datamodule, ckpt_path=best_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    aif = getattr(module, "aif_summary", None) or {}
    refocus = {"model": _metric_group(metrics, "test/refocus"),
               "identity": _metric_group(metrics, "test/refocus_identity")}
    results = {
        "stage": cfg.stage,
        "run_dir": str(run_dir),
        # the stage's headline figures: refocus pairs for the refocus stage, the AIF task otherwise
        "test": refocus["model"] if cfg.stage == "refocus" else aif.get("aif", {}).get("pipeline"),
        "baselines": _baselines(cfg.stage, refocus, aif),
        "refocus": refocus,
        "aif": aif,
        "captures": module.capture_summary,  # data.captures: real captures' figures (None without any)
        "test_checkpoint": best_path or "final weights (no best checkpoint was saved)",
        "resumed_from": resume_from,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "seed": cfg.seed,
        "wall_time_s": round(time.time() - started, 1),
        "device": device_description(trainer),
        "versions": package_versions(),
        "config": to_container(cfg),
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    if wandb_logger is not None:
        wandb_logger.experiment.summary.update({"results": {k: results[k] for k in ("test", "baselines")}})
    return results, {"trainer": trainer, "module": module, "datamodule": datamodule, "run_dir": run_dir}
