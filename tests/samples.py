"""Where the development sweeps live (``../shared/samples`` beside the checkout): tests that need them skip
without them. ``EVFOCUS_SAMPLES`` overrides the place."""

from __future__ import annotations

import os
from pathlib import Path

CANDIDATES = [Path(__file__).resolve().parents[2] / "shared" / "samples", Path("/work/shared/samples")]


def shared_samples() -> Path:
    """The samples folder (it may not exist: check with ``.is_dir()``)."""
    if "EVFOCUS_SAMPLES" in os.environ:
        return Path(os.environ["EVFOCUS_SAMPLES"])
    return next((path for path in CANDIDATES if path.is_dir()), CANDIDATES[0])
