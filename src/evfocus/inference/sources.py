"""What ``src/aif.py --input`` names → the sweeps to process, each read only when its turn comes.

An input is a capture folder (every capture in it, or the ``--name`` ones), one capture's file
(``ROOT/blurry/<name>.png``, ``ROOT/events/<name>.<ext>``, …), one event file of any format with its frame
(``--image``) and meta (``event_file``), or ``sim:SEEDS`` (``sim:1``, ``sim:0-3``, ``sim:1,5,7``):
test-split sweeps of the checkpoint's own simulator, optionally at another size.
Everything is checked up front, before any sweep is read.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from evfocus.data.capture_set import capture_of_file
from evfocus.data.captures import CaptureError, list_captures, read_capture
from evfocus.inference.event_file import CaptureOptions, event_file_source
from evfocus.inference.sweep_source import InputError, SweepSource
from evfocus.sim.simulator import SweepSimulator

SIM_PATTERN = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_seeds(spec: str) -> list[int]:
    """``1`` / ``0-3`` / ``1,5,7-9`` → seeds in the order given, duplicates dropped."""
    if not SIM_PATTERN.fullmatch(spec):
        raise InputError(f"--input sim:{spec}: expected seeds like sim:1, sim:0-3 or sim:1,5,7")
    seeds: list[int] = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise InputError(f"--input sim:{spec}: range {part} runs backwards")
        seeds.extend(seed for seed in range(first, last + 1) if seed not in seeds)
    return seeds


def sim_sources(spec: str, cfg: DictConfig, size: tuple[int, int] | None) -> list[SweepSource]:
    """Test-split sweeps of the checkpoint's simulator: the sweeps its own test step scored."""
    sim_cfg = OmegaConf.create(OmegaConf.to_container(cfg.sim, resolve=True))
    if size is not None:
        sim_cfg.height, sim_cfg.width = size
    simulator = SweepSimulator(sim_cfg, "test")
    where = f"sim {sim_cfg.height}x{sim_cfg.width}"
    return [SweepSource(f"sim-test-{seed}", f"{where} seed {seed}", lambda seed=seed: simulator.simulate(seed))
            for seed in parse_seeds(spec)]


def capture_source(root: Path, name: str, event_format: str | None) -> SweepSource:
    return SweepSource(name, str(root / "blurry" / f"{name}.png"),
                       lambda: read_capture(root, name, event_format=event_format))


def folder_sources(root: Path, names: list[str] | None, event_format: str | None
                   ) -> tuple[list[SweepSource], list[str]]:
    """A reference-layout folder's captures (all, or those among ``names``) and every name it holds."""
    available = list_captures(root)
    if not available:
        raise InputError(f"{root}: no captures (no blurry/<name>.png with a matching events/<name>.<ext>)")
    chosen = available if names is None else [name for name in names if name in available]
    return [capture_source(root, name, event_format) for name in chosen], available


def file_source(path: Path, event_format: str | None) -> SweepSource:
    """``ROOT/<blurry|events|meta|aif|depth>/<name>.*`` → that capture of ROOT."""
    try:
        entry = capture_of_file(path)
    except CaptureError as error:
        raise InputError(f"{error}; an event file elsewhere needs --image FRAME; or sim:SEEDS") from None
    return capture_source(entry.root, entry.name, event_format)


def resolve_inputs(inputs: list[str], names: list[str] | None, cfg: DictConfig,
                   sim_size: tuple[int, int] | None, options: CaptureOptions | None = None) -> list[SweepSource]:
    """Every input → the sweeps to process, checked up front (names must not collide in the output folder).

    With ``options.for_event_file`` (``--image``, ``--meta`` or meta flags given) the one input must be an
    event file; ``options.event_format`` applies to every capture read.
    """
    options = options or CaptureOptions()
    sources: list[SweepSource] = []
    folder_names: list[str] = []
    if sim_size is not None and not any(text.startswith("sim:") for text in inputs):
        raise InputError("--sim-size applies to sim: inputs, but no --input is one")
    if options.for_event_file:
        return [_single_event_file(inputs, names, options)]
    for text in inputs:
        if text.startswith("sim:"):
            sources.extend(sim_sources(text[4:], cfg, sim_size))
            continue
        path = Path(text)
        if not path.exists():
            raise InputError(f"--input {text}: no such file or folder")
        if path.is_dir():
            found, available = folder_sources(path, names, options.event_format)
            sources.extend(found)
            folder_names.extend(available)
        else:
            sources.append(file_source(path, options.event_format))
    if names is not None:
        _check_names(names, folder_names)
    _check_unique(sources)
    return sources


def _single_event_file(inputs: list[str], names: list[str] | None, options: CaptureOptions) -> SweepSource:
    """``--image``/``--meta``/meta flags describe one event file: anything else given with them is a mistake."""
    if len(inputs) != 1 or names is not None:
        raise InputError("--image, --meta, --sweep-us, --focus-m, --image-time-us and --polarity-flip describe one "
                         f"event file: give exactly one --input EVENTS and no --name (got --input {' '.join(inputs)})")
    path = Path(inputs[0])
    if not path.is_file():
        raise InputError(f"--input {inputs[0]}: no such event file (--image and the meta options need one)")
    return event_file_source(path, options)


def _check_names(names: list[str], folder_names: list[str]) -> None:
    if not folder_names:
        raise InputError("--name selects captures of folder inputs, but no --input is a folder")
    unknown = [name for name in names if name not in folder_names]
    if unknown:
        shown = ", ".join(sorted(set(folder_names))[:10]) + (", ..." if len(set(folder_names)) > 10 else "")
        raise InputError(f"no capture named {', '.join(unknown)} in the folder input(s) (available: {shown})")


def _check_unique(sources: list[SweepSource]) -> None:
    seen: dict[str, str] = {}
    for source in sources:
        if source.name in seen:
            raise InputError(f"two inputs are both named '{source.name}' ({seen[source.name]} and "
                             f"{source.description}); their outputs would overwrite each other")
        seen[source.name] = source.description
