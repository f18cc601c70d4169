"""Markdown table of ``score_sweeps.py --json`` files: one row per method, the mean ± standard deviation over
the files (e.g. seeds) of each, per input: PSNR (in brackets its gain over the input frame, whose PSNR
varies with the seed's test sweeps) and SSIM.

    python benchmarks/score_table.py SCORES/*.json [--inputs sim:1 sim:3 ../shared/samples/efs_dev]

A method is the checkpoint's model (``pipeline`` for the evfocus stages, the baseline's name otherwise).
The ``integration`` and ``input`` rows do not depend on the checkpoint, only on the simulator config and the
seed (which picks the simulated test sweeps): they count once per seed. Seconds per image: the method's mean
seconds per sweep on the input given by ``--timing`` (a 260×346 capture folder).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def spread(values: list[float], digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seed_of(checkpoint: str) -> int | None:
    """The seed of the run a checkpoint file belongs to (its folder's ``results.json``), if it says."""
    for folder in Path(checkpoint).parents:
        if (folder / "results.json").is_file():
            return json.loads((folder / "results.json").read_text()).get("seed")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="score_sweeps.py --json outputs")
    parser.add_argument("--inputs", nargs="*", help="inputs (columns), in order (default: those of the first file)")
    parser.add_argument("--timing", help="input whose seconds per sweep are the s/image column")
    args = parser.parse_args()
    scores = [json.loads(Path(f).read_text()) for f in args.files]
    inputs = args.inputs or list(scores[0]["inputs"])
    # method -> input -> metric -> [values over files]
    table: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    params: dict[str, int] = {}
    seen: set[tuple[str, str, int | None]] = set()  # (method, input, seed) of the checkpoint-independent rows
    for score in scores:
        seed = score.get("seed", seed_of(score["checkpoint"]))
        params[score["model"] if score["stage"] == "baseline" else "pipeline"] = score["parameters"]
        for text, methods in score["inputs"].items():
            for method, values in methods.items():
                name = method if method != "pipeline" else (score["model"] if score["stage"] == "baseline"
                                                            else "pipeline")
                if method in ("input", "integration"):
                    if (method, text, seed) in seen:
                        continue
                    seen.add((method, text, seed))
                for key in ("psnr", "aif_gain_db", "ssim", "seconds_per_sweep"):
                    table[name][text][key].append(values[key])
                table[name][text]["files"].append(score["checkpoint"])
    header = ["method", "runs", "params"] + [f"{text} {key}" for text in inputs for key in ("PSNR (gain)", "SSIM")]
    header += ["LPIPS", "s/image"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    order = sorted(table, key=lambda m: -statistics.mean(table[m][inputs[0]]["psnr"] or [0.0]))
    for method in order:
        runs = max(len(table[method][text]["psnr"]) for text in inputs)
        count = params.get(method)
        cells = [method, str(runs), f"{count / 1e6:.2f} M" if count else "—"]
        for text in inputs:
            gain = spread(table[method][text]["aif_gain_db"], 2)
            cells += [f"{spread(table[method][text]['psnr'], 2)} ({'' if gain.startswith('-') else '+'}{gain})",
                      spread(table[method][text]["ssim"], 3)]
        timing = table[method][args.timing]["seconds_per_sweep"] if args.timing else []
        cells += ["null", spread(timing, 2) if method not in ("input",) else "—"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
