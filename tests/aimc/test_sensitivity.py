"""aimc.sensitivity: per-layer accuracy drop (only that layer analog) and cost shares, ranked."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import aimc


def _model_and_data(n=200):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 5)).eval()
    x = torch.randn(n, 16)
    with torch.no_grad():
        y = model(x).argmax(dim=1)  # labels the digital model gets right: accuracy 1
    return model, x, y


def test_ideal_hardware_drops_nothing():
    model, x, y = _model_and_data()
    report = aimc.sensitivity(model, (x, y), aimc.AnalogConfig.ideal(), repeats=1, technology=None)
    assert report.digital_accuracy == 1.0
    assert {layer.name for layer in report.layers} == {"0", "2"}
    for layer in report.layers:
        # float tolerance may flip at most a near-tie or two of 200 argmaxes
        assert abs(layer.drop) <= 2 / len(y), layer
        assert layer.drop_low_bits is None  # an ideal ADC has no bits to lose


def test_the_layer_with_coarse_converters_ranks_first_and_shares_add_up():
    model, x, y = _model_and_data()
    base = aimc.AnalogConfig(device="ideal", drift_compensation=False)
    coarse = dataclasses.replace(base, adc=aimc.ADCConfig(bits=3))
    report = aimc.sensitivity(
        model,
        [(x[:100], y[:100]), (x[100:], y[100:])],
        base,
        layer_configs={"2": coarse},
        repeats=2,
        adc_bits_drop=2,
        technology="isaac",
    )
    assert report.ranking == ["2", "0"] and report.most_sensitive(1) == ["2"]
    first, second = report.layers
    assert first.drop > 0.05 and first.adc_bits == 3
    assert first.drop_low_bits >= first.drop - 0.02  # 1-bit ADC: no better than 3 bits
    assert second.adc_bits == 8 and abs(second.drop) < 0.05
    shares = [layer.energy_share for layer in report.layers]
    assert all(0 < s < 1 for s in shares) and sum(shares) <= 1 + 1e-9
    assert sum(layer.area_share for layer in report.layers) <= 1 + 1e-9
    text = report.table()
    assert text.splitlines()[2].split()[:2] == ["1", "2"]  # rank 1 is layer "2"
    assert report.to_dict()["ranking"] == ["2", "0"]
    fig = report.plot()
    assert len(fig.axes) == 2


def test_bad_arguments_are_named():
    model, x, y = _model_and_data(20)
    with pytest.raises(ValueError, match="layers \\['fc9'\\] are not convertible"):
        aimc.sensitivity(model, (x, y), layers=["fc9"], technology=None)
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        aimc.sensitivity(model, (x, y), repeats=0, technology=None)
    with pytest.raises(ValueError, match="data is empty"):
        aimc.sensitivity(model, [], technology=None)
