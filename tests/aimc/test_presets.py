"""The published-hardware presets: the architecture each one describes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import aimc
import aimc.presets
import device_models
from aimc.cost import get_technology, peak_performance


@pytest.mark.parametrize("name", aimc.presets.names())
def test_each_preset_has_a_technology_and_is_fresh(name):
    make = getattr(aimc.presets, name)
    a, b = make(), make()
    assert isinstance(a, aimc.AnalogConfig) and a is not b and a.tile is not b.tile
    assert get_technology(name).name == name
    assert peak_performance(a, name).tops > 0


def test_isaac_architecture():
    cfg = aimc.presets.isaac()
    assert (cfg.tile.rows, cfg.tile.cols) == (128, 128)
    assert cfg.mapping.cols_per_weight == 8 and cfg.mapping.bits_per_slice == 2
    assert cfg.weights_per_tile_col == 16
    assert cfg.dac.cycles == 16 and cfg.dac.bit_serial and not cfg.dac.signed
    assert cfg.adc.bits == 8


def test_hermes_architecture():
    cfg = aimc.presets.hermes()
    assert cfg.weights_per_tile_col == 256 and cfg.tile.rows == 256
    assert cfg.dac.cycles == 1 and cfg.dac.bits == 8 and cfg.adc.bits == 8
    assert cfg.device.g_max == pytest.approx(25.0)


def test_rram22_device_range():
    # NeuroSim V1.4's default 1T1R RRAM: Ron = 100 kOhm, on/off = 17; 32 of 128 rows per read
    cfg = aimc.presets.rram22()
    assert cfg.device.g_max == pytest.approx(1e6 / 100e3)
    assert cfg.device.g_max / cfg.device.g_min == pytest.approx(17.0)
    assert cfg.tile.parallel_rows == 32 and cfg.adc.bits == 5
    assert cfg.mapping.cols_per_weight == 8  # 8-bit weights on 1-bit cells


def test_sram22_uses_the_binary_sram_cell():
    cfg = aimc.presets.sram22()
    assert isinstance(cfg.device, device_models.SRAM) and not cfg.device.drifts


def test_hermes_device_has_no_silent_fallback(monkeypatch):
    def broken(name, **kw):
        raise KeyError(name)

    monkeypatch.setattr(aimc.presets.device_models, "get", broken)
    with pytest.raises(KeyError):
        aimc.presets.hermes()


def test_overrides():
    cfg = aimc.presets.isaac(adc=aimc.ADCConfig(bits=6), seed=3)
    assert cfg.adc.bits == 6 and cfg.seed == 3 and cfg.tile.rows == 128


@pytest.mark.parametrize("name", aimc.presets.names())
def test_presets_run_a_layer(name):
    torch.manual_seed(0)
    model = aimc.convert_to_analog(nn.Sequential(nn.Linear(20, 5)), getattr(aimc.presets, name)())
    x = torch.rand(3, 20)
    y = model(x)
    assert y.shape == (3, 5) and torch.isfinite(y).all()
