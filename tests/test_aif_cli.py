"""src/aif.py end to end: captures and simulated sweeps in, AIF/depth/refocus files out; bad input fails cleanly.

The checkpoints come from two tiny real training runs (refocus, then merge on top of it), built once
per module. One subprocess runs the CLI on a capture folder and a simulated sweep; the other cases
call ``main`` in-process (the code ``__main__`` runs), since each subprocess pays ~5-20 s of imports.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from tiny import tiny_overrides

from evfocus.config import load_config
from evfocus.inference import run as inference_run
from evfocus.training.run import train

ROOT = Path(__file__).parents[1]
AIF = ROOT / "src" / "aif.py"
HEIGHT, WIDTH, SWEEP_US = 40, 56, 100_000
REPORT_KEYS = {
    "name", "source", "image_size", "events", "sweep", "image_time_us", "slice_times_us", "slice_focus_m",
    "patch_grid", "patch_focus_times_us", "low_event_patches", "seconds", "num_refocus_calls", "checkpoint",
    "pipeline", "refocus_gif", "metrics",
}
OUTPUT_FILES = ("aif.png", "depth.png", "depth.npy", "weights.png", "refocus.gif", "report.json")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """{"refocus": its best .ckpt file, "merge": the merge run *folder*} from two tiny training runs."""
    tmp = tmp_path_factory.mktemp("aif_runs")
    overrides = tiny_overrides(tmp, "logging.wandb.enabled=false", "trainer.max_epochs=1")
    _, refocus = train(load_config(ROOT / "configs/quickstart.yaml", [*overrides, "run_name=refocus"]))
    _, merge = train(load_config(ROOT / "configs/merge.yaml",
                                 [*overrides, "run_name=merge", f"stack.refocus_ckpt={refocus['run_dir']}"]))
    best = sorted((refocus["run_dir"] / "checkpoints").glob("*.ckpt"))[0]
    return {"refocus": best, "merge": merge["run_dir"]}


def write_capture(root: Path, name: str, *, events: np.ndarray | None = None, truth: bool = True) -> None:
    """One capture in the reference layout (+ meta, + optional ground truth), like the efs_dev samples."""
    generator = np.random.default_rng(0)
    for folder in ("blurry", "events", "meta", "aif", "depth"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.stack([rows * 5, cols * 4, (rows + cols) * 2], axis=-1) % 256
    iio.imwrite(root / "blurry" / f"{name}.png", image.astype(np.uint8))
    if events is None:
        count = 3000
        events = np.stack([np.sort(generator.integers(0, SWEEP_US + 1, count)), generator.integers(0, WIDTH, count),
                           generator.integers(0, HEIGHT, count), generator.integers(0, 2, count)], axis=1)
    np.save(root / "events" / f"{name}.npy", events.astype(np.int64))
    meta = {"width": WIDTH, "height": HEIGHT, "sweep_start_us": 0, "sweep_end_us": SWEEP_US, "focus_start_m": 0.3,
            "focus_end_m": 5.0, "focus_schedule": "linear_in_diopters", "image_time_us": 0}
    (root / "meta" / f"{name}.json").write_text(json.dumps(meta))
    if truth:
        iio.imwrite(root / "aif" / f"{name}.png", np.roll(image, 1, axis=0).astype(np.uint8))
        np.save(root / "depth" / f"{name}.npy", np.linspace(0.4, 4.0, HEIGHT * WIDTH, dtype=np.float32)
                .reshape(HEIGHT, WIDTH))


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(AIF), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=240)


def load_aif_module():
    spec = importlib.util.spec_from_file_location("aif_cli", AIF)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def check_outputs(folder: Path, height: int, width: int, frames: int) -> dict:
    for file in OUTPUT_FILES:
        assert (folder / file).is_file(), f"{folder / file} missing"
    depth = np.load(folder / "depth.npy")
    assert depth.shape == (height, width) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth > 0).all()
    confidence = np.load(folder / "depth_confidence.npy")
    assert confidence.shape == (height, width) and confidence.min() >= 0 and confidence.max() <= 1
    assert iio.imread(folder / "aif.png").shape == (height, width, 3)
    assert iio.imread(folder / "depth.png").shape == (height, width, 3)
    assert iio.imread(folder / "weights.png").shape == (height, width, 3)
    assert iio.imread(folder / "refocus.gif", index=None).shape[0] == frames
    report = json.loads((folder / "report.json").read_text())
    assert set(report) >= REPORT_KEYS
    assert report["image_size"] == {"height": height, "width": width, "channels": 3}
    grid = report["patch_grid"]["grid_size"]
    assert np.array(report["patch_focus_times_us"]).shape == (grid, grid)
    assert np.array(report["low_event_patches"]).shape == (grid, grid)
    slice_times = report["slice_times_us"]
    assert slice_times == sorted(slice_times) and report["sweep"]["t_start_us"] <= slice_times[0]
    assert report["refocus_gif"]["frames"] == frames
    assert report["seconds"]["total"] > 0 and report["num_refocus_calls"] >= 1
    return report


def test_capture_folder_and_sim_with_merge_run(runs, tmp_path):
    write_capture(tmp_path / "captures", "scene")
    out = tmp_path / "out"
    result = run_cli(["--ckpt", runs["merge"], "--input", tmp_path / "captures", "sim:1", "--out", out,
                      "--frames", 5, "--device", "cpu"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and f"wrote 2 sweep(s) to {out}" in result.stdout

    report = check_outputs(out / "scene", HEIGHT, WIDTH, frames=5)
    assert report["checkpoint"]["stage"] == "merge" and report["checkpoint"]["merge"] == "EvMergeNet"
    assert Path(report["checkpoint"]["path"]).parent == runs["merge"] / "checkpoints"
    assert report["source"]["kind"] == "capture"
    assert report["source"]["files"]["events"] == str(tmp_path / "captures" / "events" / "scene.npy")
    assert report["events"]["count"] == 3000 and report["events"]["response"] == "gamma"  # the meta's default
    assert report["sweep"]["t_end_us"] == SWEEP_US
    assert report["pipeline"]["search"]["grid_size"] == 4
    assert report["pipeline"]["search_probe"] == "integration" and report["search_contrast"] > 0  # the default
    assert report["pipeline"]["contrast_estimator"] == "blur_fit"
    assert report["pipeline"]["anchor_sigma_px"] == pytest.approx(0.05 * max(HEIGHT, WIDTH))
    assert report["pipeline"]["recolour"] is True and report["pipeline"]["focus_sharpness"] == 32
    assert report["pipeline"]["merge_scale"] == 2  # the default
    metrics = report["metrics"]
    for label in ("aif", "input"):
        assert set(metrics[label]) == {"psnr", "ssim"} and np.isfinite(metrics[label]["psnr"])
    assert set(metrics["depth"]) == {"abs_rel", "rmse_m", "rmse_diopter", "abs_rel_confident", "confident_fraction"}
    assert 0 <= metrics["depth"]["confident_fraction"] <= 1

    report = check_outputs(out / "sim-test-1", 48, 48, frames=5)  # the checkpoint's own sim size
    assert report["source"]["kind"] == "sim" and report["source"]["seed"] == 1
    assert report["metrics"]["aif"]["psnr"] > 0 and "depth" in report["metrics"]


def test_refocus_checkpoint_file_on_a_resized_tiled_sim(runs, tmp_path, capsys):
    out = tmp_path / "out"
    aif = load_aif_module()
    assert aif.main(["--ckpt", str(runs["refocus"]), "--input", "sim:2", "--out", str(out), "--frames", "4",
                     "--sim-size", "40x72", "--tile", "40", "--grid", "2", "--max-slices", "3",
                     "--search-probe", "net", "--contrast-estimator", "kink", "--anchor-sigma", "0",
                     "--no-recolour", "--focus-sharpness", "0", "--merge-scale", "1", "--device", "cpu"]) == 0
    report = check_outputs(out / "sim-test-2", 40, 72, frames=4)
    assert report["checkpoint"]["stage"] == "refocus" and report["checkpoint"]["merge"] == "sobel_energy"
    assert "no merge net" in report["checkpoint"]["note"] and "merge sobel_energy" in capsys.readouterr().err
    assert report["pipeline"]["tile_px"] == 40 and report["patch_grid"]["grid_size"] == 2
    assert len(report["slice_times_us"]) <= 3
    assert report["pipeline"]["search_probe"] == "net" and report["search_contrast"] is None
    assert report["pipeline"]["contrast_estimator"] == "kink" and report["pipeline"]["anchor_sigma_px"] is None
    assert report["pipeline"]["recolour"] is False and report["pipeline"]["focus_sharpness"] == 0
    assert report["pipeline"]["merge_scale"] == 1


def test_bad_inputs_name_the_problem(runs, tmp_path, capsys):
    aif = load_aif_module()
    captures = tmp_path / "captures"
    write_capture(captures, "scene", truth=False)
    (tmp_path / "not_a_ckpt.ckpt").write_text("hello")
    torch.save({"weights": 1}, tmp_path / "foreign.ckpt")
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "no_captures" / "blurry").mkdir(parents=True)
    (tmp_path / "no_captures" / "events").mkdir(parents=True)
    (tmp_path / "plain").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    out = ["--out", str(tmp_path / "out")]
    merge, inputs = ["--ckpt", str(runs["merge"])], ["--input", str(captures)]
    cases = [
        (["--ckpt", str(tmp_path / "missing.ckpt"), *inputs], "missing.ckpt does not exist"),
        (["--ckpt", str(tmp_path / "not_a_ckpt.ckpt"), *inputs], "not a readable checkpoint"),
        (["--ckpt", str(tmp_path / "foreign.ckpt"), *inputs], "not an evfocus checkpoint"),
        (["--ckpt", str(tmp_path / "empty_run"), *inputs], "holds no checkpoint"),
        ([*merge, "--input", str(tmp_path / "nowhere")], "nowhere: no such file or folder"),
        ([*merge, "--input", str(tmp_path / "no_captures")], "no_captures: no captures"),
        ([*merge, "--input", str(tmp_path / "plain")], "not a capture folder"),
        ([*merge, "--input", str(tmp_path / "notes.txt")], "notes.txt: not a capture folder or a capture file"),
        ([*merge, *inputs, "--name", "scene", "--name", "nope"], "no capture named nope in the folder input(s)"),
        ([*merge, "--input", str(captures / "blurry" / "other.png")], "no such file or folder"),
        ([*merge, "--input", "sim:1-x"], "expected seeds like sim:1"),
        ([*merge, "--input", "sim:3-1"], "range 3-1 runs backwards"),
        ([*merge, *inputs, "--sim-size", "40x40"], "--sim-size applies to sim: inputs"),
        ([*merge, *inputs, "--frames", "-1"], "--frames must be in 0.."),
        ([*merge, *inputs, "--tile", "20"], "--tile must exceed"),
        ([*merge, *inputs, "--anchor-sigma", "-0.1"], "--anchor-sigma must be a fraction >= 0"),
        ([*merge, *inputs, "--focus-sharpness", "-1"], "--focus-sharpness must be >= 0"),
        ([*merge, *inputs, "--merge-scale", "0"], "--merge-scale must be >= 1"),
        ([*merge, *inputs, "--event-contrast", "0"], "--event-contrast must be a positive log step per event"),
        ([*merge, *inputs, "--event-contrast", "nan"], "--event-contrast must be a positive log step per event"),
        ([*merge, *inputs, "--out", str(tmp_path / "notes.txt")], "exists and is not a folder"),
        ([*merge, "--input", str(captures / "blurry" / "scene.png"), "--grid", "50"], "50x50 search grid does not fit"),
        ([*merge, *inputs, "sim:1", "sim:1"], "both named 'sim-test-1'"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            aif.main([*out, *args])  # a case's own --out comes last and wins
        stderr = capsys.readouterr().err
        assert exit_info.value.code == 2, (args, stderr)
        assert message in stderr, (args, stderr)

    bad_x = np.array([[10, 3, 2, 1], [20, WIDTH, 1, 0]])  # x = WIDTH is off the sensor
    write_capture(tmp_path / "bad_x", "scene", events=bad_x)
    late = np.array([[10, 3, 2, 1], [SWEEP_US + 5, 1, 1, 0]])  # after the sweep's end
    write_capture(tmp_path / "late", "scene", events=late)
    for root, message in ((tmp_path / "bad_x", "'x' spans [3, 56]"), (tmp_path / "late", "outside the sweep")):
        with pytest.raises(SystemExit) as exit_info:
            aif.main([*merge, "--input", str(root), *out])
        stderr = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in stderr, stderr
        assert str(root / "events" / "scene.npy") in stderr, stderr


def test_bad_numbers_in_meta_stop_before_anything_is_written(runs, tmp_path, capsys):
    aif = load_aif_module()
    for key in ("sweep_end_us", "focus_start_m", "focus_end_m", "image_time_us"):
        captures = tmp_path / key
        write_capture(captures, "scene", truth=False)
        meta_path = captures / "meta" / "scene.json"
        meta = json.loads(meta_path.read_text())
        meta_path.write_text(json.dumps({**meta, key: float("nan")}))  # Python's JSON reader accepts NaN
        with pytest.raises(SystemExit) as exit_info:
            aif.main(["--ckpt", str(runs["refocus"]), "--input", str(captures), "--out", str(tmp_path / "out")])
        stderr = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"{meta_path}: '{key}' must be" in stderr, stderr
        assert not (tmp_path / "out" / "scene").exists()


def test_a_failed_sweep_leaves_no_folder_and_keeps_the_earlier_output(runs, tmp_path, monkeypatch):
    aif = load_aif_module()
    out = tmp_path / "out"
    args = ["--ckpt", str(runs["refocus"]), "--input", "sim:1", "sim:2", "--out", str(out), "--frames", "2",
            "--device", "cpu"]
    assert aif.main(args) == 0
    for path in (out / "sim-test-2").iterdir():  # marks the earlier output: rewriting any file would show
        path.write_bytes(b"earlier " + path.name.encode())
    earlier = {path.name: path.read_bytes() for path in (out / "sim-test-2").iterdir()}
    (out / "sim-test-1").rename(out / "kept")  # sim-test-1 will be new, sim-test-2 has an earlier output
    real_write_images = inference_run.write_images

    def write_then_fail(folder: Path, sweep, result) -> None:
        real_write_images(folder, sweep, result)  # aif.png, depth.* and weights.png are on disk
        if sweep.name == "sim-test-2":
            raise OSError("disk full")

    monkeypatch.setattr(inference_run, "write_images", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        aif.main(args)
    assert sorted(path.name for path in out.iterdir()) == ["kept", "sim-test-1", "sim-test-2"]  # no partial folder
    check_outputs(out / "sim-test-1", 48, 48, frames=2)  # the sweep before the failure is complete
    assert {path.name: path.read_bytes() for path in (out / "sim-test-2").iterdir()} == earlier


def test_a_given_event_contrast_reaches_the_net_the_probes_and_the_report(runs, tmp_path, capsys):
    """The refocus run (model.contrast=prior, as the shipped model) takes it; the merge run's net, built with one
    global event gain (configs/merge.yaml's model section), would ignore it, so the CLI refuses."""
    write_capture(tmp_path / "captures", "scene")
    aif = load_aif_module()
    common = ["--input", str(tmp_path / "captures"), "--frames", "0", "--device", "cpu"]
    per_sweep = ["--ckpt", str(runs["refocus"]), *common]
    assert aif.main([*per_sweep, "--out", str(tmp_path / "given"), "--event-contrast", "0.123"]) == 0
    given = json.loads((tmp_path / "given" / "scene" / "report.json").read_text())
    assert given["pipeline"]["event_contrast"] == 0.123 and given["pipeline"]["search_probe"] == "integration"
    assert given["contrast"] == pytest.approx(0.123) and given["search_contrast"] == pytest.approx(0.123)
    assert aif.main([*per_sweep, "--out", str(tmp_path / "estimated")]) == 0
    estimated = json.loads((tmp_path / "estimated" / "scene" / "report.json").read_text())
    assert estimated["pipeline"]["event_contrast"] is None and estimated["contrast"] != pytest.approx(0.123)

    with pytest.raises(SystemExit) as exit_info:
        aif.main(["--ckpt", str(runs["merge"]), *common, "--out", str(tmp_path / "fixed"), "--event-contrast", "0.1"])
    assert exit_info.value.code == 2
    assert "has one global event gain, not a per-sweep contrast" in capsys.readouterr().err
    assert not (tmp_path / "fixed").exists()


def test_a_weights_file_loads_like_its_checkpoint_and_runs_the_cli(runs, tmp_path):
    from evfocus.checkpoints import load_nets, load_stage_checkpoint

    export = ROOT / "src" / "export_weights.py"
    weights = tmp_path / "model.pt"
    done = subprocess.run([sys.executable, str(export), str(runs["merge"]), str(weights)], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    checkpoint = load_stage_checkpoint(runs["merge"])
    shipped = load_stage_checkpoint(weights)
    assert shipped.stage == "merge" and shipped.cfg == checkpoint.cfg
    assert weights.stat().st_size < checkpoint.path.stat().st_size / 2  # fp16 nets, no optimizer state
    for original, loaded in zip(load_nets(checkpoint), load_nets(shipped), strict=True):
        for (name, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items(), strict=True):
            assert b.dtype == a.dtype and torch.allclose(a, b, rtol=1e-3, atol=1e-4), name
    write_capture(tmp_path / "captures", "scene")
    aif = load_aif_module()
    assert aif.main(["--ckpt", str(weights), "--input", str(tmp_path / "captures"), "--out", str(tmp_path / "out"),
                     "--frames", "2", "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "out" / "scene" / "report.json").read_text())["checkpoint"]["stage"] == "merge"


def test_a_weights_file_carries_pipeline_settings_chosen_after_training(runs, tmp_path):
    """``export_weights.py RUN OUT --pipeline KEY=VALUE ...``: the settings in the file's config, checked like any."""
    from evfocus.checkpoints import CheckpointError, load_stage_checkpoint, with_pipeline_settings

    weights = tmp_path / "tuned.pt"
    done = subprocess.run([sys.executable, str(ROOT / "src" / "export_weights.py"), str(runs["merge"]), str(weights),
                           "--pipeline", "given_contrast_gain=1.3", "search.grid_size=6"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    exported, merge = load_stage_checkpoint(weights), load_stage_checkpoint(runs["merge"])
    assert exported.cfg.pipeline.given_contrast_gain == 1.3 and exported.cfg.pipeline.search.grid_size == 6
    assert merge.cfg.pipeline.given_contrast_gain == 1.0
    exported.cfg.pipeline.given_contrast_gain = 1.0
    exported.cfg.pipeline.search.grid_size = merge.cfg.pipeline.search.grid_size
    assert exported.cfg == merge.cfg  # nothing else changed
    for bad, message in (("nonsense=1", "nonsense"), ("given_contrast_gain=0", "must be a positive number"),
                         ("given_contrast_gain", "expected KEY=VALUE")):
        with pytest.raises(CheckpointError, match=message):
            with_pipeline_settings(merge, [bad])
    refused = subprocess.run([sys.executable, str(ROOT / "src" / "export_weights.py"), str(runs["merge"]),
                              str(tmp_path / "refused.pt"), "--pipeline", "focus_sharpness=-1"],
                             capture_output=True, text=True, timeout=240)
    assert refused.returncode == 2 and "focus_sharpness" in refused.stderr and not (tmp_path / "refused.pt").exists()


def test_a_weights_file_pairs_another_runs_refocus_net_with_the_merge_net(runs, tmp_path):
    """``export_weights.py MERGE OUT --refocus RUN``: RUN's refocus net and model config, MERGE's merge net."""
    from dataclasses import replace

    from evfocus.checkpoints import CheckpointError, load_stage_checkpoint, with_refocus_net

    content = torch.load(runs["refocus"], weights_only=True)  # a "fine-tuned" refocus run: other weights
    content["state_dict"] = {k: v + 0.01 if k.startswith("refocus_net.") and v.is_floating_point() else v
                             for k, v in content["state_dict"].items()}
    content["hyper_parameters"]["cfg"]["model"]["event_gain_init"] = 0.5
    tuned = tmp_path / "tuned.ckpt"
    torch.save(content, tuned)
    weights = tmp_path / "paired.pt"
    done = subprocess.run([sys.executable, str(ROOT / "src" / "export_weights.py"), str(runs["merge"]), str(weights),
                           "--refocus", str(tuned), "--fp32"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    paired, merge = load_stage_checkpoint(weights), load_stage_checkpoint(runs["merge"])
    assert paired.stage == "merge" and paired.cfg.model.event_gain_init == 0.5
    assert paired.cfg.merge_model == merge.cfg.merge_model
    for key, value in paired.state_dict.items():
        source = content["state_dict"] if key.startswith("refocus_net.") else merge.state_dict
        assert torch.equal(value, source[key].float() if value.is_floating_point() else source[key]), key
    with pytest.raises(CheckpointError, match="a refocus net pairs with a merge or joint checkpoint"):
        with_refocus_net(load_stage_checkpoint(tuned), load_stage_checkpoint(tuned))
    other = load_stage_checkpoint(tuned)
    other = replace(other, cfg=other.cfg.copy())
    other.cfg.data.num_bins = other.cfg.data.num_bins + 1
    with pytest.raises(CheckpointError, match=r"data.num_bins=.*but .* was trained with"):
        with_refocus_net(merge, other)


def test_without_ckpt_the_shipped_weights_are_used_or_their_absence_is_named(runs, tmp_path, monkeypatch, capsys):
    from evfocus.checkpoints import load_stage_checkpoint, save_weights

    write_capture(tmp_path / "captures", "scene")
    aif = load_aif_module()
    missing = tmp_path / "weights" / "evfocus-release.pt"
    monkeypatch.setattr(inference_run, "DEFAULT_WEIGHTS", missing)
    with pytest.raises(SystemExit) as stop:
        aif.main(["--input", str(tmp_path / "captures"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert stop.value.code == 2 and "no --ckpt given" in capsys.readouterr().err
    save_weights(load_stage_checkpoint(runs["merge"]), missing)
    assert aif.main(["--input", str(tmp_path / "captures"), "--out", str(tmp_path / "out"), "--frames", "2",
                     "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "out" / "scene" / "report.json").read_text())["checkpoint"]["path"] == str(missing)
