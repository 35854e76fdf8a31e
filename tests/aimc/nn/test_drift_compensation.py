"""Drift compensation and finite on/off ratios in the layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import aimc
import device_models


def _layer(device, compensation, mode="global", seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(128, 64)
    cfg = aimc.AnalogConfig(
        device=device,
        drift_compensation=compensation,
        drift_compensation_mode=mode,
        tile=aimc.TileConfig(128, 128),
        seed=seed,
    )
    layer = aimc.AnalogLinear.from_digital(lin, cfg).eval()
    return lin, layer


def _scale(y: torch.Tensor, ref: torch.Tensor) -> float:
    """Least-squares gain of y against ref (the output scale)."""
    return float((y * ref).sum() / (ref * ref).sum())


@pytest.mark.parametrize("mode", ["global", "column"])
def test_pcm_output_scale_after_one_day_within_5_percent_with_compensation(mode):
    x = torch.randn(256, 128)
    lin, comp = _layer("pcm", True, mode)
    _, raw = _layer("pcm", False)
    aimc.calibrate(comp, [x])
    aimc.calibrate(raw, [x])
    y0 = comp(x).detach() - lin.bias.detach()
    aimc.drift(comp, 86400.0)
    aimc.drift(raw, 86400.0)
    with torch.no_grad():
        s_comp = _scale(comp(x) - lin.bias, y0)
        s_raw = _scale(raw(x) - lin.bias, y0)
    assert abs(s_comp - 1.0) < 0.05, s_comp
    # PCM drift with nu ~ 0.05 over (86400 + 20) / 20 s loses about 1 - 4320^-0.05 = 34 % of G
    assert s_raw < 0.85, s_raw


def test_no_compensation_for_devices_that_do_not_drift():
    _, layer = _layer("ideal", True)
    assert layer._compensation(86400.0) is None


@pytest.mark.parametrize("encoding", ["differential", "offset"])
def test_finite_on_off_ratio_maps_exactly(encoding):
    torch.manual_seed(0)
    lin = nn.Linear(40, 9)
    dev = device_models.Ideal(g_max=25.0, g_min=2.0)  # on/off 12.5 (NeuroSim's PCM row)
    cfg = aimc.AnalogConfig.ideal(device=dev, mapping=aimc.MappingConfig(encoding=encoding))
    layer = aimc.AnalogLinear.from_digital(lin, cfg).eval()
    g = layer.device_state()["g"]
    assert float(g.min()) >= 2.0 and float(g.max()) <= 25.0
    x = torch.randn(5, 40)
    torch.testing.assert_close(layer(x), lin(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["global", "column"])
@pytest.mark.parametrize("encoding", ["differential", "offset"])
def test_training_and_eval_compensate_drift_by_one_rule(mode, encoding):
    """Without read noise and converters, the gain the eval forward measures with its reference
    read equals the one hardware-aware training computes from the expected tiles."""
    cfg = aimc.AnalogConfig(
        device=device_models.PCM(read_noise_scale=0.0),
        dac=aimc.DACConfig(bits=None),
        adc=aimc.ADCConfig(bits=None),
        mapping=aimc.MappingConfig(encoding=encoding),
        drift_compensation_mode=mode,
        tile=aimc.TileConfig(16, 16),
    )
    layer = aimc.AnalogLinear(40, 12, config=cfg).eval()
    t = 86400.0
    eval_gain = layer._compensation(t)
    m0, _ = layer.crossbar.read_mean_std(0.0)
    mt, _ = layer.crossbar.read_mean_std(t)
    train_gain = layer.train_drift_gain(m0, mt, layer.crossbar.weight_scale)
    torch.testing.assert_close(torch.as_tensor(train_gain), torch.as_tensor(eval_gain))
    assert float(torch.as_tensor(eval_gain).mean()) > 1.05  # PCM lost conductance in a day


def test_an_uncalibrated_adc_takes_its_range_from_the_data_not_the_reference_read():
    """The first batch sets an uncalibrated ADC's full scale; the compensation's reference
    read (scaled to half the full scale) comes after it and never sets or records a range."""
    torch.manual_seed(0)
    layer = aimc.AnalogLinear(64, 8, config=aimc.AnalogConfig(device="pcm")).eval()
    x = torch.randn(16, 64) * 3
    with torch.no_grad():
        layer(x)
    xn = layer.dac.normalize(x).unsqueeze(1)
    peak = aimc.functional.tile_matmul(xn, layer.crossbar.read(0.0)).abs().max()
    assert float(layer.adc.full_scale) >= 0.9 * float(peak)
    with aimc.track_adc_saturation(layer) as rates:
        with torch.no_grad():
            layer(x)
    assert rates[""] < 0.01
