"""A sweep's output folder: written whole or not at all, with the images and arrays of its result."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from evfocus.inference.sweep_source import InputError
from evfocus.pipeline.aif import AIFResult
from evfocus.pipeline.depth import normalised_diopter
from evfocus.sweep import Sweep
from evfocus.visualize import colour_map, to_uint8


@contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A hidden sibling folder to write into, renamed to ``final`` only when the block succeeds.

    A failure anywhere in the block leaves no folder behind, and an earlier output of the same name
    untouched; success replaces that earlier output, which is deleted only once the new one is in place.
    """
    if final.exists() and not final.is_dir():
        raise InputError(f"{final}: exists and is not a folder; it cannot hold this sweep's outputs")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    earlier = final.with_name(f".{final.name}.earlier-{uuid.uuid4().hex[:8]}")
    if final.exists():
        final.rename(earlier)
    staging.rename(final)
    shutil.rmtree(earlier, ignore_errors=True)


def write_images(folder: Path, sweep: Sweep, result: AIFResult) -> None:
    """aif.png, depth.png + depth.npy (metres), depth_confidence.npy and weights.png (heaviest slice per pixel)."""
    iio.imwrite(folder / "aif.png", to_uint8(result.aif))
    depth = result.depth_m.float().cpu()
    iio.imwrite(folder / "depth.png", to_uint8(colour_map(normalised_diopter(depth, sweep.schedule), "turbo")))
    np.save(folder / "depth.npy", depth[0].numpy().astype(np.float32))
    np.save(folder / "depth_confidence.npy", result.depth_confidence[0].float().cpu().numpy())
    slices = result.slice_index.float().cpu() / max(1, len(result.slice_times_us) - 1)
    iio.imwrite(folder / "weights.png", to_uint8(colour_map(slices[None], "viridis")))
