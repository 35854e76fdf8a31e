"""ADC energy model: Walden FOM x 2^bits with a Schreier floor (Murmann survey)."""

from __future__ import annotations

import pytest

from aimc.cost import adc_area_um2, adc_energy_pj


def test_reference_checks():
    # docs/sources.md: 8 b at 1 GS/s with 20 fJ/cs -> 5.1 pJ; 4 b -> 0.32 pJ; 6 b -> 1.3 pJ.
    assert adc_energy_pj(8, 20.0, 185.0, 1.0) == pytest.approx(5.12)
    assert adc_energy_pj(4, 20.0, 185.0, 1.0) == pytest.approx(0.32)
    assert adc_energy_pj(6, 20.0, 185.0, 1.0) == pytest.approx(1.28)
    # ... and at 10 b the Walden term still dominates (20.5 pJ).
    assert adc_energy_pj(10, 20.0, 185.0, 1.0) == pytest.approx(20.48)


@pytest.mark.parametrize("bits", range(2, 12))
def test_doubles_per_bit_in_the_walden_regime(bits):
    ratio = adc_energy_pj(bits + 1, 20.0, 185.0, 1.0) / adc_energy_pj(bits, 20.0, 185.0, 1.0)
    assert ratio == pytest.approx(2.0)


def test_schreier_floor_takes_over_at_high_resolution():
    fom_w, fom_s = 1.0, 185.0
    e16 = adc_energy_pj(16, fom_w, fom_s)
    assert e16 > fom_w * 1e-3 * 2**16
    # The thermal floor grows 4x per bit (6.02 dB), faster than Walden's 2x.
    assert adc_energy_pj(18, fom_w, fom_s) / adc_energy_pj(17, fom_w, fom_s) == pytest.approx(
        10**0.602, rel=1e-6
    )


def test_speed_derates_the_schreier_floor():
    assert adc_energy_pj(14, 1.0, 185.0, 10.0) > adc_energy_pj(14, 1.0, 185.0, 0.01)


def test_area_follows_energy_and_is_anchored_at_8_bits():
    assert adc_area_um2(8, 1200.0, 6.1, 185.0, 1.28) == pytest.approx(1200.0)
    assert adc_area_um2(6, 1200.0, 6.1, 185.0, 1.28) == pytest.approx(300.0)


def test_bad_bits():
    with pytest.raises(ValueError, match="ADC bits"):
        adc_energy_pj(0, 20.0, 185.0)
