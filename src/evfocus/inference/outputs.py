"""A sweep's output folder: written whole or not at all (its images and arrays: ``visualize.write_images``)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from evfocus.inference.sweep_source import InputError


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
