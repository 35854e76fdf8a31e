"""AnalogConv3d and the transposed convolutions: torch's numerics when ideal, tiles read."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import aimc
from aimc.nn import (
    AnalogConv3d,
    AnalogConvTranspose1d,
    AnalogConvTranspose2d,
    AnalogConvTranspose3d,
)

IDEAL = aimc.AnalogConfig.ideal()
COARSE = aimc.AnalogConfig(device="ideal", dac=aimc.DACConfig(bits=2), adc=aimc.ADCConfig(bits=2))
# ideal tiles rescale weights to conductances and back: a few float32 ulps per product
TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 3},
        {"kernel_size": (2, 3, 1), "stride": (2, 1, 2), "padding": 1, "bias": False},
        {"kernel_size": 3, "padding": "same", "dilation": 2, "groups": 2},
        {"kernel_size": 3, "padding": 1, "padding_mode": "reflect"},
        {"kernel_size": 2, "padding": (1, 0, 1), "padding_mode": "circular", "groups": 2},
        {"kernel_size": 3, "padding": 2, "padding_mode": "replicate", "stride": 2},
    ],
    ids=str,
)
def test_conv3d_ideal_equals_torch(kw):
    torch.manual_seed(0)
    digital = nn.Conv3d(4, 6, **kw).eval()
    analog = AnalogConv3d.from_digital(digital, IDEAL).eval()
    x = torch.randn(2, 4, 7, 6, 8)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), digital(x), **TOL)
        torch.testing.assert_close(analog(x[0]), digital(x[0]), **TOL)


@pytest.mark.parametrize(
    "cls,analog_cls,kw",
    [
        (nn.ConvTranspose1d, AnalogConvTranspose1d, {"kernel_size": 3, "stride": 2}),
        (nn.ConvTranspose1d, AnalogConvTranspose1d, {"kernel_size": 4, "padding": 2, "groups": 2}),
        (nn.ConvTranspose2d, AnalogConvTranspose2d, {"kernel_size": 3, "stride": 2, "padding": 1}),
        (
            nn.ConvTranspose2d,
            AnalogConvTranspose2d,
            {"kernel_size": (2, 3), "stride": (3, 2), "output_padding": (2, 1), "bias": False},
        ),
        (
            nn.ConvTranspose2d,
            AnalogConvTranspose2d,
            {"kernel_size": 3, "dilation": 2, "output_padding": 1, "groups": 2},
        ),
        (nn.ConvTranspose2d, AnalogConvTranspose2d, {"kernel_size": 1, "padding": 1}),
        (nn.ConvTranspose3d, AnalogConvTranspose3d, {"kernel_size": 3, "stride": 2}),
        (
            nn.ConvTranspose3d,
            AnalogConvTranspose3d,
            {
                "kernel_size": (2, 3, 2),
                "stride": (2, 1, 3),
                "padding": (1, 0, 2),
                "output_padding": (1, 0, 2),
                "dilation": (1, 2, 1),
                "groups": 2,
                "bias": False,
            },
        ),
        (nn.ConvTranspose3d, AnalogConvTranspose3d, {"kernel_size": 1, "padding": 1}),
    ],
    ids=str,
)
def test_transposed_conv_ideal_equals_torch(cls, analog_cls, kw):
    torch.manual_seed(0)
    digital = cls(4, 6, **kw).eval()
    analog = analog_cls.from_digital(digital, IDEAL).eval()
    spatial = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}[cls]
    x = torch.randn(2, 4, *([5] * spatial))
    with torch.no_grad():
        torch.testing.assert_close(analog(x), digital(x), **TOL)
        torch.testing.assert_close(analog(x[0]), digital(x[0]), **TOL)


def test_transposed_conv_takes_torchs_output_size():
    torch.manual_seed(0)
    digital = nn.ConvTranspose2d(4, 6, 3, stride=2).eval()
    analog = AnalogConvTranspose2d.from_digital(digital, IDEAL).eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        out = analog(x, output_size=[12, 12])
        torch.testing.assert_close(out, digital(x, output_size=[12, 12]), **TOL)
    assert out.shape[-2:] == (12, 12)
    digital = nn.ConvTranspose3d(4, 6, 3, stride=2).eval()
    analog = AnalogConvTranspose3d.from_digital(digital, IDEAL).eval()
    x = torch.randn(1, 4, 3, 4, 5)
    with torch.no_grad():
        out = analog(x, output_size=[8, 10, 11])
        torch.testing.assert_close(out, digital(x, output_size=[8, 10, 11]), **TOL)
    assert out.shape[-3:] == (8, 10, 11)


@pytest.mark.parametrize(
    "make,x",
    [
        (lambda cfg: AnalogConv3d(4, 6, 3, config=cfg), torch.randn(2, 4, 5, 5, 5)),
        (lambda cfg: AnalogConvTranspose2d(4, 6, 3, 2, config=cfg), torch.randn(2, 4, 5, 5)),
        (lambda cfg: AnalogConvTranspose3d(4, 6, 2, 2, config=cfg), torch.randn(2, 4, 3, 3, 3)),
    ],
)
def test_coarse_converters_change_the_output_and_tiles_follow_the_weight(make, x):
    torch.manual_seed(0)
    coarse, ideal = make(COARSE).eval(), make(IDEAL).eval()
    ideal.load_state_dict(coarse.state_dict(), strict=False)
    digital = coarse.to_digital().eval()
    with torch.no_grad():
        assert (coarse(x) - digital(x)).abs().max() > 0.05
        torch.testing.assert_close(ideal(x), digital(x), **TOL)
        ideal.weight.mul_(-1.0)  # an in-place edit of torch's parameter reaches the tiles
        digital.weight.mul_(-1.0)
        torch.testing.assert_close(ideal(x), digital(x), **TOL)


def test_groups_get_their_own_tiles_viewing_torchs_weight():
    conv = AnalogConv3d(4, 6, 3, groups=2, config=IDEAL)
    assert [n for n, _ in conv.tile_layers()] == ["kernel_g0", "kernel_g1"]
    assert conv.kernel_g1.weight.shape == (3, 2 * 27)
    assert conv.kernel_g1.weight.data_ptr() == conv.weight[3:].data_ptr()
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias"]
    up = AnalogConvTranspose2d(4, 6, 3, config=IDEAL)
    assert [n for n, _ in up.tile_layers()] == ["kernel"] and up.kernel.in_features == 4


def test_state_dict_round_trip_gradients_and_dtype():
    torch.manual_seed(0)
    cfg = aimc.AnalogConfig(
        device="ideal", adc=aimc.ADCConfig(bits=4), tile=aimc.TileConfig(16, 16)
    )
    layer = AnalogConvTranspose2d(4, 6, 3, stride=2, config=cfg).eval()
    x = torch.randn(2, 4, 5, 5)
    y = layer(x)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    fresh = AnalogConvTranspose2d(4, 6, 3, stride=2, config=cfg).eval()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(fresh(x), y, rtol=0, atol=0)
    layer3 = AnalogConvTranspose3d(4, 6, 2, stride=2, groups=2, config=cfg).eval()
    layer3.drift_to(3600.0)
    x3 = torch.randn(2, 4, 3, 2, 3)
    y3 = layer3(x3)
    buf = io.BytesIO()
    torch.save(layer3.state_dict(), buf)
    buf.seek(0)
    fresh3 = AnalogConvTranspose3d(4, 6, 2, stride=2, groups=2, config=cfg).eval()
    fresh3.load_state_dict(torch.load(buf, weights_only=True))
    for key, value in layer3.state_dict().items():
        assert torch.equal(fresh3.state_dict()[key], value), key
    torch.testing.assert_close(fresh3(x3), y3, rtol=0, atol=0)
    hw = aimc.AnalogConfig(training=aimc.TrainingConfig(hardware_aware=True))
    conv = AnalogConv3d(2, 4, 3, config=hw).train()
    conv(torch.randn(2, 2, 4, 4, 4)).sum().backward()
    assert float(conv.weight.grad.abs().sum()) > 0
    y64 = conv.double().eval()(torch.randn(1, 2, 4, 4, 4, dtype=torch.float64))
    assert y64.dtype == torch.float64 and bool(torch.isfinite(y64).all())


def test_cost_report_counts_one_mvm_per_output_voxel_or_input_pixel():
    model = nn.Sequential(nn.Conv3d(2, 4, 3), nn.Flatten(1, 2), nn.ConvTranspose2d(12, 2, 3, 2))
    analog = aimc.convert_to_analog(model, aimc.AnalogConfig())
    report = aimc.estimate_cost(analog, torch.randn(1, 2, 5, 5, 5), technology="isaac")
    rows = {layer.name: layer for layer in report.layers}
    assert rows["0.kernel"].counts.mvms == 3 * 3 * 3  # output voxels
    assert rows["2.kernel"].counts.mvms == 3 * 3  # input pixels of the transposed conv
    up = aimc.convert_to_analog(nn.Sequential(nn.ConvTranspose3d(2, 4, 3, 2, groups=2)))
    report = aimc.estimate_cost(up, torch.randn(1, 2, 2, 3, 4), technology="isaac")
    rows = {layer.name: layer for layer in report.layers}
    assert rows["0.kernel_g1"].counts.mvms == 2 * 3 * 4  # input voxels, per group
    assert rows["0.kernel_g1"].energy_j > 0
