"""The layer's read path reproduces the device model's read-noise statistics."""

from __future__ import annotations

import math

import pytest
import torch

import aimc
import device_models


@pytest.mark.statistical
def test_pcm_read_noise_in_layer_outputs_matches_model():
    torch.manual_seed(0)
    in_f, out_f, n_fwd = 4, 256, 400
    dev = device_models.PCM(prog_noise_scale=0.0)  # isolate read noise (drift is deterministic)
    # a fresh read per forward, so the forwards sample the read-noise distribution
    cfg = aimc.AnalogConfig.ideal(device=dev, tile=aimc.TileConfig(16, 512), read_noise="forward")
    layer = aimc.AnalogLinear(in_f, out_f, bias=False, config=cfg).eval()
    t = 3600.0
    layer.drift_to(t)
    x = torch.zeros(1, in_f)
    x[0, 1] = 1.0  # one row: column n reads the pair (G+, G-) of weight (n, 1)
    with torch.no_grad():
        ys = torch.cat([layer(x) for _ in range(n_fwd)])  # [n_fwd, out_f]
    state = layer.device_state()
    g_t = dev.conductance(state, t)
    std = dev.read_noise_std(state, t).expand_as(g_t)
    # row 1 of the only row tile; pair axis 0 holds G+ and G-
    mean_g = (g_t[0, 0, 0, 0, 1] - g_t[1, 0, 0, 0, 1]) / dev.g_max
    std_g = torch.sqrt(std[0, 0, 0, 0, 1] ** 2 + std[1, 0, 0, 0, 1] ** 2) / dev.g_max
    scale = layer.crossbar.weight_scale[0, 0, 0]
    z = (ys - mean_g * scale) / (std_g * scale)
    n = z.numel()
    # z ~ N(0, 1) per the model: its mean has standard error 1/sqrt(n) and its variance
    # sqrt(2/n); allow 5 standard errors.
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1.0) < 5 * math.sqrt(2 / n)


def test_read_noise_modes():
    torch.manual_seed(0)
    x = torch.randn(4, 16)
    outs = {}
    for mode in ("forward", "drift"):
        cfg = aimc.AnalogConfig(
            device="pcm",
            read_noise=mode,
            dac=aimc.DACConfig(bits=None),
            adc=aimc.ADCConfig(bits=None),
        )
        layer = aimc.AnalogLinear(16, 8, config=cfg).eval()
        layer.drift_to(3600.0)
        with torch.no_grad():
            outs[mode] = (layer(x), layer(x))
        layer.drift_to(86400.0)
        with torch.no_grad():
            outs[mode + "_later"] = layer(x)
    assert not torch.equal(*outs["forward"])  # a fresh read per forward
    assert torch.equal(*outs["drift"])  # one read per drift time
    assert not torch.equal(outs["drift"][0], outs["drift_later"])
    with pytest.raises(ValueError, match="AnalogConfig.read_noise"):
        aimc.AnalogConfig(read_noise="batch")
