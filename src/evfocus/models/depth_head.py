"""A per-pixel MLP that corrects the rule mixing the two depths from focus (``pipeline.depth_fusion``).

Each pixel is judged from its own features (``pipeline.depth_fusion.fusion_features``, which already hold the
local focus measures) and its 3×3 neighbours', then by 1×1 convolutions: too little context to learn the
simulator's scene layouts; the neighbours gained 0.013 AbsRel at ×1 on 64 validation sweeps over 1×1 only, and a
5×5 window no more (docs/results.md, "A learned depth fusion"). Its last layer starts at zero: the untrained head
*is* the fixed rule (``pipeline.depth.fuse_depths``), and training learns only where to depart from it, as the
merge net's Sobel prior does.
"""

from __future__ import annotations

from torch import Tensor, nn

NUM_FUSION_FEATURES = 30  # what pipeline.depth_fusion.fusion_features gives per pixel
HIDDEN_CHANNELS = 48


class DepthHead(nn.Module):
    """(N, F, H, W) fusion features → (N, 2, H, W): a change of the focus share and a shift of the focus
    position (both raw; ``pipeline.depth_fusion.fused_position`` bounds them)."""

    def __init__(self, in_channels: int = NUM_FUSION_FEATURES, hidden: int = HIDDEN_CHANNELS) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, padding_mode="replicate"), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 1), nn.SiLU(),
            nn.Conv2d(hidden, 2, 1),
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.layers(features)
