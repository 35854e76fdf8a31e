"""Drop-in analog layers."""

from __future__ import annotations

from aimc.nn.base import AnalogLayerBase
from aimc.nn.conv import AnalogConv1d, AnalogConv2d
from aimc.nn.linear import AnalogLinear

__all__ = ["AnalogLayerBase", "AnalogLinear", "AnalogConv1d", "AnalogConv2d"]
