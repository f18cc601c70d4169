"""How the nets run: plain torch, channels_last, or channels_last with bf16 autocast.

On this project's CPUs (AVX-512, bf16 instructions) oneDNN convolutions run faster on NHWC tensors than on
NCHW ones, and faster again in bf16 (benchmarks/RESULTS.md). ``channels_last`` changes only the order of
float32 sums, so the results move by rounding. ``bf16`` computes the convolutions in bfloat16 (8 bits of
mantissa) everywhere, which moves a few search decisions; ``bf16_stack`` only where no decision is taken
(the stack's full-image passes and the merge), so the search stays float32 and finds the same slices.
Both are documented trades of exactness for speed. ``torch`` is the plain fallback.

``auto`` (``src/aif.py``'s default; configs keep ``channels_last``) picks ``bf16_stack`` on a CPU with bf16
instructions (AVX512-BF16 or AMX) and ``channels_last`` everywhere else: on such a CPU ``bf16_stack`` kept
every search decision, moved the AIF by under 0.03 dB and ran the stack and merge about 2× faster on an
idle machine; on a CPU that only emulates bf16 it would run many times slower. On an H200 GPU bf16 bought
nothing resolvable at 260×346 (5.6 s vs 5.9 / 5.8 s per command), so a GPU keeps float32 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

Runtime = Literal["torch", "channels_last", "bf16_stack", "bf16"]
RUNTIMES: tuple[Runtime, ...] = ("torch", "channels_last", "bf16_stack", "bf16")
RUNTIME_CHOICES: tuple[str, ...] = ("auto", *RUNTIMES)  # what configs and the command line accept
Step = Literal["search", "stack", "merge"]
BF16_STEPS: dict[str, tuple[Step, ...]] = {"bf16_stack": ("stack", "merge"), "bf16": ("search", "stack", "merge")}


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")


@cache
def cpu_has_native_bf16() -> bool:
    """True when this machine's CPU executes bf16 arithmetic itself (x86 AVX512-BF16 or AMX-BF16 flags)."""
    return _cpu_flags_have_bf16(Path("/proc/cpuinfo"))


def _cpu_flags_have_bf16(cpuinfo: Path) -> bool:
    """Without a readable cpuinfo (not Linux) the answer is False: the float32 path is never the slow one."""
    try:
        flags = cpuinfo.read_text(errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_runtime(runtime: str, device: torch.device | str) -> Runtime:
    """``runtime`` itself, or for ``auto`` the fastest runtime that keeps the search's decisions on ``device``."""
    if runtime != "auto":
        check_runtime(runtime)
        return runtime  # type: ignore[return-value]
    if torch.device(device).type == "cpu" and cpu_has_native_bf16():
        return "bf16_stack"
    return "channels_last"


def memory_format(runtime: Runtime) -> torch.memory_format:
    check_runtime(runtime)
    return torch.contiguous_format if runtime == "torch" else torch.channels_last


@contextmanager
def prepared(nets: Iterable[Any], runtime: Runtime) -> Iterator[None]:
    """The ``nn.Module``s among ``nets`` with their weights in ``runtime``'s memory format for the block,
    and back as they were after it (so a training module lent to an evaluation keeps its layout).
    Convolutions follow their weights' format, so the activations become NHWC without touching the
    inputs; anything that is not a module (event integration, a wrapper) is left alone."""
    wanted = memory_format(runtime)
    changed = [(net, _format_of(net)) for net in nets if isinstance(net, nn.Module) and _format_of(net) != wanted]
    for net, _ in changed:
        net.to(memory_format=wanted)
    try:
        yield
    finally:
        for net, original in changed:
            net.to(memory_format=original)


def _format_of(net: nn.Module) -> torch.memory_format:
    """The layout of the module's first convolution weight whose two layouts differ (contiguous when none)."""
    weight = next((p for p in net.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[-2:].numel() > 1), None)
    if weight is not None and weight.is_contiguous(memory_format=torch.channels_last) \
            and not weight.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def autocast(runtime: Runtime, device: torch.device, step: Step) -> AbstractContextManager:
    """A context for one pipeline step's network calls: bf16 autocast where ``runtime`` runs that step in
    bf16, nothing otherwise."""
    check_runtime(runtime)
    in_bf16 = step in BF16_STEPS.get(runtime, ())
    return torch.autocast(device.type, dtype=torch.bfloat16) if in_bf16 else nullcontext()
