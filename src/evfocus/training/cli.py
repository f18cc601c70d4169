"""The command line of ``src/train.py``, shared with the sweep runner that builds and checks trial commands.

``config=FILE`` among the overrides is the same as ``--config FILE``: a wandb sweep passes its parameters
as ``key=value``, so this is how a sweep varies the config file (``sweeps/compare_baselines.yaml``).
"""

from __future__ import annotations

import argparse

CONFIG_KEY = "config="


class TrainArgsError(ValueError):
    """Arguments ``src/train.py`` cannot take (an unknown option, no config file or two)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # raise instead of exiting: the sweep runner reports it
        raise TrainArgsError(message)


def train_parser(description: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(description=description)
    parser.add_argument("--config", help="YAML experiment under configs/ (or config=FILE among the overrides)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. trainer.max_epochs=3")
    return parser


def parse_train_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    """``--config``, ``print_config`` and the overrides, with a ``config=FILE`` override moved to ``config``."""
    parser = train_parser(description)
    args = parser.parse_args(argv)
    files = [o[len(CONFIG_KEY):] for o in args.overrides if o.startswith(CONFIG_KEY)]
    args.overrides = [o for o in args.overrides if not o.startswith(CONFIG_KEY)]
    if args.config is not None:
        files.insert(0, args.config)
    if len(files) != 1:
        found = "none" if not files else ", ".join(files)
        raise TrainArgsError(f"give exactly one config file (--config FILE or config=FILE), got {found}")
    args.config = files[0]
    return args
