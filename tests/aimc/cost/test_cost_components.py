"""Component formulas against hand calculations, partial-row reads, replication, warnings and
the estimate's freedom from side effects."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch
from cost_helpers import ConvNet, FakeAnalogLinear
from torch import nn

import aimc
import aimc.presets
from aimc.cost import components as C
from aimc.cost import estimate_cost, get_technology, map_model
from aimc.cost.mapper import replicas_for


# ------------------------------------------------------------------ formulas by hand
def test_switch_and_row_drive_are_c_v_squared():
    assert C.switch_energy_fj(2.0, 0.5) == pytest.approx(0.5)  # 2 fF x 0.25 V^2
    # 128 cells of 0.05 fF + 0.2 fF/um x 0.264 um each, at 0.85 V
    c = 128 * (0.05 + 0.2 * 0.264)
    assert C.row_drive_energy_fj(128, 0.05, 0.2, 0.264, 0.85) == pytest.approx(c * 0.85**2)


def test_adc_architectures_by_hand():
    # flash / NeuroSim's multi-level sense amp: 2^b - 1 comparators plus the reference
    assert C.adc_conversion_energy_fj("mlsa", 4, comparator_fj=2.0, reference_fj=1.0) == 31.0
    assert C.adc_conversion_energy_fj("flash", 5, comparator_fj=2.0) == 62.0
    assert C.adc_conversion_energy_fj("ramp", 3, comparator_fj=1.0, reference_fj=0.5) == 8.5
    # SAR: Walden 20 fJ/step x 2^8 = 5.12 pJ (the Schreier floor is far below at 8 bits)
    assert C.adc_conversion_energy_fj("sar", 8, walden_fj=20.0, rate_gsps=1.0) == pytest.approx(
        5120.0
    )
    assert C.adc_conversion_area_um2("mlsa", 5, comparator_um2=2.4, fixed_um2=1.0) == 1 + 31 * 2.4
    assert C.adc_conversion_time_ns("mlsa", 5, ns_per_bit=2.4) == pytest.approx(12.0)
    assert C.adc_conversion_time_ns("ramp", 8, clock_ghz=2.0) == 128.0
    assert C.adc_conversion_time_ns("sar", 8, rate_gsps=1.28) == pytest.approx(1 / 1.28)
    with pytest.raises(ValueError, match="adc_type"):
        C.adc_conversion_energy_fj("pipeline", 8)


@pytest.mark.parametrize("adc_type", ["sar", "flash", "mlsa", "ramp"])
def test_more_adc_bits_never_cheaper(adc_type):
    kw = dict(walden_fj=20.0, rate_gsps=1.0, comparator_fj=2.0, reference_fj=1.0)
    e = [C.adc_conversion_energy_fj(adc_type, b, **kw) for b in range(1, 13)]
    assert all(b > a for a, b in zip(e, e[1:]))


def test_adder_tree_by_hand():
    # 4 operands of 8 bits: 2 adds of 8 bits, then 1 add of 9 bits = 25 full-adder switchings
    assert C.adder_tree_energy_fj(4, 8, 1.0) == 25.0
    # 5 operands: 2 x 8 bits, then (2 + 1 carried) -> 1 x 9, then 1 x 10 = 35
    assert C.adder_tree_energy_fj(5, 8, 1.0) == 35.0
    assert C.adder_tree_adders(5) == 4 and C.adder_energy_fj(16, 0.5) == 8.0


def test_sram_rule_against_horowitz():
    # Horowitz ISSCC 2014 (45 nm): 8 KB 0.16, 32 KB 0.31, 1 MB 1.56 pJ/bit
    kb = 1024 * 8
    assert C.sram_energy_pj_per_bit(8 * kb) == pytest.approx(0.16)
    assert C.sram_energy_pj_per_bit(32 * kb) == pytest.approx(0.31, rel=0.05)
    assert C.sram_energy_pj_per_bit(1024 * kb) == pytest.approx(1.56, rel=0.2)
    # 64 KB of 160 F^2 cells at 22 nm with 50 % periphery
    expected = 64 * kb * 160 * 0.022**2 * 1.5 * 1e-6
    assert C.sram_area_mm2(64 * kb, 22.0) == pytest.approx(expected)


def test_wire_and_bounding_box_by_hand():
    # 0.18 x 0.2 fF/um x 1000 um x 0.85^2 V^2 = 26.0 fJ per bit and mm
    assert C.wire_energy_pj_per_bit(1.0, 0.85, activity=0.18) == pytest.approx(
        0.18 * 0.2 * 1000 * 0.85**2 * 1e-3
    )
    assert C.mean_wire_mm(16.0) == 2.0
    # a 10x10 array, 5 wide row periphery (50), 20 tall column periphery (200): 20x30 box
    assert C.subarray_bounding_box_um2(100.0, 50.0, 200.0) == pytest.approx(15 * 30)


# ------------------------------------------------------------------ partial-row reads
def test_parallel_rows_validated():
    with pytest.raises(ValueError, match="parallel_rows"):
        aimc.TileConfig(rows=64, parallel_rows=65)
    with pytest.raises(TypeError, match="parallel_rows"):
        aimc.TileConfig(rows=64, parallel_rows=8.0)
    assert aimc.TileConfig(rows=128, parallel_rows=32).reads() == 4
    assert aimc.TileConfig(rows=128).reads() == 1


def _cfg(parallel_rows=None, bits=5):
    cfg = aimc.presets.rram22(adc=aimc.ADCConfig(bits=bits))
    return dataclasses.replace(
        cfg, tile=aimc.TileConfig(rows=128, cols=128, parallel_rows=parallel_rows)
    )


@pytest.mark.parametrize("parallel_rows", [None, 64, 32, 16])
def test_reads_per_column_are_counted(parallel_rows):
    layer = FakeAnalogLinear(200, 16, _cfg(parallel_rows))  # 128 + 72 rows, 8 columns/weight
    report = estimate_cost(nn.Sequential(layer), torch.rand(3, 200), "rram22")
    reads = (
        2
        if parallel_rows is None
        else math.ceil(128 / parallel_rows) + math.ceil(72 / parallel_rows)
    )
    c = report.layer("0").counts
    assert c.adc_conversions == 3 * 8 * reads * 16 * 8  # MVMs x cycles x reads x weights x slices


def test_fewer_parallel_rows_more_reads_slower_and_dearer():
    x = torch.rand(2, 128)
    res = [
        estimate_cost(nn.Sequential(FakeAnalogLinear(128, 16, _cfg(p))), x, "rram22").total
        for p in (128, 64, 32, 16)
    ]
    assert all(
        b.counts.adc_conversions == 2 * a.counts.adc_conversions for a, b in zip(res, res[1:])
    )
    assert all(b.latency_s > a.latency_s and b.energy_j > a.energy_j for a, b in zip(res, res[1:]))


def test_more_adc_bits_cost_more_everywhere():
    x = torch.rand(2, 128)
    res = [
        estimate_cost(nn.Sequential(FakeAnalogLinear(128, 16, _cfg(32, b))), x, "rram22").total
        for b in (3, 4, 5, 6)
    ]
    for a, b in zip(res, res[1:]):
        assert b.energy_j > a.energy_j and b.area_mm2 > a.area_mm2 and b.latency_s > a.latency_s


# ------------------------------------------------------------------ replication
def test_balanced_replication_is_neurosims_for_vgg8_feature_maps():
    mvms = {"c1": 1024, "c2": 1024, "c3": 256, "c4": 256, "c5": 64, "c6": 64, "f1": 1, "f2": 1}
    assert list(replicas_for(mvms, "balanced").values()) == [16, 16, 4, 4, 1, 1, 1, 1]
    assert list(replicas_for(mvms, 4).values()) == [4, 4, 1, 1, 1, 1, 1, 1]
    assert set(replicas_for(mvms, "none").values()) == {1}
    with pytest.raises(ValueError, match="replication"):
        replicas_for(mvms, "lots")


def test_replication_raises_throughput_and_area():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1)
    )
    analog = aimc.convert_to_analog(net, aimc.presets.rram22(), program=False)
    x = torch.rand(1, 1, 16, 16)
    tech = get_technology("rram22", cores_per_cluster=1)  # no empty core slots to fill
    plain = estimate_cost(analog, x, tech)
    rep = estimate_cost(analog, x, tech, replication="balanced")
    assert rep.mapping.layer("0").replicas == 4 and rep.mapping.layer("3").replicas == 1
    assert rep.total.pipelined_tops > plain.total.pipelined_tops
    assert rep.total.latency_s < plain.total.latency_s
    assert rep.total.area_mm2 > plain.total.area_mm2
    assert rep.total.energy_j == pytest.approx(plain.total.energy_j, rel=0.05)  # same work
    with pytest.raises(ValueError, match="example_input"):
        map_model(analog, "rram22", replication="balanced")
    m = map_model(analog, "rram22", replication="balanced", example_input=x)
    assert m.layer("0").replicas == 4


def test_conv_energy_grows_with_the_image():
    torch.manual_seed(0)
    analog = aimc.convert_to_analog(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)), aimc.presets.rram22(), program=False
    )
    e = [estimate_cost(analog, torch.rand(1, 3, s, s), "rram22").total.energy_j for s in (8, 16)]
    assert e[1] > 3 * e[0]


# ------------------------------------------------------------------ no side effects
def test_estimate_cost_does_not_change_the_model():
    torch.manual_seed(0)
    cfg = aimc.AnalogConfig(device="pcm", adc=aimc.ADCConfig(bits=6), dac=aimc.DACConfig(bits=6))
    analog = aimc.convert_to_analog(ConvNet(), cfg)
    x = torch.rand(2, 1, 8, 8)
    state = {k: v.clone() for k, v in analog.state_dict().items()}
    estimate_cost(analog, x, "isaac")
    after = analog.state_dict()
    for k, v in state.items():
        assert torch.equal(v, after[k]), k  # no calibration, no reprogramming
    analog.eval()
    y1 = analog(x)
    fresh = aimc.convert_to_analog(ConvNet(), cfg)
    fresh.load_state_dict(state)
    assert torch.equal(analog(x), y1)


def test_estimate_needs_no_programming():
    torch.manual_seed(0)
    analog = aimc.convert_to_analog(ConvNet(), aimc.presets.rram22(), program=False)
    estimate_cost(analog, torch.rand(1, 1, 8, 8), "rram22")
    assert not any(layer.programmed for _, layer in aimc.analog_layers(analog))


# ------------------------------------------------------------------ warnings and configs
def test_setup_warnings_in_report_and_log(caplog):
    torch.manual_seed(0)
    cfg = aimc.AnalogConfig(
        device="pcm", tile=aimc.TileConfig(rows=64, cols=64), adc=aimc.ADCConfig(bits=None)
    )
    analog = aimc.convert_to_analog(ConvNet(), cfg, program=False)
    with caplog.at_level(logging.WARNING):
        report = estimate_cost(analog, torch.rand(1, 1, 8, 8), "rram22")
    text = " ".join(report.warnings)
    assert "'pcm' is costed with the 'rram' cell" in text
    assert "ideal ADC" in text and "tile 64x64" in text
    assert "warning:" in report.table() and "ideal ADC" in caplog.text
    clean = aimc.convert_to_analog(ConvNet(), aimc.presets.rram22(), program=False)
    assert estimate_cost(clean, torch.rand(1, 1, 8, 8), "rram22").warnings == ()


def test_area_uses_each_layers_own_config():
    torch.manual_seed(0)
    small = aimc.presets.rram22(adc=aimc.ADCConfig(bits=3))
    big = aimc.presets.rram22(adc=aimc.ADCConfig(bits=7))
    x = torch.rand(1, 1, 8, 8)
    areas = []
    for cfg_fc in (small, big):
        analog = aimc.convert_to_analog(
            ConvNet(), small, layer_configs={"fc": cfg_fc}, program=False
        )
        areas.append(estimate_cost(analog, x, "rram22").total.area_by_component_mm2["adc"])
    assert areas[1] > areas[0]


def test_power_gating_keeps_idle_cores_from_leaking():
    torch.manual_seed(0)
    analog = aimc.convert_to_analog(ConvNet(), aimc.presets.isaac(), program=False)
    x = torch.rand(1, 1, 8, 8)
    leaky = get_technology("isaac", leakage_mw_per_core=1.0, power_gating=False)
    gated = get_technology("isaac", leakage_mw_per_core=1.0, power_gating=True)
    s_leaky = estimate_cost(analog, x, leaky).total.energy_by_component_j["static"]
    s_gated = estimate_cost(analog, x, gated).total.energy_by_component_j["static"]
    assert 0 < s_gated < s_leaky


@pytest.mark.parametrize(
    "encoding,bits,slices",
    [
        ("offset", 8, 8),
        ("differential", 9, 4),
        ("differential", 8, 1),
        ("offset", None, 1),
        ("offset", 20, 4),
    ],
)
def test_row_conductance_digit_sums_equal_the_sliced_devices(encoding, bits, slices):
    import aimc.functional as AF

    wn = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1
    v, _ = AF.slice_weights(wn, encoding, bits, slices)
    torch.testing.assert_close(AF.slice_sums(wn, encoding, bits, slices), v.sum((0, -1)))


# ------------------------------------------------------------------ one registry helper
def test_one_registry_for_devices_technologies_presets_and_models():
    import device_models
    from aimc.cost.technology import TECHNOLOGIES
    from device_models.registry import DEVICES, Registry
    from experiments.models import MODELS, get_model, model_names

    for reg in (DEVICES, TECHNOLOGIES, aimc.presets.PRESETS, MODELS):
        assert isinstance(reg, Registry)
    assert "sram" in device_models.names() and "sram22" in aimc.presets.names()
    assert {"vgg8", "lenet5"} <= set(model_names())
    assert type(get_model("vgg8", (3, 32, 32), 10)).__name__ == "VGG8"
    for lookup, typo, hint in (
        (aimc.presets.get, "rram2", "rram22"),
        (get_technology, "sram2", "sram22"),
        (device_models.get, "sramm", "sram"),
        (lambda n: get_model(n, (1, 28, 28), 10), "lenet", "lenet5"),
    ):
        with pytest.raises(KeyError, match=f"did you mean '{hint}'"):
            lookup(typo)
    with pytest.raises(ValueError, match="already registered"):
        aimc.presets.PRESETS.register("isaac")(lambda: None)
