"""Tiny sizes for training runs in tests: 48×48 sweeps of 16 frames, width-8 nets, a 4×4 search grid."""

from pathlib import Path


def tiny_overrides(tmp_path: Path, *extra: str) -> list[str]:
    """Overrides that make any config train, validate and test in seconds on a CPU; ``extra`` last."""
    return [
        f"runs_dir={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'cache'}",
        "sim.height=48", "sim.width=48", "sim.num_frames=16", "sim.max_blur_radius_px_range=[1.0,3.0]",
        "data.crop_size=32", "data.efs_fine_bins=32", "data.num_bins=4", "data.batch_size=2",
        "data.samples_per_sweep=2", "data.shuffle_buffer=2", "data.num_workers=0",
        "data.train_sweeps_per_epoch=2", "data.val_sweeps=1", "data.test_sweeps=1", "data.eval_pairs_per_sweep=2",
        "model.width=8", "model.depth=2", "merge_model.width=8", "merge_model.depth=2",
        "pipeline.search.grid_size=4", "stack.oracle_grid=2", "optim.warmup_steps=0", "trainer.precision=32",
        "logging.image_every_n_steps=1", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
        *extra,
    ]
