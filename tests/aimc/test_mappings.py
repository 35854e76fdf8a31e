"""Mapping-driven sweep (timm style): every analog layer type gets the same checks."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import aimc

_CASES = {
    nn.Linear: (lambda: nn.Linear(20, 6), lambda: torch.randn(3, 20)),
    nn.Conv1d: (lambda: nn.Conv1d(4, 6, 3, padding=1), lambda: torch.randn(3, 4, 9)),
    nn.Conv2d: (lambda: nn.Conv2d(4, 6, 3, stride=2), lambda: torch.randn(3, 4, 9, 9)),
    nn.Conv3d: (
        lambda: nn.Conv3d(2, 4, 3, padding=1, groups=2),
        lambda: torch.randn(2, 2, 4, 4, 4),
    ),
    nn.ConvTranspose1d: (
        lambda: nn.ConvTranspose1d(4, 6, 3, stride=2),
        lambda: torch.randn(3, 4, 5),
    ),
    nn.ConvTranspose2d: (
        lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2),
        lambda: torch.randn(3, 4, 5, 5),
    ),
    nn.ConvTranspose3d: (
        lambda: nn.ConvTranspose3d(2, 4, 2, stride=2, groups=2),
        lambda: torch.randn(2, 2, 3, 3, 3),
    ),
    nn.MultiheadAttention: (lambda: nn.MultiheadAttention(8, 2), lambda: torch.randn(5, 3, 8)),
    nn.LSTM: (lambda: nn.LSTM(4, 6, bidirectional=True), lambda: torch.randn(4, 3, 4)),
    nn.GRU: (lambda: nn.GRU(4, 6, batch_first=True), lambda: torch.randn(3, 5, 4)),
    nn.RNN: (lambda: nn.RNN(4, 6, nonlinearity="relu"), lambda: torch.randn(5, 3, 4)),
    nn.LSTMCell: (lambda: nn.LSTMCell(4, 6), lambda: torch.randn(3, 4)),
    nn.GRUCell: (lambda: nn.GRUCell(4, 6), lambda: torch.randn(3, 4)),
    nn.RNNCell: (lambda: nn.RNNCell(4, 6), lambda: torch.randn(3, 4)),
}


def _run(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's main output for ``x`` (self-attention; a recurrent layer's output sequence;
    a cell's step from a non-zero state, so that its hidden-to-hidden matrix is read)."""
    if isinstance(layer, nn.MultiheadAttention):
        return layer(x, x, x)[0]
    if isinstance(layer, nn.RNNCellBase):
        h = torch.full((x.shape[0], layer.hidden_size), 0.5, dtype=x.dtype)
        out = layer(x, (h, h) if isinstance(layer, nn.LSTMCell) else h)
    else:
        out = layer(x)
    return out[0] if isinstance(out, tuple) else out


def test_every_mapped_type_has_a_case():
    assert set(aimc.DEFAULT_ANALOG_MODULE_MAPPING) == set(_CASES)


@pytest.mark.parametrize("digital_type", list(aimc.DEFAULT_ANALOG_MODULE_MAPPING))
@pytest.mark.parametrize("device", ["pcm", "rram"])
def test_layer_contract(digital_type, device):
    make, make_x = _CASES[digital_type]
    torch.manual_seed(0)
    digital, x = make(), make_x()
    analog_type = aimc.DEFAULT_ANALOG_MODULE_MAPPING[digital_type]
    cfg = aimc.AnalogConfig(
        device=device,
        tile=aimc.TileConfig(16, 16),
        training=aimc.TrainingConfig(hardware_aware=True),
    )
    layer = analog_type.from_float(digital, cfg)
    assert isinstance(layer, digital_type)  # a drop-in: torch attributes and type kept
    # eval: right shape, finite
    y = _run(layer.eval(), x)
    assert y.shape == _run(digital, x).shape and torch.isfinite(y).all()
    # train: gradients reach every weight
    _run(layer.train(), x).sum().backward()
    for name, p in layer.named_parameters():
        if name.rsplit(".", 1)[-1].startswith("weight") or name.endswith("proj_weight"):
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    # state_dict round trip (weights_only load)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    fresh = analog_type.from_float(digital, cfg)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    for key, value in layer.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # to_float round trip keeps the digital layer exactly
    back = layer.to_float()
    assert type(back) is digital_type
    torch.testing.assert_close(_run(back, x), _run(digital, x), rtol=0, atol=0)
    # dtype moves
    y64 = _run(layer.double().eval(), x.double())
    assert y64.dtype == torch.float64 and torch.isfinite(y64).all()
    # a readable repr with the tile grid and device
    assert "tiles=" in repr(layer) and f"device={device}" in repr(layer)
