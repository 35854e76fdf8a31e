"""ADC energy, area and conversion time from survey figures of merit (Murmann ADC survey).

Energy per conversion is the larger of two bounds (the form Accelergy's ``hwcomponents-adc``
uses):

* Walden: ``E = FOM_W * 2**bits``, with ``FOM_W`` in J per conversion step. It fits the 4-8 bit
  converters of compute-in-memory tiles, which are not limited by thermal noise.
* Schreier: ``E = 10**((SNDR - FOM_S) / 10) / 2`` with the ideal ``SNDR = 6.02 bits + 1.76`` dB.
  It is the thermal-noise floor that takes over at high resolution. ``FOM_S`` is derated by
  10 dB per decade of conversion rate above 100 MS/s (the bend of the survey's envelope).

Nominal bits stand in for the ENOB of the survey. Area follows energy: a converter's area is
taken proportional to its energy per conversion, anchored at the technology's 8-bit area
(first order: both track the switched capacitance; Accelergy's ISAAC-derived table grows a
little faster, 1200 -> 3002 um^2 from 8 to 10 bits against 1.67 -> 2.38 pJ).
"""

from __future__ import annotations

import math

__all__ = ["adc_energy_pj", "adc_area_um2", "adc_conversion_ns", "SCHREIER_CORNER_GSPS"]

SCHREIER_CORNER_GSPS = 0.1
"""Conversion rate (GS/s) above which ``FOM_S`` is derated by 10 dB per decade."""


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 24:
        raise ValueError(f"ADC bits must be an int in 1..24, got {bits!r}")


def adc_energy_pj(
    bits: int, fom_walden_fj: float, fom_schreier_db: float, rate_gsps: float = 0.0
) -> float:
    """Energy of one conversion in pJ: ``max(Walden, Schreier)`` bound.

    Args:
        bits: resolution in bits.
        fom_walden_fj: Walden figure of merit, fJ per conversion step.
        fom_schreier_db: Schreier figure of merit at low speed, dB.
        rate_gsps: conversion rate in GS/s; above 0.1 GS/s ``FOM_S`` drops 10 dB per decade.

    Examples:
        >>> round(adc_energy_pj(8, 20.0, 185.0, 1.0), 3)  # Walden term: 20 fJ * 256
        5.12
        >>> adc_energy_pj(16, 6.1, 185.0, 1.28) > 6.1e-3 * 2**16  # the Schreier floor took over
        True
    """
    _check_bits(bits)
    walden = fom_walden_fj * 1e-3 * 2.0**bits
    fom_s = fom_schreier_db
    if rate_gsps > SCHREIER_CORNER_GSPS:
        fom_s -= 10.0 * math.log10(rate_gsps / SCHREIER_CORNER_GSPS)
    sndr_db = 6.02 * bits + 1.76
    schreier = 10.0 ** ((sndr_db - fom_s) / 10.0) / 2.0 * 1e12
    return max(walden, schreier)


def adc_area_um2(
    bits: int,
    area_8b_um2: float,
    fom_walden_fj: float,
    fom_schreier_db: float,
    rate_gsps: float = 0.0,
) -> float:
    """Area of one ADC (um^2): the 8-bit area scaled by the energy ratio ``E(bits) / E(8)``."""
    e8 = adc_energy_pj(8, fom_walden_fj, fom_schreier_db, rate_gsps)
    return area_8b_um2 * adc_energy_pj(bits, fom_walden_fj, fom_schreier_db, rate_gsps) / e8


def adc_conversion_ns(rate_gsps: float) -> float:
    """Time of one conversion in ns at ``rate_gsps`` conversions per ns."""
    if not rate_gsps > 0:
        raise ValueError(f"ADC rate must be > 0 GS/s, got {rate_gsps!r}")
    return 1.0 / rate_gsps
