"""A sweep YAML, read and checked before any trial runs: the wandb sweep schema, the command, and every
parameter against the experiment config (``evfocus.config``), so a typo fails in a second, not mid-sweep.

The YAML is a standard wandb sweep: ``program: src/train.py`` and a ``command:`` that passes the
parameters as ``${args_no_hyphens}`` (``key=value``, what ``src/train.py`` takes) and names each run's
folder after its wandb run: ``run_name=${oc.env:WANDB_RUN_ID,null}`` (the agent sets ``WANDB_RUN_ID``
for every trial, so does the offline runner).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from sweeps import SweepConfig, schema_violations_from_proposed_config
from sweeps.params import HyperParameter

from evfocus.config import ConfigError, load_config, to_container
from evfocus.sweeps.command import DEFAULT_COMMAND, plain, program_args, trial_argv
from evfocus.training.cli import TrainArgsError, parse_train_args

RUN_NAME_TOKEN = "run_name=${oc.env:WANDB_RUN_ID,null}"
RESERVED = ("run_name",)  # the runner (offline) or wandb (online) names every trial's run
CHECK_QUANTILES = (0.001, 0.999)  # continuous distributions are checked near both ends


class SweepSpecError(ValueError):
    """The sweep YAML cannot run (the message names the file and the key)."""


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    config: dict[str, Any]  # as written: what wandb.sweep() receives
    filled: SweepConfig  # with the schema's defaults (metric.impute, distributions, ...)

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.stem)

    @property
    def method(self) -> str:
        return str(self.filled["method"])

    @property
    def metric(self) -> tuple[str, str] | None:
        """(name, goal) of the metric the search optimises and the summary sorts by, if any."""
        metric = self.filled.get("metric")
        return (metric["name"], metric["goal"]) if metric else None

    @property
    def program(self) -> str:
        return str(self.config["program"])

    @property
    def command(self) -> list[Any]:
        return list(self.config.get("command") or DEFAULT_COMMAND)

    def argv(self, params: dict[str, Any]) -> list[str]:
        """The trial's argv, as ``wandb agent`` builds it."""
        return trial_argv(self.command, self.program, params)

    def trial_config(self, params: dict[str, Any], trial_id: str) -> DictConfig:
        """The experiment config a trial with ``params`` runs with (its run is named ``trial_id``)."""
        try:
            args = parse_train_args(program_args(self.argv(params), self.program))
        except (TrainArgsError, ValueError) as error:
            raise SweepSpecError(f"{self.path}: command: {error}") from None
        if args.print_config:
            raise SweepSpecError(f"{self.path}: command: --print-config would only print the config")
        with _environment(WANDB_RUN_ID=trial_id):  # resolved here: ${oc.env:...} reads it at access
            try:
                return OmegaConf.create(to_container(load_config(args.config, args.overrides)))
            except ConfigError as error:
                raise SweepSpecError(f"{self.path}: {error}") from None


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SweepSpecError(f"sweep file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SweepSpecError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise SweepSpecError(f"{path}: the top level must be a mapping (method:, parameters:, command:, ...)")
    return config


def _check_schema(path: Path, config: dict[str, Any]) -> SweepConfig:
    try:
        violations = schema_violations_from_proposed_config(config)
    except ValueError as error:
        raise SweepSpecError(f"{path}: {error}") from None
    if violations:
        raise SweepSpecError(f"{path}: not a valid wandb sweep: " + "; ".join(violations))
    return SweepConfig(config)


def _check_command(path: Path, config: dict[str, Any]) -> None:
    if not config.get("program"):
        raise SweepSpecError(f"{path}: program: missing (e.g. program: src/train.py)")
    command = [str(chunk) for chunk in config.get("command") or DEFAULT_COMMAND]
    if "${args_no_hyphens}" not in command:
        raise SweepSpecError(f"{path}: command: must pass the parameters as ${{args_no_hyphens}} (key=value, "
                             f"what src/train.py takes), got {command}")
    if "${program}" not in command:
        raise SweepSpecError(f"{path}: command: must run ${{program}}, got {command}")
    if RUN_NAME_TOKEN not in command:
        raise SweepSpecError(f"{path}: command: add '{RUN_NAME_TOKEN}' before ${{args_no_hyphens}}, so that each "
                             "trial gets its own run folder, named after its wandb run")


def _check_parameters(path: Path, filled: SweepConfig) -> None:
    for name, parameter in filled["parameters"].items():
        if name in RESERVED:
            raise SweepSpecError(f"{path}: parameters.{name}: set by the sweep for every trial, cannot be swept")
        if "parameters" in parameter:
            raise SweepSpecError(f"{path}: parameters.{name}: nested parameters reach src/train.py as one "
                                 "string; use dotted names (e.g. optim.lr) instead")
        for value in candidates(name, parameter):
            if value is None:
                raise SweepSpecError(f"{path}: parameters.{name}: null would reach src/train.py as the string "
                                     "'None' (wandb agent writes str(value)); leave the parameter out instead")


def candidates(name: str, parameter: dict[str, Any]) -> list[Any]:
    """Values worth checking: each listed value, or both ends of a distribution."""
    if "value" in parameter:
        return [parameter["value"]]
    if "values" in parameter:
        return list(parameter["values"])
    distribution = HyperParameter(name, parameter)
    return [plain(distribution.ppf(q)) for q in CHECK_QUANTILES]


def base_params(spec: SweepSpec) -> dict[str, Any]:
    """The first value of every parameter (the low end of a range)."""
    return {name: candidates(name, p)[0] for name, p in spec.filled["parameters"].items()}


def check_trial_configs(spec: SweepSpec) -> None:
    """Every parameter value (or both ends of its range) must load into a valid experiment config."""
    parameters = spec.filled["parameters"]
    base = base_params(spec)
    checked: list[dict[str, Any]] = [base]
    for name, parameter in parameters.items():
        checked += [{**base, name: value} for value in candidates(name, parameter)[1:]]
    for params in checked:
        spec.trial_config(params, f"{spec.name}-check")


def load_spec(path: str | Path) -> SweepSpec:
    """Read ``path`` and check it (schema, command, parameters against the config); raise SweepSpecError."""
    path = Path(path)
    config = _read(path)
    filled = _check_schema(path, config)
    _check_command(path, config)
    _check_parameters(path, filled)
    spec = SweepSpec(path, config, filled)
    check_trial_configs(spec)
    return spec
