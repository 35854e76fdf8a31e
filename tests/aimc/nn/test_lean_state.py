"""The layers' lean device state (compact state dtypes, one cached read per drift time),
integer bit planes and half-precision models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import aimc
import device_models
from device_models.converters import bit_planes


@pytest.mark.parametrize("signed", [True, False])
def test_bit_planes_rebuild_the_codes(signed: bool):
    gen = torch.Generator().manual_seed(0)
    lo = -255 if signed else 0
    codes = torch.randint(lo, 256, (7, 33), generator=gen).float()
    planes = bit_planes(codes, 8)
    assert planes.shape == (8, 7, 33)
    assert set(planes.unique().tolist()) <= {-1.0, 0.0, 1.0}
    weights = (2.0 ** torch.arange(8.0)).view(-1, 1, 1)
    torch.testing.assert_close((planes * weights).sum(0), codes, rtol=0, atol=0)
    assert not bool(torch.signbit(planes[planes == 0]).any())  # no negative zeros


def _held_bytes(layer: nn.Module) -> int:
    tensors = list(layer.parameters()) + list(layer.buffers())
    for value in layer.crossbar._cache.values():
        tensors += [v for v in (value if isinstance(value, tuple) else (value,))]
    ptrs = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for t in tensors
        if isinstance(t, torch.Tensor)
    }
    return sum(ptrs.values())


def test_a_drifted_pcm_layer_holds_one_read_and_compact_state():
    # weights (4 bytes), G+/G- (8), half-precision drift exponents (4) and one cached read of
    # the tiles at the current drift time (4): 20 bytes per weight, nothing per earlier read
    torch.manual_seed(2)
    lin = nn.Linear(256, 128)
    layer = aimc.convert_to_analog(lin, aimc.AnalogConfig(tile=aimc.TileConfig(128, 128))).eval()
    x = torch.randn(4, 256)
    aimc.calibrate(layer, [x])
    aimc.drift(layer, 86400.0)
    with torch.no_grad():
        layer(x)
    assert layer.device_state()["nu"].dtype == torch.float16
    keys = [k[0] for k in layer.crossbar._cache if isinstance(k[0], tuple)]
    assert [k for k in keys if k[0] in ("read", "mean")] == [("read", 86400.0)]
    assert _held_bytes(layer) / lin.weight.numel() < 20.5


def test_half_precision_drift_exponent_moves_conductance_within_its_rounding_bound():
    dev = device_models.PCM()
    gen = torch.Generator().manual_seed(3)
    g_target = torch.rand(4000, generator=gen) * dev.g_max
    state = dev.program(g_target, generator=gen)
    assert state["nu"].dtype == torch.float16
    t = 10 * 365 * 86400.0
    g_t = dev.conductance(state, t)
    log_t = math.log((t + dev.t0) / dev.t0)
    torch.testing.assert_close(g_t, state["g"] * torch.exp(-state["nu"].float() * log_t))
    # float16 rounds nu by at most half its step (2**-11 relative): after ten years that moves
    # G by under a twentieth of what the smallest device-to-device spread of nu (0.008) does
    nu = state["nu"].float()
    shift = torch.exp(nu * 2.0**-11 * log_t) - 1.0
    assert float(shift.max()) < 0.05 * (math.exp(0.008 * log_t) - 1.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_keep_their_accuracy(dtype):
    # the analog error against the digital model, over device draws, is that of float32
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    x = torch.randn(32, 128)
    ref = net(x).detach()

    def error(dt: torch.dtype, seed: int) -> float:
        model = aimc.convert_to_analog(net.to(dt), aimc.AnalogConfig(seed=seed)).eval()
        net.float()
        aimc.calibrate(model, [x.to(dt)])
        aimc.drift(model, 3600.0)
        with torch.no_grad():
            y = model(x.to(dt)).float()
        assert model[0].device_state()["g"].dtype == dt
        return float((y - ref).pow(2).mean().sqrt() / ref.std())

    e32 = [error(torch.float32, s) for s in range(3)]
    e16 = [error(dtype, s) for s in range(3)]
    # per draw the error is about 0.12 with a spread of about 0.01 between draws
    assert abs(sum(e16) - sum(e32)) < 0.25 * sum(e32)
