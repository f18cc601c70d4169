"""Training samples of the image-only baselines (stage ``baseline``) from one simulated sweep.

A sample is a crop of the sweep's frame (``image``, the defocused input) and of its ground-truth
all-in-focus image (``aif``, the target), plus what the papers' extra losses need:

- ``defocus_px``: the signed blur diameter of every pixel in the frame, in full-resolution pixels,
  ``blur_px_per_diopter · (1/depth − 1/focus)`` with the focus at the frame's moment (positive: nearer
  than the focus). IFAN is trained to predict a dual-pixel disparity, which is proportional to this; our
  simulator renders no dual-pixel views, so this ground truth stands in for it.
- ``sharp``: an *unpaired* all-in-focus crop for APL's discriminator, from earlier sweeps of the stream
  (``UnpairedSharpPool``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from evfocus.data.samples import Sample, crop_window, random_flip
from evfocus.sweep import Sweep


def signed_defocus_px(sweep: Sweep) -> Tensor:
    """(1, H, W) signed blur diameter of the frame in pixels (see the module doc); 0 where there is no surface."""
    if sweep.depth_m is None or "blur_px_per_diopter" not in sweep.meta:
        raise ValueError(f"{sweep.name}: the defocus target needs ground-truth depth and meta['blur_px_per_diopter']")
    focus_diopter = float(sweep.schedule.focus_diopter(torch.tensor(float(sweep.image_time_us), dtype=torch.float64)))
    diopter = sweep.depth_m.double().reciprocal()  # +inf depth (no surface) → 0 diopters
    defocus = sweep.meta["blur_px_per_diopter"] * (diopter - focus_diopter)
    return torch.where(torch.isfinite(sweep.depth_m), defocus, torch.zeros_like(defocus)).float()


def baseline_samples(sweep: Sweep, count: int, generator: torch.Generator, crop_size: int | None = None,
                     flip: bool = False) -> list[Sample]:
    """``count`` crops of one sweep: ``image``, ``aif`` and ``defocus_px`` (see the module doc)."""
    if sweep.aif is None:
        raise ValueError(f"{sweep.name}: baseline samples need the ground-truth all-in-focus image")
    defocus = signed_defocus_px(sweep)
    samples = []
    for _ in range(count):
        top, left, height, width = crop_window(generator, sweep.height, sweep.width, crop_size)
        rows, cols = slice(top, top + height), slice(left, left + width)
        sample = {"image": sweep.image[:, rows, cols],  # the simulator already added camera noise
                  "aif": sweep.aif[:, rows, cols], "defocus_px": defocus[:, rows, cols]}
        samples.append(random_flip(sample, generator) if flip else sample)
    return samples


class UnpairedSharpPool:
    """All-in-focus crops of earlier sweeps, handed out as ``sample["sharp"]``: the real images of APL's
    discriminator, which (as in APL) never shows it the target of the input it judges.

    ``attach`` gives each sample of a sweep a random crop of the pool, then adds the sweep's own crops
    (a full pool replaces random entries). The first sweep of a stream has no predecessor: its samples
    get each other's crops (another window of the same scene).
    """

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.generator = generator
        self.crops: list[Tensor] = []

    def _draw(self, upper: int) -> int:
        return int(torch.randint(0, upper, (), generator=self.generator))

    def attach(self, samples: list[Sample]) -> list[Sample]:
        own = [sample["aif"] for sample in samples]
        for index, sample in enumerate(samples):
            sample["sharp"] = self.crops[self._draw(len(self.crops))] if self.crops else own[(index + 1) % len(own)]
        for crop in own:
            if len(self.crops) < self.capacity:
                self.crops.append(crop)
            else:
                self.crops[self._draw(self.capacity)] = crop
        return samples
