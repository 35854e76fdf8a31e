"""Peak figures against published hardware: ISAAC's Table I and HERMES."""

from __future__ import annotations

import pytest

import aimc
import aimc.presets
from aimc.cost import get_technology, peak_performance


@pytest.fixture(scope="module")
def isaac_peak():
    return peak_performance(aimc.presets.isaac(), "isaac")


def test_isaac_chip_power_area_and_throughput(isaac_peak):
    # Shafiee et al., ISCA 2016, Table I: 65.8 W, 85.4 mm^2; 41.3 TOPS of 16-bit ops (2 per MAC).
    assert isaac_peak.power_w == pytest.approx(65.8, rel=0.02)
    assert isaac_peak.area_mm2 == pytest.approx(85.4, rel=0.02)
    assert isaac_peak.tops == pytest.approx(41.3, rel=0.02)
    assert isaac_peak.mvm_time_ns == pytest.approx(1600.0)
    # Computational efficiency: 479 GOPS/(s mm^2) in the paper.
    assert isaac_peak.tops_per_mm2 == pytest.approx(0.479, rel=0.02)


def test_isaac_tile_and_ima(isaac_peak):
    # One ISAAC tile (our cluster): 330 mW, 0.372 mm^2; one IMA (our core): 24.1 mW, 0.0131 mm^2.
    assert isaac_peak.cluster_power_w == pytest.approx(0.330, rel=0.02)
    assert isaac_peak.cluster_area_mm2 == pytest.approx(0.372, rel=0.02)
    assert isaac_peak.core_power_w == pytest.approx(0.0241, rel=0.02)
    assert isaac_peak.core_area_mm2 == pytest.approx(0.0131, rel=0.02)


def test_isaac_adc_shares(isaac_peak):
    ima = isaac_peak.core_power_by_component_w
    assert ima["adc"] / isaac_peak.core_power_w == pytest.approx(0.66, abs=0.01)
    assert ima["adc"] == pytest.approx(0.016, rel=0.02)  # 8 ADCs, 16 mW
    area = isaac_peak.core_area_by_component_mm2
    assert area["adc"] / isaac_peak.core_area_mm2 == pytest.approx(0.73, abs=0.01)
    chip = isaac_peak.power_by_component_w
    assert chip["adc"] / isaac_peak.power_w == pytest.approx(0.49, abs=0.01)
    assert chip["io"] == pytest.approx(10.4)
    assert sum(chip.values()) == pytest.approx(isaac_peak.power_w)


def test_isaac_power_efficiency_counts_the_whole_chip(isaac_peak):
    # 41.3 TOPS / 65.8 W (see the docstring of aimc.cost.technologies.isaac on 380.7 GOPS/W).
    assert isaac_peak.tops_per_w == pytest.approx(0.628, rel=0.02)


def test_hermes_within_25_percent():
    # Le Gallo et al., Nature Electronics 2023: 63.1 TOPS at 9.76 TOPS/W (one-phase, 8-bit).
    peak = peak_performance(aimc.presets.hermes(), "hermes")
    assert peak.tops == pytest.approx(63.1, rel=0.25)
    assert peak.tops_per_w == pytest.approx(9.76, rel=0.25)
    assert peak.tiles == 64


def test_rram22_is_sane_and_adc_bits_raise_power():
    low = peak_performance(aimc.presets.rram22(), "rram22")
    cfg = aimc.presets.rram22(adc=aimc.ADCConfig(bits=8))
    high = peak_performance(cfg, "rram22")
    assert low.power_w > 0 and low.area_mm2 > 0 and low.tops > 0
    # a multi-level sense amp of b bits has 2^b - 1 comparators and decides in b x 2.4 ns, so
    # its power (energy per conversion / conversion time) grows as (2^b - 1 + ref) / b
    tech = get_technology("rram22")
    ref = tech.adc_reference_energy_fj / tech.adc_comparator_energy_fj
    ratio = (255 + ref) / 8 / ((31 + ref) / 5)
    assert high.power_by_component_w["adc"] == pytest.approx(
        ratio * low.power_by_component_w["adc"]
    )
    assert high.area_mm2 > low.area_mm2 and high.tops < low.tops


def test_report_renders():
    peak = peak_performance(aimc.presets.isaac(), "isaac")
    text = peak.table()
    assert "adc" in text and "41.29 TOPS" in text
    assert peak.to_dict()["power_by_component_w"]["adc"] == pytest.approx(32.26, rel=1e-3)


def test_bad_config():
    with pytest.raises(TypeError, match="AnalogConfig"):
        peak_performance("isaac", "isaac")
