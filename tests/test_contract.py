"""The public API contract (README and docs), called exactly as documented."""

from __future__ import annotations

import torch
from torch import nn

import aimc
import device_models
from aimc.nn import AnalogConv1d, AnalogConv2d, AnalogLinear


def test_design_api():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
    )
    example_input = torch.rand(1, 1, 8, 8)
    cfg = aimc.AnalogConfig(
        device=device_models.PCM(),
        tile=aimc.TileConfig(rows=256, cols=256),
        dac=aimc.DACConfig(bits=8),
        adc=aimc.ADCConfig(bits=8),
        mapping=aimc.MappingConfig(),
        drift_compensation=True,
        seed=0,
    )
    ideal = aimc.AnalogConfig.ideal()
    assert ideal.device.is_ideal
    analog = aimc.convert_to_analog(model, cfg)
    layer = AnalogLinear(128, 64, bias=True, config=cfg)
    layer = AnalogLinear.from_digital(torch.nn.Linear(128, 64), cfg)
    assert isinstance(layer, AnalogLinear)
    assert AnalogConv1d is aimc.AnalogConv1d and AnalogConv2d is aimc.AnalogConv2d
    aimc.program(analog, seed=1)
    aimc.drift(analog, t=86400.0)
    names = [name for name, _ in aimc.analog_layers(analog)]
    assert names == ["0", "3", "5"]
    mapping = aimc.map_model(analog)
    assert mapping.table()
    report = aimc.estimate_cost(analog, example_input, technology="isaac")
    total = report.total
    for value in (total.energy_j, total.latency_s, total.area_mm2, total.tops_per_w):
        assert value > 0
    assert len(report.layers) >= 3 and report.to_dict() and report.table()


def test_device_models_api():
    dev = device_models.get("pcm")
    assert "pcm" in device_models.names()
    dev = device_models.PCM(g_max=25.0)
    gen = torch.Generator().manual_seed(0)
    g_target = torch.rand(1000) * dev.g_max
    state = dev.program(g_target, generator=gen)
    g_t = dev.conductance(state, 3600.0)
    g_r = dev.read(state, 3600.0, generator=gen)
    assert state["g"].shape == g_t.shape == g_r.shape == (1000,)
    assert float(g_t.mean()) < float(state["g"].mean())  # drift lowers the conductance
    assert (dev.g_max, dev.g_min) == (25.0, 0.0)
