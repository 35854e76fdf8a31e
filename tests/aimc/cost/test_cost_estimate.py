"""estimate_cost: counts, energy bookkeeping, data dependence, scaling and bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from cost_helpers import ConvNet, ConvOnly, FakeAnalogLinear, small_technology, with_adc_bits
from torch import nn

import aimc
import aimc.presets
from aimc.cost import COMPONENTS, adc_energy_pj, estimate_cost, get_technology


def _convert(model, cfg, seed=0):
    torch.manual_seed(seed)
    return aimc.convert_to_analog(model, cfg)


# ------------------------------------------------------------------ counts on a fake layer
def test_fake_layer_counts_are_exact(small_cfg):
    layer = FakeAnalogLinear(50, 20, small_cfg)  # 32x32 tiles, 16 weights per tile
    x = torch.full((3, 50), 0.5)
    report = estimate_cost(nn.Sequential(layer), x, "isaac")
    c = report.layer("0").counts
    g = layer.geometry
    assert (g.n_row_tiles, g.n_col_tiles) == (2, 2)
    assert c.mvms == 3 and c.tile_mvms == 12 and c.macs == 3 * 50 * 20
    assert c.dac_conversions == 3 * 50 * 2  # every row into both column tiles
    assert c.cells_read == 3 * 50 * 20 * 2
    assert c.adc_conversions == 3 * 2 * 20  # a differential pair is one conversion
    assert c.sample_holds == 3 * 2 * 20 * 2
    assert c.shift_adds == 0  # one slice, one cycle
    assert c.accumulations == 3 * 2 * 20
    assert c.buffer_read_bits == 3 * 50 * 2 * 8 and c.buffer_write_bits == 3 * 20 * 16
    tech = get_technology("isaac")
    # crossbar: V^2 t sum(|x| G): 3 MVMs x 50 rows x 0.5 x (40 devices x 10 uS)
    expected_fj = tech.v_read_v**2 * tech.t_read_ns * 3 * 50 * 0.5 * 400
    assert report.layer("0").energy_by_component_j["crossbar"] == pytest.approx(expected_fj * 1e-15)


def test_bit_serial_sliced_counts(isaac_cfg):
    layer = FakeAnalogLinear(128, 16, isaac_cfg)  # one full ISAAC crossbar
    report = estimate_cost(nn.Sequential(layer), torch.rand(2, 128), "isaac")
    c = report.layer("0").counts
    assert c.input_cycles == 2 * 16
    assert c.dac_conversions == 2 * 16 * 128
    assert c.adc_conversions == 2 * 16 * 128  # 16 weights x 8 slices, 16 cycles
    assert c.shift_adds == c.adc_conversions
    assert report.layer("0").latency_s == pytest.approx(2 * 1.6e-6)


# ------------------------------------------------------------------ real layers
@pytest.fixture(scope="module")
def convnet_report():
    cfg = aimc.presets.isaac()
    analog = _convert(ConvNet(), cfg)
    return estimate_cost(analog, torch.rand(2, 1, 8, 8), "isaac"), analog


def test_energy_adds_up(convnet_report):
    report, _ = convnet_report
    for lay in report.layers:
        assert set(lay.energy_by_component_j) == set(COMPONENTS)
        assert sum(lay.energy_by_component_j.values()) == pytest.approx(lay.energy_j, rel=1e-12)
        assert all(v >= 0 for v in lay.energy_by_component_j.values())
    total = report.total
    assert sum(x.energy_j for x in report.layers) == pytest.approx(total.energy_j, rel=1e-12)
    assert sum(total.energy_by_component_j.values()) == pytest.approx(total.energy_j, rel=1e-12)
    assert sum(x.latency_s for x in report.layers) == pytest.approx(total.latency_s)


def test_digital_layers_between_analog_ones_are_counted(convnet_report):
    report, _ = convnet_report
    names = [x.name for x in report.layers]
    assert names == ["c1", "act", "c2", "add", "relu", "pool", "fc"]
    kinds = {x.name: x.kind for x in report.layers}
    assert kinds["c1"] == kinds["c2"] == kinds["fc"] == "analog"
    n = 2 * 4 * 8 * 8  # batch x channels x pixels
    assert report.layer("act").counts.activations == n
    assert report.layer("relu").counts.activations == n
    assert report.layer("add").counts.digital_ops == n  # the residual add in forward()
    assert report.layer("pool").counts.digital_ops == n
    assert report.layer("c1").counts.mvms == 2 * 64  # batch x output pixels


def test_report_outputs(convnet_report):
    report, _ = convnet_report
    d = report.to_dict()
    json.dumps(d)
    assert d["technology"] == "isaac" and len(d["layers"]) == 7
    text = report.table()
    for name in ("c1", "c2", "fc", "pool", "TOPS/W", "INT8 digital baseline"):
        assert name in text
    t = report.total
    assert t.tops_per_w == pytest.approx(t.ops / t.energy_j * 1e-12)
    assert t.ops == 2 * sum(x.counts.macs for x in report.layers)
    assert t.pipelined_interval_s == max(x.latency_s for x in report.layers)
    assert t.throughput_per_s == pytest.approx(2 / t.pipelined_interval_s)
    assert t.n_chips == 1 and t.area_mm2 > 0
    b = report.digital_baseline
    assert b.energy_j > 0
    assert b.analog_advantage == pytest.approx(b.energy_j / t.energy_j)


def test_doubling_the_batch_doubles_energy_and_counts(isaac_cfg):
    analog = _convert(ConvNet(), isaac_cfg)
    x = torch.rand(2, 1, 8, 8)
    one = estimate_cost(analog, x, "isaac")
    two = estimate_cost(analog, torch.cat([x, x]), "isaac")
    for a, b in zip(one.layers, two.layers):
        assert b.counts.to_dict() == {k: 2 * v for k, v in a.counts.to_dict().items()}
        assert b.energy_j == pytest.approx(2 * a.energy_j, rel=1e-9)
    assert two.total.energy_j == pytest.approx(2 * one.total.energy_j, rel=1e-9)
    assert two.total.latency_s == pytest.approx(2 * one.total.latency_s, rel=1e-9)


def test_conv_on_a_4x_larger_image_costs_about_4x(small_cfg):
    small = estimate_cost(_convert(ConvOnly(), small_cfg), torch.ones(1, 2, 8, 8), "isaac")
    large = estimate_cost(_convert(ConvOnly(), small_cfg), torch.ones(1, 2, 16, 16), "isaac")
    assert large.layer("conv").counts.mvms == 4 * small.layer("conv").counts.mvms
    assert (
        large.layer("conv").counts.adc_conversions == 4 * small.layer("conv").counts.adc_conversions
    )
    # Border pixels see zero padding, so the data-dependent crossbar part is not exactly 4x.
    assert large.total.energy_j / small.total.energy_j == pytest.approx(4.0, rel=0.05)


def test_zero_input_costs_no_crossbar_read_energy(small_cfg):
    analog = _convert(nn.Sequential(nn.Linear(40, 10, bias=False)), small_cfg)
    zero = estimate_cost(analog, torch.zeros(4, 40), "isaac")
    assert zero.total.energy_by_component_j["crossbar"] == 0.0
    assert zero.total.energy_by_component_j["adc"] > 0  # the converters still run
    ones = estimate_cost(analog, torch.ones(4, 40), "isaac")
    assert ones.total.energy_by_component_j["crossbar"] > 0


def test_crossbar_energy_follows_the_programmed_conductance(small_cfg):
    lo = estimate_cost(nn.Sequential(FakeAnalogLinear(8, 4, small_cfg, g_us=1.0)), torch.ones(1, 8))
    hi = estimate_cost(nn.Sequential(FakeAnalogLinear(8, 4, small_cfg, g_us=3.0)), torch.ones(1, 8))
    assert hi.total.energy_by_component_j["crossbar"] == pytest.approx(
        3 * lo.total.energy_by_component_j["crossbar"]
    )


@pytest.mark.parametrize("bits", [4, 6, 10])
def test_adc_energy_grows_with_bits_as_the_model_says(small_cfg, bits):
    x = torch.rand(2, 40)
    model = nn.Sequential(nn.Linear(40, 10))
    ref = estimate_cost(_convert(model, with_adc_bits(small_cfg, 8)), x, "isaac")
    other = estimate_cost(_convert(model, with_adc_bits(small_cfg, bits)), x, "isaac")
    t = get_technology("isaac")
    ratio = adc_energy_pj(bits, t.adc_fom_walden_fj, t.adc_fom_schreier_db, t.adc_rate_gsps) / (
        adc_energy_pj(8, t.adc_fom_walden_fj, t.adc_fom_schreier_db, t.adc_rate_gsps)
    )
    assert other.total.counts.adc_conversions == ref.total.counts.adc_conversions
    adc_ref = ref.total.energy_by_component_j["adc"]
    assert other.total.energy_by_component_j["adc"] == pytest.approx(ratio * adc_ref)


def test_hermes_config_runs_without_shift_adds():
    analog = _convert(nn.Sequential(nn.Linear(300, 40), nn.ReLU()), aimc.presets.hermes())
    report = estimate_cost(analog, torch.rand(5, 300), "hermes")
    c = report.layer("0").counts
    assert c.shift_adds == 0 and c.input_cycles == 5
    assert c.adc_conversions == 5 * 2 * 40  # 2 row tiles, one conversion per weight column
    assert report.layer("0").latency_s == pytest.approx(5 * 133e-9)
    # HERMES' fitted per-core power is spent per tile MVM (2 tiles x 5 MVMs x 40 mW x 133 ns)
    assert report.total.energy_by_component_j["control"] == pytest.approx(10 * 40e-3 * 133e-9)
    assert report.total.energy_by_component_j["static"] == 0


def test_layers_beyond_the_first_chip_pay_off_chip_io(small_cfg):
    model = nn.Sequential(
        FakeAnalogLinear(96, 8, small_cfg),  # 3 tiles
        FakeAnalogLinear(8, 8, small_cfg),  # 1 tile: fills chip 0
        FakeAnalogLinear(8, 8, small_cfg),  # chip 1
    )
    x = torch.rand(2, 96)
    report = estimate_cost(model, x, small_technology())
    assert report.total.n_chips == 2
    word = report.technology.word_bits
    assert report.layer("0").counts.io_bits == x.numel() * word  # the network input
    assert report.layer("1").counts.io_bits == 0
    assert report.layer("2").counts.io_bits == (16 + 16) * word  # its input + the output


def test_model_modes_are_restored(small_cfg):
    analog = _convert(nn.Sequential(nn.Linear(8, 4), nn.Dropout(0.5)), small_cfg)
    analog.train()
    estimate_cost(analog, torch.rand(2, 8), "isaac")
    assert all(m.training for m in analog.modules())


def test_technology_object_and_dict(small_cfg):
    analog = _convert(nn.Sequential(nn.Linear(8, 4)), small_cfg)
    tech = get_technology("isaac")
    a = estimate_cost(analog, torch.ones(1, 8), tech)
    b = estimate_cost(analog, torch.ones(1, 8), dataclasses.asdict(tech))
    assert a.total.energy_j == pytest.approx(b.total.energy_j)


# ------------------------------------------------------------------ bad input
def test_no_analog_layers():
    with pytest.raises(ValueError, match="no analog layers"):
        estimate_cost(nn.Sequential(nn.Linear(4, 2)), torch.rand(1, 4))


def test_unknown_technology(small_cfg):
    analog = _convert(nn.Sequential(nn.Linear(8, 4)), small_cfg)
    with pytest.raises(KeyError, match=r"unknown technology 'tpu'.*isaac"):
        estimate_cost(analog, torch.rand(1, 8), "tpu")


def test_wrong_example_shape_is_named(small_cfg):
    analog = _convert(nn.Sequential(nn.Linear(8, 4)), small_cfg)
    with pytest.raises(ValueError, match=r"cannot run on example_input of shape \(2, 5\)"):
        estimate_cost(analog, torch.rand(2, 5), "isaac")


def test_example_must_be_a_tensor(small_cfg):
    analog = _convert(nn.Sequential(nn.Linear(8, 4)), small_cfg)
    with pytest.raises(TypeError, match="example_input must be a tensor"):
        estimate_cost(analog, [1.0, 2.0], "isaac")
