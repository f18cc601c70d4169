"""What a run ran on: package versions and the device, recorded in every results.json."""

from __future__ import annotations

import platform
from importlib import metadata

import lightning as L
import torch

PACKAGES = ("evfocus", "torch", "torchvision", "lightning", "torchmetrics", "kornia", "lpips", "wandb",
            "omegaconf", "numpy", "h5py", "scikit-image")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description(trainer: L.Trainer) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)} x{trainer.num_devices}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
