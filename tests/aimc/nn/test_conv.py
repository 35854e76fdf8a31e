from __future__ import annotations

import pytest
import torch
from hypothesis import given
from torch import nn

import aimc
from aimc.nn import AnalogConv1d, AnalogConv2d
from tests.strategies import conv2d_args, tile_cols, tile_rows


@given(args=conv2d_args(), rows=tile_rows, cols=tile_cols)
def test_conv2d_ideal_equals_digital(args, rows, cols):
    kwargs, (h, w) = args
    torch.manual_seed(h * 10 + w)
    conv = nn.Conv2d(**kwargs)
    cfg = aimc.AnalogConfig.ideal(tile=aimc.TileConfig(rows, cols))
    layer = AnalogConv2d.from_digital(conv, cfg).eval()
    x = torch.randn(2, kwargs["in_channels"], h, w)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)


@given(args=conv2d_args(), rows=tile_rows)
def test_conv1d_ideal_equals_digital(args, rows):
    kwargs, (h, w) = args
    for key in ("kernel_size", "stride", "padding", "dilation"):
        kwargs[key] = kwargs[key][1]
    torch.manual_seed(w)
    conv = nn.Conv1d(**kwargs)
    layer = AnalogConv1d.from_digital(conv, aimc.AnalogConfig.ideal(tile=aimc.TileConfig(rows, 8)))
    x = torch.randn(3, kwargs["in_channels"], w)
    torch.testing.assert_close(layer.eval()(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding(padding):
    conv = nn.Conv2d(4, 6, (3, 2), padding=padding)
    layer = AnalogConv2d.from_digital(conv, aimc.AnalogConfig.ideal()).eval()
    x = torch.randn(2, 4, 7, 6)
    torch.testing.assert_close(layer(x), conv(x))


@pytest.mark.parametrize(
    "rows, alignment, lin_rows",
    [
        (9, "channel", 9),
        (18, "channel", 18),
        (10, "channel", 9),
        (20, "channel", 18),
        (10, "dense", 10),
        (16, "dense", 16),
    ],
)
def test_quantized_paths_agree(rows, alignment, lin_rows):
    """Both conv paths (grouped conv when whole channels fill a tile, else unfold) equal the
    same tiles run as an explicit unfold + AnalogLinear, ADC quantization included."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 5, 3, padding=1)
    x = torch.randn(2, 4, 6, 6)

    def cfg(r, align):
        return aimc.AnalogConfig(
            device="ideal",
            tile=aimc.TileConfig(r, 16),
            dac=aimc.DACConfig(bits=6),
            adc=aimc.ADCConfig(bits=6, range_mode="max", range_fraction=0.25),
            mapping=aimc.MappingConfig(conv_alignment=align),
        )

    layer = AnalogConv2d.from_digital(conv, cfg(rows, alignment)).eval()
    assert layer.geometry.row_block == lin_rows
    layer.dac.range.fill_(3.0)
    y = layer(x)
    lin = aimc.AnalogLinear(36, 5, config=cfg(lin_rows, "dense")).eval()
    with torch.no_grad():
        lin.weight.copy_(conv.weight.reshape(5, 36))
        lin.bias.copy_(conv.bias)
    lin.dac.range.fill_(3.0)
    cols = nn.functional.unfold(x, 3, padding=1).transpose(1, 2)  # [B, L, 36]
    y_lin = lin(cols).transpose(1, 2).reshape(2, 5, 6, 6)
    torch.testing.assert_close(y, y_lin)


def test_channel_aligned_tiles():
    conv = nn.Conv2d(64, 8, 3)
    layer = AnalogConv2d.from_digital(conv, aimc.AnalogConfig(tile=aimc.TileConfig(256, 256)))
    g = layer.geometry
    assert (g.row_block, g.n_row_tiles) == (28 * 9, 3)  # 28 whole channels per 256-row tile
    dense = aimc.AnalogConfig(mapping=aimc.MappingConfig(conv_alignment="dense"))
    assert AnalogConv2d.from_digital(conv, dense).geometry.row_block == 256


def test_depthwise_groups_take_their_own_tiles():
    conv = nn.Conv2d(8, 8, 3, groups=8)
    layer = AnalogConv2d.from_digital(conv, aimc.AnalogConfig.ideal())
    assert layer.geometry.groups == 8 and layer.geometry.n_tiles == 8
    assert layer.geometry.in_rows == 9


def test_unbatched_and_bad_inputs():
    conv = nn.Conv2d(3, 4, 3)
    layer = AnalogConv2d.from_digital(conv, aimc.AnalogConfig.ideal()).eval()
    x = torch.randn(3, 8, 8)
    torch.testing.assert_close(layer(x), conv(x))
    with pytest.raises(ValueError, match="in_channels=3"):
        layer(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        layer(torch.randn(8, 8))
    with pytest.raises(ValueError, match="NaN"):
        layer(torch.full((1, 3, 8, 8), float("nan")))


def test_conv_to_digital_round_trip_and_repr():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="circular")
    layer = AnalogConv2d.from_digital(conv, aimc.AnalogConfig())
    back = layer.to_digital()
    assert type(back) is nn.Conv2d and back.padding_mode == "circular"
    torch.testing.assert_close(back.weight, conv.weight, rtol=0, atol=0)
    assert "tiles=1x1" in repr(layer) and "stride=(2, 2)" in repr(layer)


def test_hardware_aware_conv_gradients():
    conv = nn.Conv2d(3, 4, 3)
    cfg = aimc.AnalogConfig(
        device="ideal",
        training=aimc.TrainingConfig(hardware_aware=True),
        tile=aimc.TileConfig(9, 8),
    )
    layer = AnalogConv2d.from_digital(conv, cfg).train()
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    layer(x).sum().backward()
    assert float(layer.weight.grad.abs().sum()) > 0 and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("align", ["channel", "dense"])
def test_conv_noise_read_without_gradients_matches_the_general_path(normal_sampler, align):
    # "dense" tiles run as one batched matmul: its inference read with ADC noise takes the fused
    # noise-first read; "channel" tiles run one conv each (the general path). Both must give
    # what the general path gives for an input that needs gradients, from the same draws.
    import copy

    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1)
    cfg = aimc.AnalogConfig(
        device="ideal",
        tile=aimc.TileConfig(20, 64),
        adc=aimc.ADCConfig(bits=6, noise=0.05),
        mapping=aimc.MappingConfig(conv_alignment=align),
        seed=4,
    )
    layer = AnalogConv2d.from_digital(conv, cfg).eval()
    x = torch.randn(4, 6, 7, 7)
    aimc.calibrate(layer, [x])
    a, b = copy.deepcopy(layer), copy.deepcopy(layer)
    with torch.no_grad():
        y_a = a(x)
    y_b = b(x.clone().requires_grad_(True)).detach()
    off = (y_a - y_b).abs() > 1e-5 * y_b.abs().max()
    assert float(off.float().mean()) < 1e-3
    with torch.no_grad():
        assert float((y_a - layer.to_digital()(x)).abs().mean()) > 0  # the noise is there
