"""Hardware-aware training: what a train-mode forward injects on top of the tiled path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from aimc.nn.base import AnalogLayerBase

__all__ = ["perturb_train_tiles"]


def perturb_train_tiles(layer: AnalogLayerBase, w: Tensor) -> Tensor:
    """Normalized tile weights ``w`` ``[S, groups, row tiles, rows, cols]`` as a train-mode
    forward sees them (the identity until weight-noise injection is configured)."""
    return w
