"""Find and load stage checkpoints (a file, or a run folder → its best checkpoint) with clear errors.

Inference, training and the benchmarks share it; it needs the config schema and the networks, never
Lightning (a checkpoint is read as plain tensors and values, see ``load_checkpoint_file``).

Two kinds of file load the same way: a Lightning checkpoint written by ``src/train.py``, and a
*weights file* (``save_weights``): the nets' weights (fp16 by default) and the run's config, nothing
else — what the repository ships in ``weights/`` and ``src/aif.py`` uses when given no ``--ckpt``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from evfocus.config import ConfigError, ExperimentConfig, validate, with_pipeline_changes
from evfocus.models.baselines import ImageBaseline
from evfocus.models.depth_head import DepthHead
from evfocus.models.merge import EvMergeNet
from evfocus.models.refocus import EvRefocusNet
from evfocus.models.registry import (
    BASELINE_STAGE,
    UnknownModelError,
    build_baseline_net,
    build_merge_net,
    build_refocus_net,
)

# how torch's weights-only unpickler names a callable or class it refused (anything else: a corrupt file)
UNSAFE_OBJECT = re.compile(r"global|function|class|allowlisted", re.IGNORECASE)
WEIGHTS_FORMAT = "evfocus-weights"
WEIGHTS_VERSION = 1
NET_PREFIXES = ("refocus_net.", "merge_net.", "depth_head.")  # what a weights file keeps of a checkpoint
HEAD_INPUT_PREFIXES = ("refocus_net.", "merge_net.")  # the nets whose outputs a depth head learns to mix
# the shipped model: in a checkout of the repository, beside src/
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "evfocus-release.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of the wrong stage or does not fit the config."""


@dataclass
class StageCheckpoint:
    path: Path
    stage: str
    cfg: DictConfig
    state_dict: dict[str, Any]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's best checkpoint (else its ``last.ckpt``)."""
    path = Path(path)
    if path.is_dir():
        folder = path / "checkpoints"
        if not folder.is_dir():
            raise CheckpointError(f"{path} is a folder but not a run folder (no checkpoints/ inside)")
        best = sorted(folder.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
        if best:
            return best[-1]
        if (folder / "last.ckpt").is_file():
            return folder / "last.ckpt"
        raise CheckpointError(f"{folder} holds no checkpoint (best-*.ckpt or last.ckpt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def load_checkpoint_file(path: str | os.PathLike, mmap: bool = False) -> Any:
    """``torch.load`` of tensors and plain values only, so a checkpoint from someone else cannot run code.

    Every checkpoint ``src/train.py`` writes holds only tensors, numbers, strings, lists and dicts (the
    config is saved as a plain dict), so nothing needs allow-listing. ``mmap`` maps a zip checkpoint
    instead of reading it (a legacy file is read whole).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?: Please use|\n\n|$)", str(error), re.DOTALL)
        detail = " ".join((found[1] if found else str(error).splitlines()[0]).split())
        if UNSAFE_OBJECT.search(detail):
            raise CheckpointError(f"{path}: refused to load: it holds more than tensors and plain values, and "
                                  f"loading it could run code from the file ({detail})") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({detail})") from None
    except Exception as error:  # truncated/corrupt files raise many types; name the file and the cause
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None


def load_stage_checkpoint(path: str | Path, stages: tuple[str, ...] | None = None) -> StageCheckpoint:
    """Read a checkpoint written by ``src/train.py``; ``stages`` lists the stages accepted."""
    file = resolve_checkpoint(path)
    content = load_checkpoint_file(file)
    if isinstance(content, dict) and content.get("format") == WEIGHTS_FORMAT:
        cfg, state_dict = _weights_file_parts(content, file)
    else:
        hyper_parameters = content.get("hyper_parameters") if isinstance(content, dict) else None
        cfg = hyper_parameters.get("cfg") if isinstance(hyper_parameters, dict) else None
        state_dict = content.get("state_dict") if isinstance(content, dict) else None
    if not isinstance(cfg, dict) or not isinstance(state_dict, dict):
        raise CheckpointError(f"{file}: not an evfocus checkpoint (no hyper_parameters.cfg / state_dict)")
    stage = cfg.get("stage")
    if stages is not None and stage not in stages:
        raise CheckpointError(f"{file} is a '{stage}' checkpoint; expected a {' or '.join(stages)} checkpoint")
    return StageCheckpoint(file, stage, _upgraded(cfg, file), state_dict)


def _weights_file_parts(content: dict[str, Any], file: Path) -> tuple[Any, Any]:
    """(config, float32 state dict) of a weights file, after checking its format version."""
    if content.get("version") != WEIGHTS_VERSION:
        raise CheckpointError(f"{file}: weights file version {content.get('version')!r}; this evfocus reads "
                              f"version {WEIGHTS_VERSION}")
    state_dict = content.get("state_dict")
    if isinstance(state_dict, dict):
        state_dict = {key: value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value
                      for key, value in state_dict.items()}
    return content.get("cfg"), state_dict


def with_refocus_net(checkpoint: StageCheckpoint, refocus: StageCheckpoint) -> StageCheckpoint:
    """``checkpoint`` (merge or joint stage) with ``refocus``'s refocus net and ``model`` config instead of its own:
    a refocus net fine-tuned alone, paired with the merge net trained on its predecessor's stacks."""
    if checkpoint.stage not in ("merge", "joint"):
        raise CheckpointError(f"{checkpoint.path} is a '{checkpoint.stage}' checkpoint; a refocus net pairs with a "
                              "merge or joint checkpoint's merge net")
    for key in ("data.num_bins", "data.efs_fine_bins"):
        ours, theirs = OmegaConf.select(checkpoint.cfg, key), OmegaConf.select(refocus.cfg, key)
        if ours != theirs:
            raise CheckpointError(f"{refocus.path}: {key}={theirs}, but {checkpoint.path} was trained with {ours}")
    nets = {key: value for key, value in refocus.state_dict.items() if key.startswith("refocus_net.")}
    if not nets:
        raise CheckpointError(f"{refocus.path}: no refocus net weights in this '{refocus.stage}' checkpoint")
    state_dict = {key: value for key, value in checkpoint.state_dict.items() if not key.startswith("refocus_net.")}
    cfg = checkpoint.cfg.copy()
    cfg.model = refocus.cfg.model
    return StageCheckpoint(checkpoint.path, checkpoint.stage, cfg, {**state_dict, **nets})


def with_pipeline_settings(checkpoint: StageCheckpoint, settings: list[str]) -> StageCheckpoint:
    """``checkpoint`` with ``key=value`` items applied under its config's ``pipeline`` section (values parsed as
    YAML), checked like any config: settings chosen on validation sweeps after training that belong with the nets."""
    cfg = checkpoint.cfg
    for item in settings:
        try:
            cfg = with_pipeline_changes(cfg, [item])
            validate(cfg)
        except (ConfigError, OmegaConfBaseException) as error:
            raise CheckpointError(f"pipeline setting {item!r}: {error}".splitlines()[0]) from None
    return StageCheckpoint(checkpoint.path, checkpoint.stage, cfg, checkpoint.state_dict)


def with_depth_head(checkpoint: StageCheckpoint, head_file: str | Path) -> StageCheckpoint:
    """``checkpoint`` (merge or joint stage) with the depth head of ``head_file`` (a checkpoint of
    ``src/train_depth_head.py``, trained on this merge's weights), which must load into ``DepthHead``."""
    if checkpoint.stage not in ("merge", "joint"):
        raise CheckpointError(f"{checkpoint.path} is a '{checkpoint.stage}' checkpoint; a depth head mixes the "
                              "depths of a merge net (merge or joint stage)")
    head_path = resolve_checkpoint(head_file)
    content = load_checkpoint_file(head_path)
    state_dict = content.get("state_dict") if isinstance(content, dict) else None
    head = {key: value for key, value in (state_dict or {}).items() if key.startswith("depth_head.")}
    if not head:
        raise CheckpointError(f"{head_path}: no depth head weights (depth_head.*) in this file")
    load_depth_head(StageCheckpoint(head_path, checkpoint.stage, checkpoint.cfg, head))  # fails naming the head file
    trained_for = _head_settings(content).get("nets_sha256")
    if trained_for is None:
        warnings.warn(f"{head_path}: records no fingerprint of the nets it was trained for, so nothing checks that "
                      f"they are those of {checkpoint.path}", stacklevel=2)
    elif trained_for != nets_fingerprint(checkpoint):
        raise CheckpointError(f"{head_path}: this depth head was trained on the outputs of other nets than those of "
                              f"{checkpoint.path} (their fingerprints differ); train one for these nets with "
                              f"src/train_depth_head.py --weights {checkpoint.path}")
    kept = {key: value for key, value in checkpoint.state_dict.items() if not key.startswith("depth_head.")}
    return StageCheckpoint(checkpoint.path, checkpoint.stage, checkpoint.cfg, {**kept, **head})


def nets_fingerprint(checkpoint: StageCheckpoint) -> str:
    """SHA-256 of the refocus and merge nets' weights as a weights file stores them (float16, so a run's float32
    checkpoint and its exported weights share it): what a depth head records of the nets it was trained for."""
    digest = hashlib.sha256()
    for key in sorted(key for key in checkpoint.state_dict if key.startswith(HEAD_INPUT_PREFIXES)):
        value = checkpoint.state_dict[key].detach().cpu()
        value = value.to(torch.float16) if value.is_floating_point() else value
        digest.update(f"{key}{tuple(value.shape)}{value.dtype}".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _head_settings(content: Any) -> dict[str, Any]:
    """The settings ``src/train_depth_head.py`` saved with its checkpoint's hyperparameters ({} if none)."""
    hyper = content.get("hyper_parameters") if isinstance(content, dict) else None
    settings = hyper.get("settings") if isinstance(hyper, dict) else None
    return settings if isinstance(settings, dict) else {}


def save_weights(checkpoint: StageCheckpoint, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write ``checkpoint``'s nets (floating tensors as ``dtype``) and config as a weights file.

    Only what inference needs travels: no optimizer, loop or callback state, so the file is about a
    third of the checkpoint in fp16, and loads with ``load_stage_checkpoint`` like any checkpoint.
    """
    nets = {key: value.to(dtype) if value.is_floating_point() else value
            for key, value in checkpoint.state_dict.items() if key.startswith(NET_PREFIXES)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "stage": checkpoint.stage,
                "cfg": OmegaConf.to_container(checkpoint.cfg, resolve=True), "state_dict": nets}, path)
    return path


def _upgraded(saved: dict[str, Any], file: Path) -> DictConfig:
    """The saved config on today's schema: keys added since get the value that reproduces how the
    checkpoint was trained where that differs from today's default, the default otherwise."""
    try:
        cfg = OmegaConf.create(saved)
        if "model" in cfg and "event_gain_init" not in cfg.model:
            cfg.model.event_gain_init = None  # EvRefocusNet had no event gain then
        if "model" in cfg and "event_response_aware" not in cfg.model:
            cfg.model.event_response_aware = False  # trained with every sensor's events in the frame's log
        return OmegaConf.merge(OmegaConf.structured(ExperimentConfig), cfg)
    except Exception as error:  # a key this version no longer knows, a changed type, or not a config at all
        raise CheckpointError(f"{file}: its config does not fit this version of evfocus: {error}") from None


def load_weights(net: nn.Module, checkpoint: StageCheckpoint, prefix: str, what: str) -> nn.Module:
    """Copy the ``prefix``-ed weights of ``checkpoint`` into ``net`` (strict), or say why they don't fit."""
    weights = {k[len(prefix):]: v for k, v in checkpoint.state_dict.items() if k.startswith(prefix)}
    if not weights:
        raise CheckpointError(f"{checkpoint.path}: no {what} weights in this '{checkpoint.stage}' checkpoint")
    try:
        net.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        if what == "depth head":  # one fixed architecture (models.depth_head): no config to name
            raise CheckpointError(f"{checkpoint.path}: its depth head does not fit this version's DepthHead; "
                                  f"first mismatch: {first}") from None
        saved = checkpoint.cfg.merge_model if what == "merge net" else checkpoint.cfg.model
        raise CheckpointError(
            f"{checkpoint.path}: its {what} does not fit this config (saved model: {OmegaConf.to_container(saved)}"
            f", data.num_bins={checkpoint.cfg.data.num_bins}); first mismatch: {first}") from None
    return net


@contextmanager
def _building(checkpoint: StageCheckpoint) -> Iterator[None]:
    """Turn a saved config this version cannot build nets from into a ``CheckpointError`` naming the file."""
    try:
        yield
    except OmegaConfBaseException as error:  # a config saved by an evfocus with another schema
        key = getattr(error, "full_key", None) or "?"
        raise CheckpointError(f"{checkpoint.path}: its saved config cannot build this version's nets "
                              f"(key '{key}': {str(error).splitlines()[0]}); saved by an older evfocus?") from None
    except (UnknownModelError, TypeError, ValueError) as error:  # unknown name, preset or constructor argument
        raise CheckpointError(f"{checkpoint.path}: {error}; saved by another version of evfocus?") from None


def load_nets(checkpoint: StageCheckpoint) -> tuple[EvRefocusNet, EvMergeNet | None]:
    """The checkpoint's refocus net and, for the merge and joint stages, its merge net (eval mode)."""
    if checkpoint.stage == BASELINE_STAGE:
        raise CheckpointError(f"{checkpoint.path} is an image-only baseline ({checkpoint.cfg.model.name}): it has "
                              "no refocus net (load it with load_baseline)")
    with _building(checkpoint):
        refocus = build_refocus_net(checkpoint.cfg)
        merge = build_merge_net(checkpoint.cfg) if checkpoint.stage in ("merge", "joint") else None
    load_weights(refocus, checkpoint, "refocus_net.", "refocus net").eval()
    if merge is not None:
        load_weights(merge, checkpoint, "merge_net.", "merge net").eval()
    return refocus, merge


def load_depth_head(checkpoint: StageCheckpoint) -> DepthHead | None:
    """The checkpoint's depth head (eval mode), or None when it has none (the pipeline then mixes the depths
    by its fixed rule)."""
    if not any(key.startswith("depth_head.") for key in checkpoint.state_dict):
        return None
    return load_weights(DepthHead(), checkpoint, "depth_head.", "depth head").eval()


def load_baseline(checkpoint: StageCheckpoint) -> ImageBaseline:
    """The image-only network of a ``baseline`` checkpoint (eval mode)."""
    if checkpoint.stage != BASELINE_STAGE:
        raise CheckpointError(f"{checkpoint.path} is a '{checkpoint.stage}' checkpoint, not an image-only baseline")
    with _building(checkpoint):
        net = build_baseline_net(checkpoint.cfg)
    return load_weights(net, checkpoint, "net.", f"{checkpoint.cfg.model.name} network").eval()
