"""Stands in for src/train.py in sweep tests (milliseconds instead of seconds a trial).

Takes the same command line; writes ``metrics.csv`` (one ``val/psnr`` row per epoch, ``score`` + epoch/10,
``FAKE_EPOCH_S`` seconds apart) and ``results.json`` into ``<runs_dir>/evfocus/$WANDB_RUN_ID``.
``score`` is 20 + the ``seed=`` argument; with ``FAKE_INTERRUPT`` naming a file that exists, it
removes the file and exits 130 as an interrupted run does.
"""

import json
import os
import sys
import time
from pathlib import Path

args = dict(arg.split("=", 1) for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-"))
marker = os.environ.get("FAKE_INTERRUPT")
if marker and Path(marker).is_file():
    Path(marker).unlink()
    sys.exit(130)
run_dir = Path(args["runs_dir"]) / "evfocus" / os.environ["WANDB_RUN_ID"]
run_dir.mkdir(parents=True)
score = 20.0 + float(args.get("seed", 0))
metrics = run_dir / "metrics.csv"
metrics.write_text("epoch,step,val/psnr\n")
for epoch in range(int(args.get("trainer.max_epochs", 1))):
    time.sleep(float(os.environ.get("FAKE_EPOCH_S", "0")))
    with metrics.open("a") as file:
        file.write(f"{epoch},{epoch},{score + epoch / 10}\n")
aif = {"aif": {"pipeline": {"psnr": score, "ssim": 0.5, "lpips": None}}}
(run_dir / "results.json").write_text(json.dumps({"aif": aif, "argv": sys.argv[1:]}))
