"""Networks (pure PyTorch: no Lightning, no wandb)."""

from evfocus.models.blocks import count_parameters
from evfocus.models.refocus import EvRefocusNet

__all__ = ["EvRefocusNet", "count_parameters"]
