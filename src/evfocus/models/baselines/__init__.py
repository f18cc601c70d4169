"""Image-only all-in-focus baselines named by the paper (issue 11): the networks and a registry.

Every baseline maps an (N, 3, H, W) defocused frame in [0, 1], any H×W, to the (N, 3, H, W) all-in-focus
estimate in [0, 1] (straight-through clamp); see `layers.ImageBaseline`. Auxiliary outputs come from
``forward_with_aux`` (IFAN: signed defocus map and filters at 1/8; APL: in-focus mask). Training-only
companions: ``IFAN.build_reblur_net()`` and ``APL.build_discriminator()``.

| name | network | paper preset | params (published) | CPU preset | params |
|---|---|---|---|---|---|
| `drbnet` | DRBNet, CVPR 2022 | `width=32` | 11.69 M (11.69 M) | `width=8` | 0.74 M |
| `ifan` | IFAN, CVPR 2021 | `width=32` | 10.48 M (10.48 M) | `width=8` | 0.66 M |
| `kpac` | KPAC, ICCV 2021 | `width=48, levels=2` | 1.58 M (1.58 M) | `width=12, levels=2` | 0.10 M |
| `kpac` | 3-level: `paper_3level` | `width=48, levels=3` | 2.06 M (2.06 M) | | |
| `apl` | APL, ECCV 2022 | `detector_width=64, generator_width=128` | 16.48 M (16.50 M) | `8`, `12` | 0.21 M |
| `unet_image` | EvRefocusNet − events | `width=128` | 10.81 M (budget 10.63 M) | `width=40` | 1.06 M |

Training-only parts at paper size: IFAN's reblurring net 19.14 M (19.14 M); APL's discriminator
(`discriminator_width=64`) 4.62 M (4.62 M). APL's 16.48 M is detector 8.66 M + generator 7.82 M.
Forward time for one 260×346 frame (`torch.no_grad()`, median of 3, a shared 2-core CPU, 1 thread): CPU
presets 0.04–0.19 s (`unet_image` then at width 16; at its CPU width 40, 2.4 s with the machine loaded);
paper presets KPAC 0.2–0.4 s, IFAN 0.5 s, DRBNet 0.8 s, `unet_image` 3.8 s, APL 13 s (a 128-channel
generator at full resolution). With 2 threads while other jobs loaded the machine, 1–6×
slower and erratic.

``build_baseline("kpac", preset="cpu")`` builds a preset; keyword arguments override its values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evfocus.models.baselines.apl import APL, APLDiscriminator
from evfocus.models.baselines.drbnet import DRBNet
from evfocus.models.baselines.ifan import IFAN, IFANReblur
from evfocus.models.baselines.kpac import KPAC
from evfocus.models.baselines.layers import ImageBaseline
from evfocus.models.baselines.unet_image import ImageUNet


@dataclass(frozen=True)
class Preset:
    """Constructor arguments of one size, and the parameter count it reproduces (None: our own size)."""

    kwargs: Mapping[str, Any]
    published_params: int | None = None


@dataclass(frozen=True)
class BaselineSpec:
    """How to build one baseline, and its named sizes ("paper", "cpu", …)."""

    builder: Callable[..., ImageBaseline]
    presets: Mapping[str, Preset]

    def kwargs(self, preset: str) -> dict[str, Any]:
        if preset not in self.presets:
            raise ValueError(f"unknown preset {preset!r}; known: {sorted(self.presets)}")
        return dict(self.presets[preset].kwargs)


BASELINES: dict[str, BaselineSpec] = {
    "drbnet": BaselineSpec(DRBNet, {
        "paper": Preset({"width": 32}, 11_690_000),
        "cpu": Preset({"width": 8}),
    }),
    "ifan": BaselineSpec(IFAN, {
        "paper": Preset({"width": 32}, 10_480_000),
        "cpu": Preset({"width": 8}),
    }),
    "kpac": BaselineSpec(KPAC, {
        "paper": Preset({"width": 48, "levels": 2}, 1_580_000),
        "paper_3level": Preset({"width": 48, "levels": 3}, 2_060_000),
        "cpu": Preset({"width": 12, "levels": 2}),
    }),
    "apl": BaselineSpec(APL, {
        # detector 8.67 M + generator 7.83 M: the networks its forward runs
        "paper": Preset({"detector_width": 64, "generator_width": 128, "discriminator_width": 64}, 16_500_000),
        "cpu": Preset({"detector_width": 8, "generator_width": 12, "discriminator_width": 8}),
    }),
    "unet_image": BaselineSpec(ImageUNet, {
        # the budget: EvRefocusNet (width 64, depth 3, 16 bins) + EvMergeNet (width 47, depth 3)
        "paper": Preset({"width": 128}, 10_632_825),
        # the CPU pipeline's budget: EvRefocusNet (width 16) 0.31 M + EvMergeNet (width 16) 0.67 M = 0.98 M
        "cpu": Preset({"width": 40}),
    }),
}


def build_baseline(name: str, preset: str | None = None, **kwargs: Any) -> ImageBaseline:
    """The baseline `name` at `preset` ("paper", "cpu", …; None: the constructor's defaults), `kwargs` overriding."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    spec = BASELINES[name]
    arguments = {} if preset is None else spec.kwargs(preset)
    return spec.builder(**{**arguments, **kwargs})


__all__ = [
    "APL",
    "BASELINES",
    "IFAN",
    "KPAC",
    "APLDiscriminator",
    "BaselineSpec",
    "DRBNet",
    "IFANReblur",
    "ImageBaseline",
    "ImageUNet",
    "Preset",
    "build_baseline",
]
