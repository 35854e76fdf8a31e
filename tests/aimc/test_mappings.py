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
}


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
    y = layer.eval()(x)
    assert y.shape == digital(x).shape and torch.isfinite(y).all()
    # train: gradients reach the weight
    layer.train()(x).sum().backward()
    assert layer.weight.grad is not None and float(layer.weight.grad.abs().sum()) > 0
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
    torch.testing.assert_close(back(x), digital(x), rtol=0, atol=0)
    # dtype moves
    y64 = layer.double().eval()(x.double())
    assert y64.dtype == torch.float64 and torch.isfinite(y64).all()
    # a readable repr with the tile grid and device
    assert "tiles=" in repr(layer) and f"device={device}" in repr(layer)
