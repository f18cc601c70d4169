"""Real captures as a dataset for the DataModule's test and predict loaders (``data.captures``).

``data.captures.root`` lists capture folders (every capture in each) and capture files
(``ROOT/blurry/<name>.png``, ``ROOT/events/<name>.<ext>``: that one capture of ROOT). Captures are read one at
a time, when the loader asks, so only one sweep's events sit in memory.

A bad capture (a missing or broken file, a meta key out of range, events off the sensor, …: every evfocus
input error is a ``ValueError``) stops the evaluation with its error under ``on_error: stop``, the default.
Under ``on_error: skip`` it becomes a ``CaptureFailure`` item instead, which the test or predict step reports
and skips, so the other captures are still evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from evfocus.config import ConfigError
from evfocus.data.captures import CaptureError, list_captures, read_capture
from evfocus.events.formats import FORMATS
from evfocus.sweep import Sweep

CAPTURE_SUBFOLDERS = ("blurry", "events", "meta", "aif", "depth")


@dataclass(frozen=True)
class CaptureFailure:
    """A capture that could not be read (or listed): its name, where it is, and the error's message."""

    name: str
    where: str
    error: str


@dataclass(frozen=True)
class CaptureEntry:
    root: Path
    name: str


def capture_of_file(path: Path) -> CaptureEntry:
    """``ROOT/<blurry|events|meta|aif|depth>/<name>.*`` → that capture of ROOT, or a ``CaptureError``."""
    if path.parent.name not in CAPTURE_SUBFOLDERS:
        raise CaptureError(f"{path}: not a capture folder or a capture file (expected ROOT, ROOT/blurry/<name>.png "
                           "or ROOT/events/<name>.<ext>)")
    root, name = path.parent.parent, path.stem
    if name not in list_captures(root):
        raise CaptureError(f"{path}: {root} has no capture '{name}' (needs blurry/{name}.png and events/{name}.<ext>)")
    return CaptureEntry(root, name)


def _entries(text: str) -> list[CaptureEntry]:
    path = Path(text)
    if not path.exists():
        raise CaptureError(f"data.captures.root: {path}: no such file or folder")
    if path.is_file():
        return [capture_of_file(path)]
    names = list_captures(path)
    if not names:
        raise CaptureError(f"data.captures.root: {path}: no captures (no blurry/<name>.png with a matching "
                           "events/<name>.<ext>)")
    return [CaptureEntry(path, name) for name in names]


class CaptureSet(Dataset):
    """The captures of ``roots``; an item is a ``Sweep``, or a ``CaptureFailure`` under ``on_error="skip"``."""

    def __init__(self, roots: list[str], on_error: str = "stop", event_format: str | None = None) -> None:
        if event_format is not None and event_format not in FORMATS:
            raise ConfigError(f"data.captures.event_format: '{event_format}' is not one of {sorted(FORMATS)}")
        self.on_error = on_error
        self.event_format = event_format
        self.items: list[CaptureEntry | CaptureFailure] = []
        for text in roots:
            try:
                self.items.extend(_entries(text))
            except ValueError as error:
                self.items.append(self._failure(Path(text).stem, text, error))

    def _failure(self, name: str, where: str, error: ValueError) -> CaptureFailure:
        """``error`` raised again under ``on_error="stop"``, else recorded as the item."""
        if self.on_error == "stop":
            raise error
        return CaptureFailure(name, where, " ".join(str(error).split()))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sweep | CaptureFailure:
        item = self.items[index]
        if isinstance(item, CaptureFailure):
            return item
        try:
            return read_capture(item.root, item.name, event_format=self.event_format)
        except ValueError as error:
            return self._failure(item.name, str(item.root), error)
