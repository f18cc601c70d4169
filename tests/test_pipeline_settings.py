"""pipeline.settings: the one place the ``pipeline`` section becomes absolute settings for a sweep."""

import pytest
import torch

from evfocus.config import ConfigError, load_config
from evfocus.events.stream import EventStream
from evfocus.optics import FocusSchedule
from evfocus.pipeline.aif import PipelineConfig
from evfocus.pipeline.search import SearchConfig
from evfocus.pipeline.settings import (
    CPU_CROPS_PER_CALL,
    CPU_TILE_PX,
    GPU_SLICES_PER_BATCH,
    pipeline_config,
    search_config,
)
from evfocus.sweep import Sweep
from evfocus.training.stack_module import crop_search_settings


def sweep(num_events: int = 6_400, duration_us: int = 640_000) -> Sweep:
    t_us = torch.linspace(0, duration_us, num_events).long()
    events = EventStream.from_arrays(t_us, t_us % 40, t_us % 30, torch.ones(num_events), 40, 30)
    return Sweep("s", torch.rand(3, 30, 40), 0, events, FocusSchedule(0, duration_us, 0.3, 5.0))


@pytest.mark.parametrize("domain", ["time", "events"])
def test_tolerances_and_event_floor_scale_with_the_sweep(domain):
    cfg = load_config(None, [f"pipeline.search.domain={domain}", "pipeline.search.grid_size=4",
                             "pipeline.search.min_events_per_px=0.5"])
    config = pipeline_config(cfg, sweep(), "cpu")
    search = config.search
    assert search.tolerance_us == 640_000 / 64  # the search's resolution in time, in both domains
    assert search.tolerance_events == 6_400 / 64 / 16  # tolerance_fraction of the events per patch
    assert search.min_events == round(0.5 * 30 * 40 / 16)
    assert (search.domain, search.grid_size, search.num_bins) == (domain, 4, cfg.data.num_bins)
    assert config.efs_fine_bins == cfg.data.efs_fine_bins


def test_unset_batch_sizes_and_tiles_follow_the_device():
    cfg = load_config(None)
    on_cpu, on_gpu = pipeline_config(cfg, sweep(), "cpu"), pipeline_config(cfg, sweep(), "cuda")
    assert (on_cpu.search.max_crops_per_call, on_cpu.slices_per_batch, on_cpu.tile_px) == (CPU_CROPS_PER_CALL, 1,
                                                                                          CPU_TILE_PX)
    assert (on_gpu.search.max_crops_per_call, on_gpu.slices_per_batch, on_gpu.tile_px) == (None, GPU_SLICES_PER_BATCH,
                                                                                          None)
    set_cfg = load_config(None, ["pipeline.search.max_crops_per_call=3", "pipeline.slices_per_batch=2",
                                 "pipeline.tile_px=64"])
    on_gpu = pipeline_config(set_cfg, sweep(), "cuda")
    assert (on_gpu.search.max_crops_per_call, on_gpu.slices_per_batch, on_gpu.tile_px) == (3, 2, 64)


def test_a_configured_event_contrast_reaches_the_pipeline():
    assert pipeline_config(load_config(None), sweep()).event_contrast is None  # estimated per sweep
    given = load_config(None, ["model.contrast=prior", "pipeline.event_contrast=0.2"])
    assert pipeline_config(given, sweep()).event_contrast == 0.2
    assert pipeline_config(given, sweep()).given_contrast_gain == 1.0
    gained = load_config(None, ["model.contrast=prior", "pipeline.event_contrast=0.2",
                                "pipeline.given_contrast_gain=1.3"])
    assert pipeline_config(gained, sweep()).given_contrast_gain == 1.3


def test_the_joint_stage_searches_its_crops_through_the_same_builder():
    cfg = load_config(None, ["stack.oracle_grid=3", "stack.search_tolerance_fraction=0.125",
                             "pipeline.search.domain=events", "pipeline.search.margin_px=5"])
    search = search_config(crop_search_settings(cfg), 4, 32, 32, 800_000.0, "cpu")
    assert (search.grid_size, search.tolerance_us, search.domain) == (3, 100_000.0, "time")
    assert (search.min_events, search.max_crops_per_call, search.margin_px) == (0, 9, 5)
    assert search.tolerance_events is None  # a crop's event count is unknown, and the time domain needs none


@pytest.mark.parametrize(("flags", "expected"), [("fpu avx512f avx512_bf16 amx_tile", "bf16_stack"),
                                                 ("fpu avx512f amx_bf16", "bf16_stack"),
                                                 ("fpu avx2 avx512f avx512bw", "channels_last")])
def test_auto_runtime_takes_bf16_only_on_a_cpu_with_bf16_instructions(tmp_path, monkeypatch, flags, expected):
    from evfocus.models import runtime

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: runtime._cpu_flags_have_bf16(cpuinfo))
    assert runtime.resolve_runtime("auto", "cpu") == expected
    assert runtime.resolve_runtime("auto", "cuda") == "channels_last"  # bf16 bought nothing on an H200
    assert runtime.resolve_runtime("torch", "cpu") == "torch"  # an explicit choice is kept
    with pytest.raises(ValueError, match="runtime must be one of"):
        runtime.resolve_runtime("fp8", "cpu")


def test_no_cpuinfo_means_no_bf16(tmp_path):
    from evfocus.models.runtime import _cpu_flags_have_bf16

    assert _cpu_flags_have_bf16(tmp_path / "missing") is False


def test_the_anchor_scales_with_the_image_and_bad_values_are_refused():
    assert load_config(None).pipeline.anchor_sigma_fraction == 0.05
    assert pipeline_config(load_config(None), sweep()).anchor_sigma_px == pytest.approx(0.05 * 40)  # 30x40
    off = load_config(None, ["pipeline.anchor_sigma_fraction=null"])
    assert pipeline_config(off, sweep()).anchor_sigma_px is None
    with pytest.raises(ConfigError, match=r"pipeline\.anchor_sigma_fraction: must be positive"):
        load_config(None, ["pipeline.anchor_sigma_fraction=-0.05"])
    with pytest.raises(ValueError, match="anchor_sigma_px must be positive"):
        PipelineConfig(search=SearchConfig(num_bins=4), anchor_sigma_px=0.0)


def test_recolouring_is_on_by_default_and_can_be_turned_off():
    assert load_config(None).pipeline.recolour is True
    assert pipeline_config(load_config(None), sweep()).recolour is True
    assert pipeline_config(load_config(None, ["pipeline.recolour=false"]), sweep()).recolour is False
