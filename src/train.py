"""Train and evaluate one stage: ``python src/train.py --config configs/X.yaml [dotted.key=value ...]``."""

from __future__ import annotations

import argparse
import os
import sys

# Spinning OpenMP threads starve the data workers on small CPU machines (measured 10-20x slowdowns
# on 2 cores); must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf

from evfocus.config import ConfigError, load_config
from evfocus.models.registry import check_model_name
from evfocus.training.callbacks import NonFiniteLossError, RunInterrupted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="YAML experiment under configs/")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. trainer.max_epochs=3")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        check_model_name(cfg)
        if args.print_config:
            print(OmegaConf.to_yaml(cfg, resolve=True), end="")
            return 0
        from evfocus.training.run import train  # heavy imports only when training

        results, _ = train(cfg)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"training stopped: {error}", file=sys.stderr)
        return 1
    except RunInterrupted as error:
        print(f"{error}; resume with ckpt_path=last", file=sys.stderr)
        return 130
    except SIGTERMException:
        print("terminated (SIGTERM); last.ckpt holds the latest training state, resume with ckpt_path=last",
              file=sys.stderr)
        return 143
    print(f"results: {results['run_dir']}/results.json")
    print(f"test: {results['test']}  identity baseline: {results['baselines']['identity']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
