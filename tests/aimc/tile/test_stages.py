"""The layers as a pipeline of stage modules: structure, state, switches and the fused read."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import aimc
from aimc.nn import AnalogLinear
from aimc.tile import ADC, DAC, Accumulate, Crossbar, IdentityADC, IdentityDAC, adc_digitize
from aimc.tile.geometry import TileGeometry

DATA = Path(__file__).parent / "data"


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def test_layer_is_dac_crossbar_adc_accumulate_in_print_and_state_dict():
    analog = aimc.convert_to_analog(_mlp(), aimc.AnalogConfig(device="pcm"))
    layer = analog[0]
    assert list(layer._modules) == ["dac", "crossbar", "adc", "accumulate"]
    assert isinstance(layer.dac, DAC) and isinstance(layer.crossbar, Crossbar)
    assert isinstance(layer.adc, ADC) and isinstance(layer.accumulate, Accumulate)
    text = str(analog)
    for part in ("(dac): DAC(bits=8", "(crossbar): Crossbar(tiles=1x1", "(adc): ADC(bits=8"):
        assert part in text
    keys = list(analog.state_dict())
    for key in ("0.dac.range", "0.crossbar.weight_scale", "0.crossbar.dev_g", "0.adc.full_scale"):
        assert key in keys
    order = [keys.index(k) for k in ("0.dac.range", "0.crossbar.dev_g", "0.adc.full_scale")]
    assert order == sorted(order)


def test_converters_that_are_off_are_identity_stages():
    layer = AnalogLinear(6, 3, config=aimc.AnalogConfig.ideal())
    assert isinstance(layer.dac, IdentityDAC) and isinstance(layer.adc, IdentityADC)
    assert not any(k.startswith(("dac.", "adc.")) for k in layer.state_dict())
    # an ADC with noise but no quantization still needs the DAC's range
    cfg = aimc.AnalogConfig.ideal(adc=aimc.ADCConfig(bits=None, noise=0.1))
    noisy = AnalogLinear(6, 3, config=cfg)
    assert isinstance(noisy.dac, DAC) and isinstance(noisy.adc, ADC)


def test_checkpoint_of_the_flat_layout_loads_and_reads_the_same():
    """``flat_layout_checkpoint.pt`` was written by the layers before they were split into
    stages (buffers ``dac_range``, ``adc_range``, ``weight_scale``, ``dev_g``, ... on the layer,
    and the learned ``dac_range_gain``): Conv2d(2, 3, 3) -> ReLU -> Flatten -> Linear(12, 4),
    8x8 tiles, 6-bit ADC with noise 0.01, 6-bit weights in 2 slices, learned input range (gain
    1.25 on the Linear), seed 3, calibrated on ``x``, read at 3600 s; ``y`` is what that code
    gave for ``x`` after loading the checkpoint into a freshly converted model."""
    saved = torch.load(DATA / "flat_layout_checkpoint.pt", weights_only=True)
    old_keys = set(saved["state_dict"])
    assert {"0.adc_range", "3.dac_range_gain", "3.dev_g", "3.program_seed"} <= old_keys
    torch.manual_seed(1)  # other weights than the checkpoint's
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4))
    cfg = aimc.AnalogConfig(
        tile=aimc.TileConfig(8, 8),
        adc=aimc.ADCConfig(bits=6, noise=0.01),
        mapping=aimc.MappingConfig(weight_bits=6, slices=2),
        training=aimc.TrainingConfig(hardware_aware=True, learn_input_range=True),
        seed=0,
    )
    analog = aimc.convert_to_analog(model, cfg)
    analog.load_state_dict(saved["state_dict"])  # strict: every old key has its new place
    assert float(analog[3].dac.range_gain.detach()) == 1.25
    assert analog[3].t_s == 3600.0 and int(analog[3].crossbar.seed) != 0
    state = analog.state_dict()
    for old_key, new_key in (("3.dev_g", "3.crossbar.dev_g"), ("0.adc_range", "0.adc.full_scale")):
        assert torch.equal(state[new_key], saved["state_dict"][old_key])
    # read and output noise are now drawn per forward from (seed, read time, forward number),
    # so that copies and reloads repeat them; the old code drew them from running streams, so
    # its y holds other noise draws: the same programmed state reads the same up to that noise
    twin = aimc.convert_to_analog(model, cfg)
    twin.load_state_dict(saved["state_dict"])
    with torch.no_grad():
        y = analog.eval()(saved["x"])
        torch.testing.assert_close(twin.eval()(saved["x"]), y, rtol=0, atol=0)
        err = (y - saved["y"]).abs().max() / saved["y"].abs().max()
    assert float(err) < 0.5
    assert "3.adc.full_scale" in analog.state_dict()


def test_flat_layout_keys_of_an_ideal_layer_are_dropped():
    """The flat layout saved unused zero ranges for converters that were off."""
    layer = AnalogLinear(6, 3, config=aimc.AnalogConfig.ideal())
    state = {k.replace("crossbar.", ""): v for k, v in layer.state_dict().items()}
    state["weight_fingerprint"] = state.pop("fingerprint")
    state["program_seed"] = state.pop("seed")
    state.pop("draws")  # newer than the flat layout
    state["dac_range"], state["adc_range"] = torch.zeros(()), torch.zeros(1)
    twin = AnalogLinear(6, 3, config=aimc.AnalogConfig.ideal())
    twin.load_state_dict(state)
    assert torch.equal(twin.weight, layer.weight)


def test_calibrate_switches_observers_through_public_methods_and_always_off():
    analog = aimc.convert_to_analog(_mlp(), aimc.AnalogConfig(device="pcm"))
    x = torch.randn(8, 12)
    aimc.calibrate(analog, [x])
    for _, layer in aimc.analog_layers(analog):
        assert not layer.dac.observing and not layer.adc.observing
        assert float(layer.dac.range) > 0 and float(layer.adc.full_scale.min()) > 0
    with pytest.raises(ValueError, match="in_features=12"):
        aimc.calibrate(analog, [torch.randn(8, 5)])  # wrong width: the first layer raises
    assert not any(layer.dac.observing for _, layer in aimc.analog_layers(analog))


def test_saturation_counter_is_switched_by_the_adc_stage():
    layer = AnalogLinear(16, 8, config=aimc.AnalogConfig(device="ideal")).eval()
    x = torch.randn(32, 16)
    aimc.calibrate(layer, [x])
    layer.adc.enable_counter()
    with torch.no_grad():
        layer(3 * x)
    saturated, total = layer.adc.disable_counter()
    assert total == 32 * 8 and 0 < saturated < total and not layer.adc.counting


def _adc(noise: float, slices: int = 1, **kw) -> ADC:
    g = TileGeometry(
        groups=1,
        in_rows=40,
        out_cols=6,
        rows=16,
        cols=16,
        slices=slices,
        cols_per_weight=2 * slices,
    )
    adc = ADC(aimc.ADCConfig(bits=5, noise=noise, **kw), g)
    adc.full_scale.fill_(2.0)
    return adc


@pytest.mark.parametrize("kw", [{}, {"range_mode": "max", "range_fraction": 0.2}])
def test_fused_read_is_the_general_read_with_the_same_draws(normal_sampler, kw):
    """``ADC.fused_read`` (noise first, in LSB units, the matmul adds into it) gives the codes
    of the general path (currents, then noise, then quantization) for the same draws, except
    within float rounding of a code boundary."""
    torch.manual_seed(0)
    rows, w = torch.rand(300, 1, 40) * 2 - 1, torch.rand(1, 1, 3, 16, 6) * 2 - 1
    fused, general = _adc(0.05, **kw), _adc(0.05, **kw)
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(4)]  # noqa: E731
    assert fused.can_fuse(rows, w)
    p, in_lsb = fused.read(rows, w, gens())
    codes, lsb = fused(p, 0, gens(), in_lsb=in_lsb, defer_lsb=True)
    assert in_lsb
    p_gen = aimc.functional.tile_matmul(rows, w)
    codes_gen, lsb_gen = general(p_gen, 0, gens(), defer_lsb=True)
    assert lsb == pytest.approx(lsb_gen)
    assert float((codes != codes_gen).float().mean()) < 1e-3
    assert float((codes - codes_gen).abs().max()) <= 1.0


def test_no_fused_read_when_gradients_or_calibration_need_the_general_path():
    rows, w = torch.rand(4, 1, 40), torch.rand(1, 1, 3, 16, 6)
    adc = _adc(0.05)
    assert not adc.can_fuse(rows.requires_grad_(), w)
    adc.enable_observer()
    assert not adc.can_fuse(rows.detach(), w)
    assert not _adc(0.0).can_fuse(rows.detach(), w)  # no noise: nothing to fuse


def test_adc_digitize_in_place_equals_straight_through():
    p = torch.randn(3, 50)
    q_grad, none = adc_digitize(p.clone().requires_grad_(), 1.5, 7)
    q, lsb = adc_digitize(p.clone(), 1.5, 7, defer_lsb=True)
    assert none is None and lsb == pytest.approx(1.5 / 7)
    torch.testing.assert_close(q * lsb, q_grad.detach())


def test_stages_forget_derived_state_in_copies():
    layer = AnalogLinear(8, 4, config=aimc.AnalogConfig(device="pcm")).eval()
    with torch.no_grad():
        y = layer(torch.randn(3, 8))
    twin = copy.deepcopy(layer)
    assert twin.crossbar._cache == {} and twin.crossbar._gens == {}
    with torch.no_grad():
        assert twin(torch.randn(3, 8)).shape == y.shape
