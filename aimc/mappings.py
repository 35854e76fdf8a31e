"""Which digital module becomes which analog layer (pure data, torch.ao style)."""

from __future__ import annotations

import copy

from torch import nn

from aimc.nn import (
    AnalogConv1d,
    AnalogConv2d,
    AnalogConv3d,
    AnalogConvTranspose1d,
    AnalogConvTranspose2d,
    AnalogConvTranspose3d,
    AnalogGRU,
    AnalogGRUCell,
    AnalogLinear,
    AnalogLSTM,
    AnalogLSTMCell,
    AnalogMultiheadAttention,
    AnalogRNN,
    AnalogRNNCell,
)

__all__ = ["DEFAULT_ANALOG_MODULE_MAPPING", "get_default_analog_module_mapping"]

#: digital module type -> analog layer type. Subclasses of a key are converted too (the most
#: derived matching key wins).
DEFAULT_ANALOG_MODULE_MAPPING: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: AnalogLinear,
    nn.Conv1d: AnalogConv1d,
    nn.Conv2d: AnalogConv2d,
    nn.Conv3d: AnalogConv3d,
    nn.ConvTranspose1d: AnalogConvTranspose1d,
    nn.ConvTranspose2d: AnalogConvTranspose2d,
    nn.ConvTranspose3d: AnalogConvTranspose3d,
    nn.MultiheadAttention: AnalogMultiheadAttention,
    nn.LSTM: AnalogLSTM,
    nn.GRU: AnalogGRU,
    nn.RNN: AnalogRNN,
    nn.LSTMCell: AnalogLSTMCell,
    nn.GRUCell: AnalogGRUCell,
    nn.RNNCell: AnalogRNNCell,
}


def get_default_analog_module_mapping() -> dict[type[nn.Module], type[nn.Module]]:
    """A copy of :data:`DEFAULT_ANALOG_MODULE_MAPPING` (safe to modify)."""
    return copy.copy(DEFAULT_ANALOG_MODULE_MAPPING)
