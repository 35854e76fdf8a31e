"""The layers on CUDA (skipped without a GPU): same results as the digital layers and the CPU."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import aimc

pytestmark = pytest.mark.gpu


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 8, 3, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 10),
    ).eval()


def test_ideal_on_cuda_equals_digital():
    model = _model().cuda()
    analog = aimc.convert_to_analog(model, aimc.AnalogConfig.ideal(tile=aimc.TileConfig(64, 64)))
    x = torch.randn(4, 3, 8, 8, device="cuda")
    torch.testing.assert_close(analog(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", ["pcm", "rram"])
def test_noisy_devices_run_on_cuda_deterministically(device):
    x = torch.randn(4, 3, 8, 8, device="cuda")
    outs = []
    for _ in range(2):
        analog = aimc.convert_to_analog(_model().cuda(), aimc.AnalogConfig(device=device))
        aimc.calibrate(analog, [x])
        aimc.program(analog, seed=3)
        aimc.drift(analog, 86400.0)
        outs.append(analog(x))
    assert outs[0].is_cuda and torch.isfinite(outs[0]).all()
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_state_dict_moves_between_cpu_and_cuda():
    analog = aimc.convert_to_analog(_model(), aimc.AnalogConfig(device="pcm"))
    x = torch.randn(2, 3, 8, 8)
    aimc.calibrate(analog, [x])
    buf = io.BytesIO()
    torch.save(analog.state_dict(), buf)
    buf.seek(0)
    cuda_model = aimc.convert_to_analog(_model(), aimc.AnalogConfig(device="pcm")).cuda()
    cuda_model.load_state_dict(torch.load(buf, weights_only=True, map_location="cuda"))
    for key, value in analog.state_dict().items():
        assert torch.equal(cuda_model.state_dict()[key].cpu(), value), key
    y = cuda_model(x.cuda())
    assert y.shape == (2, 10) and torch.isfinite(y).all()


def test_cost_estimate_on_cuda_matches_cpu():
    x = torch.rand(1, 3, 8, 8)
    cpu = aimc.convert_to_analog(_model(), aimc.AnalogConfig.ideal())
    gpu = aimc.convert_to_analog(_model(), aimc.AnalogConfig.ideal()).cuda()
    r_cpu = aimc.estimate_cost(cpu, x, technology="hermes")
    r_gpu = aimc.estimate_cost(gpu, x.cuda(), technology="hermes")
    assert r_cpu.total.counts == r_gpu.total.counts
    assert r_gpu.total.energy_j == pytest.approx(r_cpu.total.energy_j, rel=1e-5)


@pytest.mark.parametrize(
    "config",
    [aimc.AnalogConfig(), aimc.presets.rram22(adc=aimc.ADCConfig(bits=4))],
    ids=["pcm", "rram22"],
)
def test_cuda_forward_never_waits_for_the_device(config):
    # after calibration and the first read at a drift time, an eval forward issues no host
    # synchronisation (torch raises on any synchronising call in "error" mode)
    analog = aimc.convert_to_analog(_model().cuda(), config).eval()
    x = torch.rand(4, 3, 8, 8, device="cuda")
    aimc.calibrate(analog, [x])
    aimc.drift(analog, 3600.0)
    with torch.no_grad():
        analog(x)
        torch.cuda.set_sync_debug_mode("error")
        try:
            y = analog(x)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert y.device.type == "cuda"
    for _, layer in aimc.analog_layers(analog):
        assert all(t.is_cuda for t in layer.device_state().values())
