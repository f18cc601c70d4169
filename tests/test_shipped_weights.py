"""The shipped weights load safely and still score what their model card says on efs_dev.

The card's numbers come from ``benchmarks/score_sweeps.py --json weights/evfocus-release.scores.json``;
this test recomputes the efs_dev AIF gains and depth errors with the pipeline directly, so a change anywhere
between the weights file and the metric (loading, contrast estimate, search, merge, depth) that moves them
fails here.
"""

from __future__ import annotations

import json

import pytest
import torch
from samples import shared_samples

from evfocus.checkpoints import DEFAULT_WEIGHTS, WEIGHTS_FORMAT, load_depth_head, load_nets, load_stage_checkpoint
from evfocus.data.captures import list_captures, read_capture
from evfocus.image_scores import image_quality
from evfocus.pipeline.aif import AIFPipeline
from evfocus.pipeline.depth import depth_scores
from evfocus.pipeline.settings import pipeline_config

SCORES = DEFAULT_WEIGHTS.with_suffix(".scores.json")
EFS_DEV = shared_samples() / "efs_dev"


def test_the_shipped_file_is_small_weights_only_and_carries_a_valid_config():
    assert DEFAULT_WEIGHTS.stat().st_size <= 10 * 2**20
    saved = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    assert saved["format"] == WEIGHTS_FORMAT
    assert set(saved) == {"format", "version", "stage", "cfg", "state_dict"}  # no optimizer or loop state
    checkpoint = load_stage_checkpoint(DEFAULT_WEIGHTS)
    refocus, merge = load_nets(checkpoint)
    assert merge is not None and all(p.dtype == torch.float32 for p in refocus.parameters())
    assert refocus.response_aware and checkpoint.cfg.model.event_response_aware  # each sensor in its own log
    assert load_depth_head(checkpoint) is not None  # the learned depth fusion travels with the nets


@pytest.mark.skipif(not EFS_DEV.is_dir(), reason=f"development sweeps not found at {EFS_DEV}")
def test_the_shipped_weights_reproduce_their_model_card_on_efs_dev():
    card = json.loads(SCORES.read_text())["per_sweep"]
    card_folder = next(value for key, value in card.items() if key.rstrip("/").endswith("/efs_dev"))
    checkpoint = load_stage_checkpoint(DEFAULT_WEIGHTS)
    refocus, merge = load_nets(checkpoint)
    depth_head = load_depth_head(checkpoint)
    torch.set_num_threads(2)
    names = list_captures(EFS_DEV)
    assert sorted(names) == sorted(card_folder)
    for name in names:
        sweep = read_capture(EFS_DEV, name)
        result = AIFPipeline(refocus, merge, pipeline_config(checkpoint.cfg, sweep), depth_head)(sweep, "cpu")
        gain_db = image_quality(result.aif, sweep.aif)["psnr"] - image_quality(sweep.image, sweep.aif)["psnr"]
        assert gain_db == pytest.approx(card_folder[name]["pipeline"]["aif_gain_db"], abs=0.05), name
        abs_rel = depth_scores(result.depth_m, result.depth_confidence, sweep.depth_m)["abs_rel"]
        assert abs_rel == pytest.approx(card_folder[name]["pipeline"]["depth_abs_rel"], abs=0.005), name
