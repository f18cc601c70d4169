"""Run a wandb sweep YAML: ``python src/sweep.py sweeps/X.yaml [--count N] [--online] [--project P]``.

Offline (default): the local runner (``evfocus.sweeps``) proposes trials with wandb's own sweep engine
and runs each with the argv ``wandb agent`` would build; the sweep folder keeps every trial, so running
the same command again continues an interrupted sweep. ``--online``: ``wandb sweep`` + ``wandb agent``.
Run it from the repository root (the YAML's paths are relative to it, as for ``wandb agent``).
"""

from __future__ import annotations

import argparse
import sys

from evfocus.sweeps.spec import SweepSpecError, base_params, load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep YAML, e.g. sweeps/refocus_tune.yaml")
    parser.add_argument("--count", type=int, help="offline: trials the sweep holds when done (a grid: all by "
                        "default); online: trials this agent runs")
    parser.add_argument("--online", action="store_true", help="create the sweep on the wandb server and run "
                        "`wandb agent` (needs `wandb login`)")
    parser.add_argument("--project", help="wandb project (default: the config's logging.wandb.project or project)")
    parser.add_argument("--entity", help="online: wandb entity (default: yours)")
    parser.add_argument("--seed", type=int, default=0, help="offline: seed of the proposals")
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 1:
        parser.error(f"--count must be positive, got {args.count}")
    try:
        spec = load_spec(args.sweep)
        if args.online:
            from evfocus.sweeps.online import run_online

            cfg = spec.trial_config(base_params(spec), spec.name)
            return run_online(spec, args.project or cfg.logging.wandb.project or cfg.project, args.entity,
                              args.count)
        from evfocus.sweeps.runner import SweepInterrupted, run_offline

        try:
            outcome = run_offline(spec, args.count, args.project, args.seed)
        except (SweepInterrupted, KeyboardInterrupt) as error:
            print(f"sweep interrupted {error}; run the same command again to continue it", file=sys.stderr)
            return 130
    except SweepSpecError as error:
        print(f"sweep error: {error}", file=sys.stderr)
        return 2
    print(f"{outcome.ran} trials run, {len(outcome.trials)} in the sweep; summary: {outcome.folder}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
