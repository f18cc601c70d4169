"""A checkpoint from someone else must not run code: every load is tensors-and-plain-values only."""

import pickle
from pathlib import Path

import pytest
import torch
from test_aif_cli import load_aif_module
from tiny import tiny_overrides

from evfocus.checkpoints import CheckpointError, load_stage_checkpoint
from evfocus.config import ConfigError, load_config
from evfocus.training.csv_history import checkpoint_log_step
from evfocus.training.run import train
from evfocus.training.stages import build_stage

ROOT = Path(__file__).parents[1]


class CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appears only if the loader ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def crafted_checkpoints(tmp_path: Path) -> tuple[Path, list[Path]]:
    """(the file their code would create, [a torch.save zip checkpoint, a plain pickle]) for a fake run."""
    marker = tmp_path / "code_ran"
    content = {"state_dict": {}, "hyper_parameters": {"cfg": {"stage": "refocus"}}, "payload": CreatesFile(marker)}
    zipped = tmp_path / "crafted.ckpt"
    torch.save(content, zipped)
    legacy = tmp_path / "crafted_legacy.ckpt"
    legacy.write_bytes(pickle.dumps(content, protocol=2))
    return marker, [zipped, legacy]


def load_via_stage_checkpoint(path: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"refused.*io\.open"):
        load_stage_checkpoint(path)


def load_via_csv_history(path: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint_log_step(path)


def load_via_train_ckpt_path(path: Path, tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs/quickstart.yaml", tiny_overrides(tmp_path, f"ckpt_path={path}"))
    with pytest.raises(ConfigError, match=r"ckpt_path: .*refused"):
        train(cfg)


def load_via_refocus_ckpt(path: Path, tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs/quickstart_merge.yaml", tiny_overrides(tmp_path, f"stack.refocus_ckpt={path}"))
    with pytest.raises(ConfigError, match=r"stack: .*refused"):
        build_stage(cfg)


def load_via_aif_cli(path: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_aif_module().main(["--ckpt", str(path), "--input", "sim:0", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("load", [load_via_stage_checkpoint, load_via_csv_history, load_via_train_ckpt_path,
                                  load_via_refocus_ckpt, load_via_aif_cli], ids=lambda f: f.__name__)
def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path, load, capsys):
    marker, files = crafted_checkpoints(tmp_path)
    for path in files:
        load(path, tmp_path)
        assert not marker.exists(), f"loading {path.name} ran code from the file"
    if load is load_via_aif_cli:
        assert "refused" in capsys.readouterr().err


def test_the_crafted_file_does_run_code_when_loaded_unsafely(tmp_path):
    """The check above is meaningful: the same file creates the marker when loaded with weights_only=False."""
    marker, files = crafted_checkpoints(tmp_path)
    torch.load(files[0], weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("content", [
    [1, 2], {"state_dict": {}, "hyper_parameters": [1]}, {"state_dict": {}, "hyper_parameters": {"cfg": "refocus"}},
    {"state_dict": [], "hyper_parameters": {"cfg": {"stage": "refocus"}}},
    {"state_dict": {}, "hyper_parameters": {"cfg": {"stage": "refocus", "model": 3}}},
    {"state_dict": {}, "hyper_parameters": {"cfg": {"stage": "refocus", "seed": "many"}}},
], ids=["list", "hparams-list", "cfg-string", "state-dict-list", "model-int", "seed-string"])
def test_a_tensors_only_file_of_another_shape_is_a_clear_error(tmp_path, content):
    torch.save(content, tmp_path / "odd.ckpt")
    with pytest.raises(CheckpointError, match=r"odd\.ckpt: (not an evfocus checkpoint|its config does not fit)"):
        load_stage_checkpoint(tmp_path / "odd.ckpt")
