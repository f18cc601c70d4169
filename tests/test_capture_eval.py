"""Real captures in the DataModule's test and predict loaders (data.captures), with random tiny nets.

One Trainer.test covers the three kinds of capture at once: with ground truth (scored like the simulated
test sweeps), without (outputs + no-reference sharpness), and broken (reported and skipped under
``on_error: skip``).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from test_aif_cli import WIDTH, write_capture
from tiny import tiny_overrides

from evfocus.config import ConfigError, load_config
from evfocus.data.capture_set import CaptureFailure, CaptureSet
from evfocus.data.captures import CaptureError
from evfocus.metrics import sharpness
from evfocus.training.stages import build_stage

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    """``truth`` (aif/ + depth/), ``plain`` (no ground truth), ``broken`` (an event off the sensor)."""
    root = tmp_path_factory.mktemp("captures")
    write_capture(root, "truth")
    write_capture(root, "plain", truth=False)
    write_capture(root, "broken", truth=False, events=np.array([[10, 3, 2, 1], [20, WIDTH, 1, 0]]))
    for folder in ("aif", "depth"):  # write_capture(truth=False) leaves the folders; only 'truth' has files
        assert sorted(path.stem for path in (root / folder).iterdir()) == ["truth"]
    return root


def trainer_and_stage(tmp_path: Path, *overrides: str) -> tuple[L.Trainer, L.LightningModule, L.LightningDataModule]:
    cfg = load_config(ROOT / "configs/quickstart.yaml",
                      tiny_overrides(tmp_path, "logging.wandb.enabled=false", "pipeline.search.grid_size=2",
                                     "pipeline.max_slices=2", *overrides))
    trainer = L.Trainer(default_root_dir=str(tmp_path / "run"), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    return trainer, *build_stage(cfg)


@pytest.mark.slow  # the simulated test sweeps and references run too: ~40 s of CPU
def test_captures_in_the_test_loader(captures, tmp_path):
    trainer, module, datamodule = trainer_and_stage(
        tmp_path, f"data.captures.root=[{captures}]", "data.captures.on_error=skip")
    with pytest.warns(UserWarning, match="skipped capture 'broken'"):
        trainer.test(module, datamodule=datamodule)
    summary = module.capture_summary
    assert (summary["num_captures"], summary["num_with_ground_truth"]) == (2, 1)
    assert [skip["name"] for skip in summary["skipped"]] == ["broken"]
    assert "'x' spans [3, 56]" in summary["skipped"][0]["error"]
    # the capture with ground truth has the simulated test's figures, under test/captures/truth/...
    assert set(summary["truth"]) == set(module.aif_summary) and summary["truth"]["num_sweeps"] == 1
    assert np.isfinite(summary["truth"]["aif"]["pipeline"]["psnr"])
    logged = trainer.callback_metrics
    assert "test/captures/truth/aif/pipeline/psnr" in logged and "test/aif/pipeline/psnr" in logged
    assert "test/captures/sharpness/pipeline/gradient_energy" in logged
    for name in ("truth", "plain"):
        folder = tmp_path / "run" / "captures" / name
        assert {"aif.png", "depth.npy", "depth.png", "weights.png", "sharpness.json"} <= {p.name for p in
                                                                                          folder.iterdir()}
        record = json.loads((folder / "sharpness.json").read_text())
        assert record["ground_truth"] == (name == "truth") and record["sharpness"]["input"]["gradient_energy"] > 0
    assert not (tmp_path / "run" / "captures" / "broken").exists()


def test_captures_in_the_predict_loader(captures, tmp_path):
    one_file = captures / "blurry" / "plain.png"
    trainer, module, datamodule = trainer_and_stage(tmp_path, f"data.captures.root=[{one_file}]")
    records = trainer.predict(module, datamodule=datamodule)
    assert [record["name"] for record in records] == ["plain"]
    summary = json.loads((tmp_path / "run" / "captures" / "summary.json").read_text())
    assert summary["num_captures"] == 1 and summary["truth"] is None and summary["skipped"] == []


def test_capture_set_stops_or_skips(captures, tmp_path):
    stop = CaptureSet([str(captures)])
    assert [entry.name for entry in stop.items] == ["broken", "plain", "truth"]
    with pytest.raises(CaptureError, match=r"broken\.npy"):
        stop[0]
    skip = CaptureSet([str(captures), str(tmp_path / "nowhere"), str(captures / "events" / "plain.npy")], "skip")
    assert isinstance(skip[0], CaptureFailure) and skip[1].name == "plain" and skip[4].name == "plain"
    assert skip[3] == CaptureFailure("nowhere", str(tmp_path / "nowhere"),
                                     f"data.captures.root: {tmp_path / 'nowhere'}: no such file or folder")
    with pytest.raises(CaptureError, match="nowhere: no such file or folder"):
        CaptureSet([str(tmp_path / "nowhere")])
    with pytest.raises(ConfigError, match=r"data\.captures\.event_format: 'mp4'"):
        CaptureSet([str(captures)], event_format="mp4")


@pytest.mark.parametrize(("override", "message"), [
    ("data.captures.roots=[a]", "data.captures.roots"),
    ("data.captures.on_error=ignore", "data.captures.on_error: 'ignore' is not one of ['stop', 'skip']"),
    ("data.source=disk", "data.source: 'disk' is not one of"),
    ("data.shards.url=x", "data.shards.url"),
    ("data.source=shards", "data.source=shards needs data.shards.dir"),
])
def test_captures_and_shards_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, [override])


def test_sharpness_rises_with_detail():
    flat = torch.full((3, 32, 32), 0.5)
    checker = (torch.arange(32)[:, None] + torch.arange(32)).remainder(2).float().expand(3, -1, -1)
    assert sharpness(flat) == {"gradient_energy": 0.0, "laplacian_variance": 0.0}
    assert sharpness(checker)["laplacian_variance"] > 1
