"""Opening event HDF5 files (E2VID, DSEC, Prophesee layouts) with every h5py failure turned into a named error.

Importing this module registers hdf5plugin's filters (Blosc, Zstd, LZ4, Bitshuffle, ...) with h5py, so
compressed datasets such as DSEC's Blosc chunks read like plain ones. Prophesee's ECF codec is not among
them (``events.formats.prophesee`` says so when a file needs it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters with h5py on import)
import numpy as np

from evfocus.events.checks import EventFileError, library_errors, require_file

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@contextmanager
def open_h5(path: Path) -> Iterator[h5py.File]:
    """``h5py.File(path, "r")``; whatever h5py raises inside (OSError, KeyError, TypeError, ... for damaged files
    and chunks) becomes an ``EventFileError`` naming the file."""
    require_file(path)
    with library_errors(path, "not a readable HDF5 file"), h5py.File(path, "r") as file:
        yield file


def h5_columns(file: h5py.File, keys: Sequence[str], path: Path) -> dict[str, np.ndarray]:
    """The 1-D datasets ``keys``, read whole; all must exist and have one length."""
    columns = {}
    for key in keys:
        dataset = file.get(key)
        if not isinstance(dataset, h5py.Dataset):
            raise EventFileError(f"{path}: missing dataset '{key}' (expected {', '.join(keys)})")
        if dataset.ndim != 1:
            raise EventFileError(f"{path}: dataset '{key}' must be 1-D, got shape {dataset.shape}")
        columns[key] = dataset[()]
    lengths = {key: len(values) for key, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise EventFileError(f"{path}: datasets differ in length: "
                             + ", ".join(f"'{key}' has {n}" for key, n in lengths.items()))
    return columns
