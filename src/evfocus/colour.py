"""sRGB ↔ linear light, for any shape: frames are stored sRGB, while light adds up (blur, defocus) linearly.

One implementation for the simulator (which encodes every frame its event model sees), the contrast
estimate and the pipeline's anchoring. It is kornia's curve (IEC 61966-2-1; ``tests/test_render.py``
checks the match) for any number of channels, without ``torch.where``, which is slow on CPU.
"""

from __future__ import annotations

from torch import Tensor

_SRGB_KNEE_LINEAR, _SRGB_KNEE_ENCODED = 0.0031308, 0.04045  # where the sRGB curve's linear piece ends


def srgb_encode(linear: Tensor) -> Tensor:
    """Linear light → sRGB-encoded values, any shape (IEC 61966-2-1, same curve as kornia.color).

    Values are clamped to [0,1] first: a camera saturates above full scale and records no
    negative light, and the renderer's band-limited blur can ring a hair outside [0,1].
    The two pieces of the curve meet at the knee, so curve(max(x, knee)) + slope·(min(x, knee) − knee)
    is either piece exactly: arithmetic instead of ``torch.where``, which is slow on CPU
    (this encodes every frame of every sweep the event simulator sees).
    """
    x = linear.clamp(0.0, 1.0)
    curved = x.clamp_min(_SRGB_KNEE_LINEAR).pow_(1 / 2.4).mul_(1.055).sub_(0.055)
    curved.add_(x.clamp_max_(_SRGB_KNEE_LINEAR).sub_(_SRGB_KNEE_LINEAR), alpha=12.92)
    return curved.clamp_(0.0, 1.0)  # the pieces meet to float rounding (~1e-8), not exactly


def srgb_decode(srgb: Tensor) -> Tensor:
    """sRGB-encoded values → linear light, any shape; clamped to [0,1], the range a camera stores."""
    x = srgb.clamp(0.0, 1.0)
    curved = x.clamp_min(_SRGB_KNEE_ENCODED).add_(0.055).div_(1.055).pow_(2.4)
    curved.add_(x.clamp_max_(_SRGB_KNEE_ENCODED).sub_(_SRGB_KNEE_ENCODED), alpha=1 / 12.92)
    return curved.clamp_(0.0, 1.0)
