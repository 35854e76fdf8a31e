"""Component models: energy, area and time of each circuit of a tile, core and chip.

Each function is a documented formula of its parameters; the technologies in
:mod:`aimc.cost.technologies` evaluate them with cited values. Units: energies in fJ unless
the name says pJ, capacitances in fF, areas in um^2 unless the name says mm^2, times in ns.

Sources of the forms:

* ``C V^2`` switching: the dynamic energy of charging a node of capacitance ``C`` to ``V`` and
  discharging it (half in the driver, half in the load), the basis of every CMOS energy model
  (NeuroSim's circuit modules, CACTI).
* ADCs by architecture: SAR converters follow the survey figures of merit (Walden
  ``FOM_W 2^b`` and the Schreier thermal-noise floor; Murmann's ADC survey, the form of
  Accelergy's ``hwcomponents-adc``); flash converters and NeuroSim's multi-level current
  sense amplifier (MLSA) use ``2^b - 1`` comparators against a reference ladder, so their
  energy and area grow with the number of levels (NeuroSim V1.4 ``MultilevelSenseAmp``:
  ``levelOutput - 1`` sense amplifiers per converter, each switching its latch and its share of
  the reference columns on every conversion); a ramp (single-slope or CCO) converter counts
  ``2^b`` clock steps per conversion.
* Comparator decision time grows linearly with resolution: a latch regenerates its input
  ``dV`` to a full swing in ``tau ln(V_dd / dV)`` and the LSB halves with each bit.
* Adders: a ripple/carry adder switches each of its ``bits`` full-adder cells once per add;
  an adder tree over ``n`` inputs has ``n - 1`` adders, their width growing by one bit per
  level (NeuroSim's ``AdderTree``).
* SRAM buffers (a CACTI-like rule): the bit line and word line lengths of a square array grow
  with the square root of its capacity, so the energy per bit does too,
  ``E(C) = E_ref sqrt(C / C_ref)``. Horowitz (ISSCC 2014, 45 nm) gives 0.16, 0.31 and
  1.56 pJ/bit for 8 KB, 32 KB and 1 MB; the rule gives 0.16, 0.32 and 1.81 from the 8 KB point.
  Area is ``capacity x cell area x (1 + periphery fraction)``.
* Wires: ``E = a C' L V^2`` per bit for a wire of capacitance ``C'`` per length, activity ``a``
  (intermediate metal 0.2 fF/um in 14-45 nm).
"""

from __future__ import annotations

import math

from aimc.cost.adc import adc_area_um2, adc_energy_pj

__all__ = [
    "ADC_TYPES",
    "switch_energy_fj",
    "row_drive_energy_fj",
    "adc_conversion_energy_fj",
    "adc_conversion_area_um2",
    "adc_conversion_time_ns",
    "adder_energy_fj",
    "adder_tree_energy_fj",
    "adder_tree_adders",
    "register_energy_fj",
    "sram_energy_pj_per_bit",
    "sram_area_mm2",
    "wire_energy_pj_per_bit",
    "mean_wire_mm",
    "subarray_bounding_box_um2",
]

ADC_TYPES = ("sar", "flash", "mlsa", "ramp")
"""ADC architectures the cost model prices."""


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 24:
        raise ValueError(f"ADC bits must be an int in 1..24, got {bits!r}")


def switch_energy_fj(c_ff: float, v: float) -> float:
    """``C V^2`` (fJ) of switching ``c_ff`` fF through ``v`` volts once."""
    _positive("capacitance", c_ff)
    _positive("voltage", v)
    return c_ff * v * v


def row_drive_energy_fj(
    cols: int, c_cell_ff: float, c_wire_ff_per_um: float, pitch_um: float, v: float
) -> float:
    """Energy of driving one word line (fJ): ``(cols (C_cell + C'_wire pitch)) V^2``.

    A row driver or word-line switch matrix charges the gate (or junction) of every cell on
    its line plus the line itself, one cell pitch per column.
    """
    return switch_energy_fj(cols * (c_cell_ff + c_wire_ff_per_um * pitch_um), v)


def adc_conversion_energy_fj(
    adc_type: str,
    bits: int,
    *,
    walden_fj: float = 0.0,
    schreier_db: float = 185.0,
    rate_gsps: float = 0.0,
    comparator_fj: float = 0.0,
    reference_fj: float = 0.0,
) -> float:
    """Energy of one conversion (fJ) of a ``bits``-bit converter of architecture ``adc_type``.

    * ``"sar"``: ``max(FOM_W 2^b, Schreier floor)`` (:func:`aimc.cost.adc.adc_energy_pj`);
    * ``"flash"`` / ``"mlsa"``: ``reference_fj + (2^b - 1) comparator_fj``;
    * ``"ramp"``: ``reference_fj + 2^b comparator_fj`` (one counter/comparator step per level).
    """
    _bits(bits)
    if adc_type == "sar":
        return 1e3 * adc_energy_pj(bits, walden_fj, schreier_db, rate_gsps)
    if adc_type in ("flash", "mlsa"):
        return reference_fj + (2**bits - 1) * comparator_fj
    if adc_type == "ramp":
        return reference_fj + 2**bits * comparator_fj
    raise ValueError(f"adc_type must be one of {ADC_TYPES}, got {adc_type!r}")


def adc_conversion_area_um2(
    adc_type: str,
    bits: int,
    *,
    area_8b_um2: float = 0.0,
    walden_fj: float = 0.0,
    schreier_db: float = 185.0,
    rate_gsps: float = 0.0,
    comparator_um2: float = 0.0,
    fixed_um2: float = 0.0,
) -> float:
    """Area of one converter (um^2).

    * ``"sar"``: the 8-bit area scaled by the energy ratio (both track the capacitor DAC);
    * ``"flash"`` / ``"mlsa"``: ``fixed_um2 + (2^b - 1) comparator_um2``;
    * ``"ramp"``: ``fixed_um2 + b comparator_um2`` (a ``b``-bit counter).
    """
    _bits(bits)
    if adc_type == "sar":
        return adc_area_um2(bits, area_8b_um2, walden_fj, schreier_db, rate_gsps)
    if adc_type in ("flash", "mlsa"):
        return fixed_um2 + (2**bits - 1) * comparator_um2
    if adc_type == "ramp":
        return fixed_um2 + bits * comparator_um2
    raise ValueError(f"adc_type must be one of {ADC_TYPES}, got {adc_type!r}")


def adc_conversion_time_ns(
    adc_type: str,
    bits: int,
    *,
    rate_gsps: float = 0.0,
    ns_per_bit: float = 0.0,
    clock_ghz: float = 1.0,
) -> float:
    """Time of one conversion (ns).

    * ``"sar"``: ``1 / rate_gsps`` (the converter's rated speed);
    * ``"flash"`` / ``"mlsa"``: ``bits x ns_per_bit`` (latch regeneration, see module doc);
    * ``"ramp"``: ``2^b`` clock steps.
    """
    _bits(bits)
    if adc_type == "sar":
        if not rate_gsps > 0:
            raise ValueError(f"a SAR ADC needs a rate > 0 GS/s, got {rate_gsps!r}")
        return 1.0 / rate_gsps
    if adc_type in ("flash", "mlsa"):
        if not ns_per_bit > 0:
            raise ValueError(f"a {adc_type} ADC needs adc_ns_per_bit > 0, got {ns_per_bit!r}")
        return bits * ns_per_bit
    if adc_type == "ramp":
        return 2**bits / clock_ghz
    raise ValueError(f"adc_type must be one of {ADC_TYPES}, got {adc_type!r}")


def adder_energy_fj(bits: int, full_adder_fj: float) -> float:
    """One ``bits``-wide add (fJ): every full-adder cell switches once."""
    return bits * full_adder_fj


def adder_tree_adders(n_inputs: int) -> int:
    """Adders of a binary tree over ``n_inputs`` operands: ``n - 1``."""
    return max(0, int(n_inputs) - 1)


def adder_tree_energy_fj(n_inputs: int, bits: int, full_adder_fj: float) -> float:
    """One reduction of ``n_inputs`` operands of ``bits`` bits in a binary adder tree (fJ).

    Level ``l`` (1-based) adds ``ceil(n / 2^l)`` pairs of ``bits + l - 1``-bit operands.
    """
    total, n, width = 0.0, int(n_inputs), int(bits)
    while n > 1:
        pairs = n // 2
        total += pairs * adder_energy_fj(width, full_adder_fj)
        n = pairs + n % 2
        width += 1
    return total


def register_energy_fj(bits: int, dff_fj: float) -> float:
    """Writing ``bits`` flip-flops once (fJ)."""
    return bits * dff_fj


def sram_energy_pj_per_bit(
    capacity_bits: float, ref_pj_per_bit: float = 0.16, ref_capacity_bits: float = 8 * 1024 * 8
) -> float:
    """SRAM access energy per bit (pJ), growing as ``sqrt(capacity)`` (module doc).

    Defaults: Horowitz's 8 KB point at 45 nm (0.16 pJ/bit).
    """
    _positive("capacity_bits", capacity_bits)
    return ref_pj_per_bit * math.sqrt(max(capacity_bits, 1.0) / ref_capacity_bits)


def sram_area_mm2(
    capacity_bits: float, node_nm: float, cell_f2: float = 160.0, periphery: float = 0.5
) -> float:
    """SRAM macro area (mm^2): ``capacity x cell_f2 F^2 x (1 + periphery)``.

    Defaults: NeuroSim's suggested 160 F^2 6T cell above 22 nm and a 50 % periphery share.
    """
    _positive("capacity_bits", capacity_bits)
    return capacity_bits * cell_f2 * (node_nm * 1e-3) ** 2 * (1.0 + periphery) * 1e-6


def wire_energy_pj_per_bit(
    length_mm: float, v: float, c_ff_per_um: float = 0.2, activity: float = 0.5
) -> float:
    """One bit over ``length_mm`` of wire (pJ): ``a C' L V^2``."""
    _positive("length_mm", length_mm)
    return activity * c_ff_per_um * length_mm * 1e3 * v * v * 1e-3


def mean_wire_mm(area_mm2: float) -> float:
    """Mean Manhattan distance (mm) from a chip's centre to a point of a square of ``area``:
    half the side (an H-tree or X-Y bus from a central buffer)."""
    _positive("area_mm2", area_mm2)
    return 0.5 * math.sqrt(area_mm2)


def subarray_bounding_box_um2(array_um2: float, row_um2: float, column_um2: float) -> float:
    """Area of a sub-array's bounding box (um^2) with its row periphery (drivers, switch
    matrices, decoders) beside the array, as tall as it, and its column periphery (muxes,
    sense amplifiers, ADCs, shift-adders) below it, as wide as it: the empty corner adds
    ``row x column / array``. This is why the layout of a tiny-cell array with large row
    drivers (1T1R RRAM with level shifters) is mostly empty (NeuroSim's floorplan)."""
    for name, v in (("array", array_um2), ("row", row_um2), ("column", column_um2)):
        _positive(name, v)
    if array_um2 == 0:
        return row_um2 + column_um2
    return array_um2 + row_um2 + column_um2 + row_um2 * column_um2 / array_um2
