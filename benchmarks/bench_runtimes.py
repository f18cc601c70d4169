"""Which runtime runs the paper-size nets fastest on this CPU? Plain torch, channels_last, bf16 autocast,
ONNX Runtime and OpenVINO, on the shapes the pipeline feeds them, interleaved in one process.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_runtimes.py --repeats 3

Shapes: a 260×348 frame at batch 1 (a stack slice) and 8 crops of 48×60 (one search call). EvRefocusNet runs
without its elementwise output composition (``expm1`` does not export to ONNX) and without the cached image
features, the same graph in every runtime; random weights (speed does not depend on them). Prints Markdown:
median seconds per call and the ratio to plain torch.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from evfocus.config import load_config
from evfocus.models.blocks import pad_to_multiple
from evfocus.models.refocus import EvRefocusNet
from evfocus.models.registry import build_refocus_net


class RefocusCore(nn.Module):
    """EvRefocusNet up to its log-space residual: every convolution, none of the output composition."""

    def __init__(self, net: EvRefocusNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor, events: Tensor) -> Tensor:
        net = self.net
        skips = net.encoder(net._padded_log(image), pad_to_multiple(events, net.stride), None)
        return net.to_residual(net.head(net.decoder(skips)))


def runners(core: RefocusCore, image: Tensor, events: Tensor, threads: int) -> dict[str, Callable[[], object]]:
    """A zero-argument call per runtime, each on the same inputs."""
    nhwc = copy.deepcopy(core).to(memory_format=torch.channels_last)

    def torch_call(module: nn.Module, bf16: bool) -> Callable[[], object]:
        def call() -> object:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return module(image, events)
        return call

    calls = {"torch": torch_call(core, False), "channels_last": torch_call(nhwc, False),
             "bf16": torch_call(core, True), "channels_last + bf16": torch_call(nhwc, True)}
    inputs = (image.numpy(), events.numpy())
    try:
        import onnxruntime as ort

        path = f"/tmp/bench_runtimes_{image.shape[0]}x{image.shape[-2]}x{image.shape[-1]}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(core, (image, events), path,
                              input_names=["image", "events"], opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        calls[f"onnxruntime {ort.__version__}"] = lambda: session.run(None, {"image": inputs[0], "events": inputs[1]})
    except ImportError:
        pass
    try:
        import openvino as ov

        with torch.no_grad():
            model = ov.convert_model(core, example_input=(image, events))
        for hint in ("f32", "bf16"):
            compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                               "INFERENCE_PRECISION_HINT": hint})
            calls[f"openvino {ov.__version__.split('-')[0]} {hint}"] = lambda compiled=compiled: compiled(list(inputs))
    except ImportError:
        pass
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/merge.yaml", help="paper-size nets")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_refocus_net(load_config(args.config)).eval()
    with torch.no_grad():
        net.to_residual.weight.normal_(0.0, 0.02)
    core = RefocusCore(net).eval()
    print("| input | runtime | s per call (median) | vs torch |")
    print("|---|---|---|---|")
    for batch, height, width in ((1, 260, 348), (8, 48, 60)):
        image, events = torch.rand(batch, 3, height, width), torch.randn(batch, net.num_bins, height, width)
        calls = runners(core, image, events, args.threads)
        seconds: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():
            call()  # warm-up: kernel selection, JIT
        for _ in range(args.repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                seconds[name].append(time.perf_counter() - start)
        base = statistics.median(seconds["torch"])
        for name, values in seconds.items():
            print(f"| {batch}×{height}×{width} | {name} | {statistics.median(values):.3f} | "
                  f"{statistics.median(values) / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
