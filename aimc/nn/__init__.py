"""Drop-in analog layers."""

from __future__ import annotations

from aimc.nn.attention import AnalogMultiheadAttention, route_around_fast_path
from aimc.nn.base import AnalogLayerBase
from aimc.nn.composite import AnalogContainer
from aimc.nn.conv import AnalogConv1d, AnalogConv2d
from aimc.nn.kernels import (
    AnalogConv3d,
    AnalogConvTranspose1d,
    AnalogConvTranspose2d,
    AnalogConvTranspose3d,
)
from aimc.nn.linear import AnalogLinear
from aimc.nn.recurrent import (
    AnalogGRU,
    AnalogGRUCell,
    AnalogLSTM,
    AnalogLSTMCell,
    AnalogRNN,
    AnalogRNNCell,
)

__all__ = [
    "AnalogLayerBase",
    "AnalogContainer",
    "AnalogLinear",
    "AnalogConv1d",
    "AnalogConv2d",
    "AnalogConv3d",
    "AnalogConvTranspose1d",
    "AnalogConvTranspose2d",
    "AnalogConvTranspose3d",
    "AnalogMultiheadAttention",
    "route_around_fast_path",
    "AnalogLSTM",
    "AnalogGRU",
    "AnalogRNN",
    "AnalogLSTMCell",
    "AnalogGRUCell",
    "AnalogRNNCell",
]
