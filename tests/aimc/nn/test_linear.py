from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import aimc
import device_models
from aimc.nn import AnalogLinear
from tests.strategies import tile_cols, tile_rows


def _digital(in_f=50, out_f=7, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Linear(in_f, out_f).to(dtype)


@given(
    in_f=st.integers(1, 70),
    out_f=st.integers(1, 20),
    rows=tile_rows,
    cols=tile_cols,
    scaling=st.sampled_from(["layer", "tile", "column"]),
    bias=st.booleans(),
)
def test_ideal_equals_digital(in_f, out_f, rows, cols, scaling, bias):
    torch.manual_seed(in_f * 100 + out_f)
    lin = nn.Linear(in_f, out_f, bias=bias)
    cfg = aimc.AnalogConfig.ideal(
        tile=aimc.TileConfig(rows, cols), mapping=aimc.MappingConfig(weight_scaling=scaling)
    )
    layer = AnalogLinear.from_digital(lin, cfg).eval()
    x = torch.randn(4, 3, in_f)
    torch.testing.assert_close(layer(x), lin(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_double_and_float(dtype):
    lin = _digital(dtype=dtype)
    layer = AnalogLinear.from_digital(lin, aimc.AnalogConfig.ideal()).eval()
    x = torch.randn(3, 50, dtype=dtype)
    y = layer(x)
    assert y.dtype == dtype
    torch.testing.assert_close(y, lin(x))
    y2 = layer.double()(x.double())
    torch.testing.assert_close(y2, lin.double()(x.double()))


def test_unbatched_input():
    lin = _digital()
    layer = AnalogLinear.from_digital(lin, aimc.AnalogConfig.ideal()).eval()
    x = torch.randn(50)
    torch.testing.assert_close(layer(x), lin(x))


@pytest.mark.parametrize(
    "mapping",
    [
        aimc.MappingConfig(encoding="offset"),
        aimc.MappingConfig(encoding="offset", weight_bits=24, slices=6),
        aimc.MappingConfig(encoding="differential", weight_bits=24, slices=4),
    ],
)
def test_offset_and_sliced_mappings_are_exact_when_ideal(mapping):
    lin = _digital()
    cfg = aimc.AnalogConfig.ideal(tile=aimc.TileConfig(16, 64), mapping=mapping)
    layer = AnalogLinear.from_digital(lin, cfg).eval()
    x = torch.randn(8, 50)
    # 24-bit weights: the quantization error per weight is below max|w| / 2^23, far below rtol.
    torch.testing.assert_close(layer(x), lin(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bits", [4, 6, 8])
@pytest.mark.parametrize("rows", [16, 50])
def test_adc_error_within_bound(bits, rows):
    lin = _digital()
    cfg = aimc.AnalogConfig.ideal(
        tile=aimc.TileConfig(rows, 64),
        dac=aimc.DACConfig(bits=None),
        adc=aimc.ADCConfig(bits=bits, range_mode="max"),
    )
    layer = AnalogLinear.from_digital(lin, cfg).eval()
    x = torch.randn(32, 50)
    y = layer(x)
    err = (y - lin(x)).abs()
    # "max" range never saturates: each row tile's partial sum is off by at most LSB/2, and it
    # is rescaled by that tile column's weight scale and the DAC range before the digital sum.
    lsb = min(rows, 50) / (2 ** (bits - 1) - 1)
    x_range = float(layer.dac.range)
    bound = (layer.crossbar.weight_scale[0, :, 0, :] * lsb / 2 * x_range).sum(0)
    assert bool((err <= bound * (1 + 1e-5) + 1e-6).all())


def test_error_falls_as_bits_rise():
    lin = _digital()
    x = torch.randn(256, 50)
    errs = []
    for bits in (3, 5, 7, 9):
        cfg = aimc.AnalogConfig(
            device="ideal",
            tile=aimc.TileConfig(32, 64),
            dac=aimc.DACConfig(bits=bits),
            adc=aimc.ADCConfig(bits=bits),
        )
        layer = AnalogLinear.from_digital(lin, cfg).eval()
        errs.append(float((layer(x) - lin(x)).pow(2).mean()))
    assert errs == sorted(errs, reverse=True), errs


def test_adc_depends_on_tile_rows_but_no_adc_is_tiling_invariant():
    lin = _digital()
    x = torch.randn(16, 50)
    outs = {}
    for rows in (8, 64):
        cfg = aimc.AnalogConfig(
            device="ideal",
            tile=aimc.TileConfig(rows, 64),
            dac=aimc.DACConfig(bits=None),
            adc=aimc.ADCConfig(bits=4),
        )
        outs[rows] = AnalogLinear.from_digital(lin, cfg).eval()(x)
    assert not torch.allclose(outs[8], outs[64])


def test_dac_quantization_grid():
    lin = _digital()
    cfg = aimc.AnalogConfig.ideal(dac=aimc.DACConfig(bits=3))
    layer = AnalogLinear.from_digital(lin, cfg).eval()
    x = torch.randn(5, 50)
    y = layer(x)
    r = float(layer.dac.range)
    xq = torch.round(torch.clamp(x / r, -1, 1) * 3) / 3 * r
    torch.testing.assert_close(y, lin(xq))


def test_dynamic_dac_range_is_per_sample():
    lin = _digital()
    cfg = aimc.AnalogConfig.ideal(dac=aimc.DACConfig(bits=4, range_mode="dynamic"))
    layer = AnalogLinear.from_digital(lin, cfg).eval()
    x = torch.randn(2, 50)
    x[1] *= 1000.0
    y = layer(x)
    y0 = layer(x[:1])
    torch.testing.assert_close(y[:1], y0)  # the large sample does not change the small one's range


def test_bit_serial_equals_parallel_dac():
    lin = _digital()
    x = torch.randn(6, 50)
    outs = []
    for serial in (False, True):
        cfg = aimc.AnalogConfig.ideal(dac=aimc.DACConfig(bits=6, bit_serial=serial))
        outs.append(AnalogLinear.from_digital(lin, cfg).eval()(x))
    torch.testing.assert_close(outs[0], outs[1])


def test_state_dict_round_trip_exact():
    lin = _digital()
    cfg = aimc.AnalogConfig(device="ideal", tile=aimc.TileConfig(16, 8), seed=3)
    layer = AnalogLinear.from_digital(lin, cfg).eval()
    x = torch.randn(4, 50)
    layer(x)  # auto-calibrates the converters
    layer.drift_to(3600.0)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = AnalogLinear(50, 7, config=cfg).eval()
    fresh.load_state_dict(state)
    for key, value in layer.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert fresh.t_s == 3600.0
    torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=0)


def test_state_dict_from_other_tile_layout_is_refused():
    lin = _digital()
    a = AnalogLinear.from_digital(lin, aimc.AnalogConfig.ideal(tile=aimc.TileConfig(16, 8)))
    b = AnalogLinear(50, 7, config=aimc.AnalogConfig.ideal(tile=aimc.TileConfig(32, 8)))
    with pytest.raises(ValueError, match="different tile layout"):
        b.load_state_dict(a.state_dict())


def test_digital_state_dict_loads_into_analog_and_reprograms():
    lin = _digital()
    layer = AnalogLinear(50, 7, config=aimc.AnalogConfig.ideal()).eval()
    layer.load_state_dict(lin.state_dict(), strict=False)
    x = torch.randn(3, 50)
    torch.testing.assert_close(layer(x), lin(x))


def test_eval_reprograms_changed_weights():
    lin = _digital()
    layer = AnalogLinear.from_digital(lin, aimc.AnalogConfig.ideal()).eval()
    x = torch.randn(3, 50)
    layer(x)
    with torch.no_grad():
        layer.weight.mul_(-2.0)
        lin.weight.mul_(-2.0)
    torch.testing.assert_close(layer(x), lin(x))


def test_train_forward_is_plain_digital_by_default():
    lin = _digital()
    layer = AnalogLinear.from_digital(lin, aimc.AnalogConfig()).train()
    x = torch.randn(3, 50)
    torch.testing.assert_close(layer(x), lin(x), rtol=0, atol=0)


def test_hardware_aware_train_forward_has_gradients():
    lin = _digital()
    cfg = aimc.AnalogConfig(
        device="ideal",
        training=aimc.TrainingConfig(hardware_aware=True),
        mapping=aimc.MappingConfig(weight_bits=8, slices=2),
    )
    layer = AnalogLinear.from_digital(lin, cfg).train()
    x = torch.randn(8, 50, requires_grad=True)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    assert float(layer.weight.grad.abs().sum()) > 0
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert layer.bias.grad is not None


def test_hardware_aware_train_output_matches_eval_for_ideal_device():
    lin = _digital()
    cfg = aimc.AnalogConfig(device="ideal", training=aimc.TrainingConfig(hardware_aware=True))
    layer = AnalogLinear.from_digital(lin, cfg)
    x = torch.randn(8, 50)
    y_eval = layer.eval()(x)
    torch.testing.assert_close(layer.train()(x), y_eval)


def test_seeded_determinism_and_new_draws():
    lin = _digital()
    cfg = aimc.AnalogConfig(device="ideal", adc=aimc.ADCConfig(bits=8, noise=0.05), seed=1)
    x = torch.randn(4, 50)
    a = AnalogLinear.from_digital(lin, cfg, seed=5).eval()
    b = AnalogLinear.from_digital(lin, cfg, seed=5).eval()
    b.dac.range.copy_(a.dac.range.fill_(float(x.abs().max())))
    a(x), b(x)  # calibrate ADCs alike
    b.adc.full_scale.copy_(a.adc.full_scale)
    a.program(5), b.program(5)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    b.program(6)
    assert not torch.equal(a(x), b(x))


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.randn(3, 49), "in_features=50"),
        (torch.full((2, 50), float("nan")), "NaN or inf"),
        (torch.full((2, 50), float("inf")), "NaN or inf"),
    ],
)
def test_bad_inputs(x, match):
    layer = AnalogLinear(50, 7, config=aimc.AnalogConfig()).eval()
    with pytest.raises(ValueError, match=match):
        layer(x)


def test_bad_constructor_args():
    with pytest.raises(ValueError, match="AnalogLinear.in_features"):
        AnalogLinear(0, 3)
    with pytest.raises(TypeError, match="AnalogConfig"):
        AnalogLinear(3, 3, config={"tile": 3})


def test_nan_weights_cannot_be_programmed():
    layer = AnalogLinear(4, 3, config=aimc.AnalogConfig.ideal())
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        layer.program()


def test_repr_and_geometry():
    layer = AnalogLinear(1000, 300, config=aimc.AnalogConfig(tile=aimc.TileConfig(256, 256)))
    g = layer.geometry
    assert (g.n_row_tiles, g.n_col_tiles) == (4, math.ceil(300 / 128))
    assert "tiles=4x3" in repr(layer) and "device=pcm" in repr(layer)
    assert 0 < g.utilization <= 1


@pytest.mark.parametrize("name", device_models.names())
def test_every_device_gives_finite_outputs_and_round_trips(name):
    cfg = aimc.AnalogConfig(device=name, tile=aimc.TileConfig(16, 16), seed=2)
    lin = _digital()
    layer = AnalogLinear.from_digital(lin, cfg).eval()
    x = torch.randn(8, 50)
    aimc.calibrate(layer, [x])
    layer.drift_to(86400.0)
    y = layer(x)
    assert y.shape == (8, 7) and torch.isfinite(y).all()
    fresh = AnalogLinear(50, 7, config=cfg).eval()
    fresh.load_state_dict(layer.state_dict())
    for key, value in layer.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # a digital round trip keeps the master weights
    torch.testing.assert_close(layer.to_digital().weight, lin.weight, rtol=0, atol=0)


def _noisy_pair(noise: float, fraction: float = 1.0, **config):
    """Two identical calibrated layers whose ADC noise generators start alike."""
    import copy

    torch.manual_seed(3)
    lin = nn.Linear(300, 40)
    config.setdefault("adc", aimc.ADCConfig(bits=6, noise=noise, range_fraction=fraction))
    cfg = aimc.AnalogConfig(device="ideal", tile=aimc.TileConfig(64, 64), seed=2, **config)
    layer = AnalogLinear.from_digital(lin, cfg).eval()
    x = torch.randn(500, 300)
    aimc.calibrate(layer, [x])
    return copy.deepcopy(layer), copy.deepcopy(layer), x


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"mapping": aimc.MappingConfig(encoding="offset")},
        {"dac": aimc.DACConfig(bits=4, bit_serial=True)},
        {  # two weight slices: one read per slice, full scale a fraction of the max current
            "mapping": aimc.MappingConfig(weight_bits=8, slices=2),
            "adc": aimc.ADCConfig(bits=6, noise=0.05, range_mode="max", range_fraction=0.1),
        },
    ],
    ids=["differential", "offset", "bit-serial", "sliced-max-range"],
)
def test_fused_noise_read_equals_the_general_path(normal_sampler, config):
    # An inference read with ADC noise draws the noise first (in LSB units) and lets the matmul
    # add into it; a read that needs gradients takes the general path (currents, then noise,
    # then the STE readout). Same draws, so the same codes except where a value lands within
    # float rounding of a rounding boundary.
    fused, general, x = _noisy_pair(0.05, **config)
    with torch.no_grad():
        y_fused = fused(x)
        w = fused.crossbar.read(fused.t_s)
        p, lsb_units = fused.adc.read(x.unsqueeze(1), w, fused.crossbar.generators("adc"))
    slices = fused.geometry.slices
    assert lsb_units and p.shape == (slices, 1, 5, 500, w.shape[-1])
    y_general = general(x.clone().requires_grad_(True)).detach()
    off = (y_fused - y_general).abs() > 1e-5 * y_general.abs().max()
    assert float(off.float().mean()) < 1e-3
    assert not torch.equal(y_fused, fused(x))  # new noise on every read


def test_fused_read_counts_saturation_like_the_general_path():
    fused, general, x = _noisy_pair(0.02, fraction=0.3)
    with aimc.track_adc_saturation(fused) as r_fused:
        with torch.no_grad():
            fused(x)
    with aimc.track_adc_saturation(general) as r_general:
        general(x.clone().requires_grad_(True))
    rate = r_general[""]
    assert 0.01 < rate < 1.0
    assert abs(r_fused[""] - rate) < 1e-3
