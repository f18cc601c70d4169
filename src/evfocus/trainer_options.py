"""``trainer:`` options checked against ``lightning.Trainer``'s own signature before anything runs.

The section goes to ``lightning.Trainer`` unchanged, so without this a typo or a wrong value passes
``--print-config`` and fails late (an unknown name only when the Trainer is built, after the data
is prepared) or never (``max_epochs=-5`` trains until stopped). Names are checked against the
signature, values against its annotations where those are plain data (bool, int, float, str, None,
``Literal``, lists and dicts of them; a YAML value can never be an ``Accelerator`` or a ``timedelta``)
and against the obvious ranges below; anything else is left to Lightning. Lightning is imported only
when checking, so importing ``evfocus.config`` stays light.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

# train() sets these itself (run folder, loggers, callbacks): a config value would collide with them
SET_BY_EVFOCUS = ("default_root_dir", "logger", "callbacks")
# the smallest meaningful value of each count (-1 means "no limit" where Lightning allows it)
MINIMUM = {
    "max_epochs": -1, "min_epochs": 0, "max_steps": -1, "min_steps": 0, "num_nodes": 1, "fast_dev_run": 0,
    "accumulate_grad_batches": 1, "check_val_every_n_epoch": 1, "log_every_n_steps": 0,
    "num_sanity_val_steps": -1, "reload_dataloaders_every_n_epochs": 0, "gradient_clip_val": 0,
    "limit_train_batches": 0, "limit_val_batches": 0, "limit_test_batches": 0, "limit_predict_batches": 0,
    "overfit_batches": 0, "val_check_interval": 0,
}
# options where a float is a fraction of an epoch (an int counts batches)
FRACTIONS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
             "overfit_batches", "val_check_interval")


class TrainerOptionError(ValueError):
    """A ``trainer.*`` option that ``lightning.Trainer`` does not take, or a value it cannot use."""


@functools.cache
def trainer_parameters() -> dict[str, Any]:
    """``lightning.Trainer.__init__``'s keyword arguments → their type annotations (``Any`` where unknown)."""
    import lightning

    init = lightning.Trainer.__init__
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation this Lightning version cannot evaluate: check the names only
        hints = {}
    return {name: hints.get(name, Any) for name in inspect.signature(init).parameters if name != "self"}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def accepts(annotation: Any, value: Any) -> bool:
    """Whether a config value (plain YAML data) fits ``annotation``; annotations not understood accept."""
    if annotation is Any:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(accepts(arg, value) for arg in args)
    if origin is typing.Literal:
        return any(type(value) is type(option) and value == option for option in args)
    if origin in (list, Iterable):
        return isinstance(value, list) and all(accepts(args[0], item) for item in value)
    if origin in (dict, Mapping):
        return isinstance(value, dict) and all(accepts(args[1], item) for item in value.values())
    plain = {type(None): value is None, bool: isinstance(value, bool), str: isinstance(value, str),
             int: _is_number(value) and isinstance(value, int), float: _is_number(value),
             list: isinstance(value, list), dict: isinstance(value, dict)}
    if annotation in plain:
        return plain[annotation]
    return not isinstance(annotation, type)  # a class (Strategy, timedelta, ...) is never YAML data


def describe(annotation: Any) -> str:
    """A short reading of an annotation for error messages: ``int or null``, ``one of [32, '16-mixed']``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        literal_args = [arg for arg in args if typing.get_origin(arg) is typing.Literal]
        options = [option for arg in literal_args for option in typing.get_args(arg)]
        others = [describe(arg) for arg in args if arg not in literal_args]
        return " or ".join([f"one of {options}"] * bool(options) + others)
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if annotation is type(None):
        return "null"
    text = str(annotation) if args else getattr(annotation, "__name__", str(annotation))
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)  # lightning.pytorch.loggers.logger.Logger → Logger


def _check_range(name: str, value: Any) -> None:
    if not _is_number(value) or name not in MINIMUM:
        return
    if not value >= MINIMUM[name]:  # written so that NaN fails too
        raise TrainerOptionError(f"trainer.{name}: must be >= {MINIMUM[name]}, got {value}")
    if name in FRACTIONS and isinstance(value, float) and value > 1.0:
        raise TrainerOptionError(f"trainer.{name}: a float is a fraction of an epoch, in [0, 1]; got {value} "
                                 f"(an int counts batches)")


def check_trainer_options(options: Mapping[str, Any]) -> None:
    """Raise ``TrainerOptionError`` naming the first ``trainer.*`` key the Trainer would reject (or misuse)."""
    parameters = trainer_parameters()
    for name, value in options.items():
        if name in SET_BY_EVFOCUS:
            raise TrainerOptionError(f"trainer.{name}: set by evfocus itself (run folder, loggers, callbacks); "
                                     "remove it from the config")
        if name not in parameters:
            close = difflib.get_close_matches(name, [p for p in parameters if p not in SET_BY_EVFOCUS], n=1)
            hint = f"; did you mean 'trainer.{close[0]}'?" if close else ""
            raise TrainerOptionError(f"trainer.{name}: not an argument of lightning.Trainer{hint}")
        if not accepts(parameters[name], value):
            raise TrainerOptionError(f"trainer.{name}: expected {describe(parameters[name])}, got {value!r}")
        _check_range(name, value)
