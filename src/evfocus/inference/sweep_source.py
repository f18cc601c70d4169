"""The two types every input of ``src/aif.py`` resolves through: a lazily read sweep, and the input error.

They live apart from ``sources`` (which resolves folders, capture files and ``sim:`` seeds) so that
``event_file`` (single event files) can use them while ``sources`` dispatches to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from evfocus.sweep import Sweep


class InputError(ValueError):
    """A command-line input that names nothing usable (missing folder, unknown capture, bad option)."""


@dataclass(frozen=True)
class SweepSource:
    """One sweep to process, read lazily so only one sweep's events sit in memory at a time."""

    name: str
    description: str
    load: Callable[[], Sweep]
