"""Synthetic focal stacks for the focus and merge tests."""

import kornia
import torch


def two_plane_stack(height: int = 48, width: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 3, H, W): slice 0 sharp on the left half, slice 1 on the right; and the sharp image (3, H, W)."""
    sharp = torch.rand(3, height, width, generator=torch.Generator().manual_seed(3))
    blurred = kornia.filters.gaussian_blur2d(sharp[None], (15, 15), (4.0, 4.0))[0]
    left = torch.zeros(1, height, width, dtype=torch.bool)
    left[..., : width // 2] = True
    return torch.stack([torch.where(left, sharp, blurred), torch.where(left, blurred, sharp)]), sharp
