"""Event counts of an analog layer and what they cost: pure functions of the tile geometry.

One MVM of a group drives its ``in_rows`` inputs into every column tile (``n_col_tiles`` DAC
conversions per row and cycle), reads every weight-holding cell each cycle, samples and converts
every column of every row tile each cycle (a differential pair is one conversion: ``slices``
conversions per weight column), shift-adds the conversions when there are several slices or
cycles, and adds each row tile's partial sums into the outputs. Traffic: each tile reads its
inputs from the cluster buffer over the bus and router; partial sums travel to the accumulator;
finished outputs are written back. At full activity this is exactly the event rate that
:func:`aimc.cost.peak_performance` prices, so a network estimate and the peak figures agree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from aimc.config import AnalogConfig
from aimc.cost.components import (
    adc_conversion_area_um2,
    adc_conversion_energy_fj,
    adc_conversion_time_ns,
    adder_energy_fj,
    subarray_bounding_box_um2,
)
from aimc.cost.technology import Technology

__all__ = [
    "Counts",
    "COMPONENTS",
    "CORE_COMPONENTS",
    "CLUSTER_COMPONENTS",
    "input_bits",
    "dac_bits_per_conversion",
    "adc_bits",
    "cycle_time_ns",
    "mvm_time_ns",
    "analog_counts",
    "energy_pj",
    "core_area_um2",
    "cluster_area_mm2",
]

COMPONENTS = (
    "dac",
    "crossbar",
    "sample_hold",
    "adc",
    "shift_add",
    "registers",
    "control",
    "accumulate",
    "activation",
    "digital",
    "buffer",
    "interconnect",
    "io",
    "static",
)
"""Energy components of every report, in this order."""

CORE_COMPONENTS = ("dac", "crossbar", "sample_hold", "adc", "shift_add", "registers", "control")
CLUSTER_COMPONENTS = ("accumulate", "activation", "digital", "buffer", "interconnect")


@dataclass(frozen=True)
class Counts:
    """Events of one layer (or a whole network) during one forward of the example input.

    Attributes:
        mvms: matrix-vector products (input vectors x groups).
        tile_mvms: MVMs summed over the tiles that run them.
        input_cycles: MVMs x DAC input cycles.
        macs: multiply-accumulates (analog, or digital for digital layers).
        dac_conversions: row-input conversions (one per row, column tile and cycle).
        cells_read: device reads (weight-holding cells x cycles).
        sample_holds: column samples.
        adc_conversions: ADC conversions.
        shift_adds: shift-and-adds of ADC outputs (slices, bit-serial cycles).
        accumulations: row-tile partial sums added into outputs.
        input_register_bits: bits the DACs read from the core input registers.
        output_register_bits: bits written to the core output registers.
        buffer_read_bits: activation-buffer reads.
        buffer_write_bits: activation-buffer writes.
        interconnect_bits: bits moved over the bus and the network-on-chip.
        activations: activation-function evaluations.
        digital_ops: elementary ops of digital layers (pooling, norms, adds, digital MACs).
        io_bits: bits crossing the chip boundary.
    """

    mvms: int = 0
    tile_mvms: int = 0
    input_cycles: int = 0
    macs: int = 0
    dac_conversions: int = 0
    cells_read: int = 0
    sample_holds: int = 0
    adc_conversions: int = 0
    shift_adds: int = 0
    accumulations: int = 0
    input_register_bits: int = 0
    output_register_bits: int = 0
    buffer_read_bits: int = 0
    buffer_write_bits: int = 0
    interconnect_bits: int = 0
    activations: int = 0
    digital_ops: int = 0
    io_bits: int = 0

    def __add__(self, other: Counts) -> Counts:
        if not isinstance(other, Counts):
            return NotImplemented
        return Counts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in _FIELDS})

    def replace(self, **changes: int) -> Counts:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in _FIELDS}


_FIELDS = dataclasses.fields(Counts)


# ---------------------------------------------------------------------------------- bit widths
def input_bits(config: AnalogConfig, tech: Technology) -> int:
    """Bits of one layer input: the DAC's, or ``word_bits`` for an ideal DAC."""
    return int(config.dac.bits) if config.dac.bits is not None else tech.word_bits


def dac_bits_per_conversion(config: AnalogConfig, tech: Technology) -> int:
    """Bits one DAC conversion resolves: 1 when bit-serial, else the input bits."""
    return 1 if config.dac.bit_serial else input_bits(config, tech)


def adc_bits(config: AnalogConfig, tech: Technology) -> int:
    """ADC resolution; an ideal ADC (``bits=None``) is costed as a ``word_bits`` converter."""
    return int(config.adc.bits) if config.adc.bits is not None else tech.word_bits


def _pair(geometry: Any) -> int:
    """Device columns read by one conversion: 2 for differential pairs, else 1."""
    return max(1, geometry.cols_per_weight // geometry.slices)


def _adcs_per_tile(geometry: Any, tech: Technology) -> int:
    return math.ceil(geometry.cols / tech.cols_per_adc)


def reads_per_cycle(geometry: Any, config: AnalogConfig | None) -> tuple[int, int]:
    """``(reads summed over a group's row tiles, reads of the fullest row tile)`` per input
    cycle: a row tile of ``r`` rows takes ``ceil(r / parallel_rows)`` reads per column."""
    g = geometry
    if config is None or config.tile.parallel_rows is None:
        return g.n_row_tiles, 1
    full, rem = divmod(g.in_rows, g.row_block)
    total = full * config.tile.reads(g.row_block) + (config.tile.reads(rem) if rem else 0)
    return total, config.tile.reads(g.row_block)


def adc_energy_per_conversion_pj(config: AnalogConfig, tech: Technology) -> float:
    """Energy of one conversion (pJ) of the technology's ADC at the config's resolution."""
    return 1e-3 * adc_conversion_energy_fj(
        tech.adc_type,
        adc_bits(config, tech),
        walden_fj=tech.adc_fom_walden_fj,
        schreier_db=tech.adc_fom_schreier_db,
        rate_gsps=tech.adc_rate_gsps,
        comparator_fj=tech.adc_comparator_energy_fj,
        reference_fj=tech.adc_reference_energy_fj,
    )


def adc_time_ns(config: AnalogConfig | None, tech: Technology) -> float:
    """Time of one conversion (ns)."""
    bits = adc_bits(config, tech) if config is not None else 8
    return adc_conversion_time_ns(
        tech.adc_type,
        bits,
        rate_gsps=tech.adc_rate_gsps,
        ns_per_bit=tech.adc_ns_per_bit,
        clock_ghz=tech.clock_ghz,
    )


def cycle_time_ns(geometry: Any, tech: Technology, config: AnalogConfig | None = None) -> float:
    """One input cycle: the technology's cycle, or longer if the shared ADCs need more time
    (each converts its columns once per partial-row read)."""
    _, reads = reads_per_cycle(geometry, config)
    conversions = reads * math.ceil(min(tech.cols_per_adc, geometry.cols) / _pair(geometry))
    return max(tech.cycle_ns, conversions * adc_time_ns(config, tech))


def mvm_time_ns(geometry: Any, tech: Technology, config: AnalogConfig | None = None) -> float:
    """Time of one MVM on a tile: ``cycles`` input cycles."""
    return geometry.cycles * cycle_time_ns(geometry, tech, config)


def accumulator_bits(geometry: Any, config: AnalogConfig, tech: Technology) -> int:
    """Width of a shift-add accumulator: the ADC output grown by the input-bit shifts of
    bit-serial cycles, the slice shifts and the partial-row reads it sums."""
    g = geometry
    slice_bits = 0
    if g.slices > 1 and config.mapping.weight_bits is not None:
        slice_bits = config.mapping.weight_bits - config.mapping.weight_bits // g.slices
    _, reads = reads_per_cycle(g, config)
    return (
        adc_bits(config, tech) + (g.cycles - 1) + slice_bits + math.ceil(math.log2(max(reads, 1)))
    )


# ---------------------------------------------------------------------------------- counting
def analog_counts(
    geometry: Any, config: AnalogConfig, tech: Technology, mvms_per_group: int
) -> Counts:
    """Events of ``mvms_per_group`` MVMs (per group) of a layer with this tile ``geometry``."""
    g, m = geometry, int(mvms_per_group)
    cyc = g.cycles
    n_rt, n_ct = g.n_row_tiles, g.n_col_tiles
    rows = g.groups * g.in_rows  # word lines of all groups
    outs = g.groups * g.out_cols  # weight columns of all groups
    word = tech.word_bits
    reads, _ = reads_per_cycle(g, config)
    dac = m * cyc * rows * n_ct
    adc = m * cyc * reads * outs * g.slices
    buffer_read = m * rows * n_ct * input_bits(config, tech)
    partial_sums = m * n_rt * outs * word
    return Counts(
        mvms=m * g.groups,
        tile_mvms=m * g.n_tiles,
        input_cycles=m * g.groups * cyc,
        macs=m * g.groups * g.in_rows * g.out_cols,
        dac_conversions=dac,
        cells_read=m * cyc * rows * g.out_cols * g.cols_per_weight,
        sample_holds=m * cyc * reads * outs * g.cols_per_weight,
        adc_conversions=adc,
        shift_adds=adc if (g.slices > 1 or cyc > 1 or reads > n_rt) else 0,
        accumulations=m * n_rt * outs,
        input_register_bits=dac * dac_bits_per_conversion(config, tech),
        output_register_bits=partial_sums * cyc,
        buffer_read_bits=buffer_read,
        buffer_write_bits=m * outs * word,
        # inputs are broadcast once to the column tiles sharing them; partial sums travel back
        interconnect_bits=m * rows * input_bits(config, tech) + partial_sums,
    )


def energy_pj(
    counts: Counts,
    tech: Technology,
    *,
    config: AnalogConfig | None = None,
    crossbar_fj: float = 0.0,
    static_pj: float = 0.0,
    geometry: Any = None,
    wire_mm: float = 0.0,
) -> dict[str, float]:
    """Energy by component (pJ, keys :data:`COMPONENTS`) of ``counts``.

    ``config`` sets the converter resolutions (needed when there are conversions);
    ``crossbar_fj`` is the data-dependent array energy ``V^2 t sum(|x| G)``; ``geometry``
    sets the adder widths (technologies with ``full_adder_energy_fj``); ``wire_mm`` the
    global-wire distance of each interconnect bit.
    """
    t = tech
    dac = adc = 0.0
    e_shift, e_acc = t.shift_add_energy_pj, t.accumulate_energy_pj
    if config is not None:
        dac = counts.dac_conversions * dac_bits_per_conversion(config, t) * t.dac_energy_pj_per_bit
        if counts.adc_conversions:
            adc = counts.adc_conversions * adc_energy_per_conversion_pj(config, t)
        if t.full_adder_energy_fj > 0 and geometry is not None:
            width = accumulator_bits(geometry, config, t)
            e_shift += 1e-3 * adder_energy_fj(width, t.full_adder_energy_fj)
            e_acc += 1e-3 * adder_energy_fj(
                width + math.ceil(math.log2(max(geometry.n_row_tiles, 1))), t.full_adder_energy_fj
            )
    elif counts.dac_conversions or counts.adc_conversions:
        raise ValueError("energy_pj needs the layer's AnalogConfig to price its conversions")
    interconnect = t.bus_energy_pj_per_bit + t.router_energy_pj_per_bit_hop * t.avg_hops
    interconnect += t.wire_energy_pj_per_bit_mm * wire_mm
    return {
        "dac": dac,
        "crossbar": crossbar_fj * 1e-3,
        "sample_hold": counts.sample_holds * t.sample_hold_energy_pj,
        "adc": adc,
        "shift_add": counts.shift_adds * e_shift,
        "registers": counts.input_register_bits * t.input_register_energy_pj_per_bit
        + counts.output_register_bits * t.output_register_energy_pj_per_bit,
        "control": counts.tile_mvms * t.mvm_overhead_energy_pj,
        "accumulate": counts.accumulations * e_acc,
        "activation": counts.activations * t.activation_energy_pj,
        "digital": counts.digital_ops * t.digital_op_energy_pj,
        "buffer": counts.buffer_read_bits * t.buffer_read_energy_pj_per_bit
        + counts.buffer_write_bits * t.buffer_write_energy_pj_per_bit,
        "interconnect": counts.interconnect_bits * interconnect,
        "io": counts.io_bits * t.io_energy_pj_per_bit,
        "static": static_pj,
    }


# ---------------------------------------------------------------------------------- area
def core_area_um2(config: AnalogConfig, tech: Technology) -> dict[str, float]:
    """Area of one core by component (um^2) for tiles of ``config``."""
    t, rows, cols = tech, config.tile.rows, config.tile.cols
    weights = cols // config.mapping.cols_per_weight
    n_adc = math.ceil(cols / t.cols_per_adc)
    a_adc = adc_conversion_area_um2(
        t.adc_type,
        adc_bits(config, t),
        area_8b_um2=t.adc_area_um2,
        walden_fj=t.adc_fom_walden_fj,
        schreier_db=t.adc_fom_schreier_db,
        rate_gsps=t.adc_rate_gsps,
        comparator_um2=t.adc_comparator_area_um2,
        fixed_um2=t.adc_area_um2,
    )
    in_regs = rows * input_bits(config, t) * t.input_register_area_um2_per_bit
    out_regs = weights * t.word_bits * t.output_register_area_um2_per_bit
    per_tile = {
        "dac": rows * dac_bits_per_conversion(config, t) * t.dac_area_um2_per_bit,
        "crossbar": rows * cols * t.cell_area_um2,
        "sample_hold": cols * t.sample_hold_area_um2,
        "adc": n_adc * a_adc,
        "shift_add": n_adc * t.shift_add_area_um2,
        "registers": in_regs + out_regs,
        "floorplan": 0.0,
    }
    if t.tile_bounding_box:
        row = per_tile["dac"] + in_regs
        column = per_tile["sample_hold"] + per_tile["adc"] + per_tile["shift_add"] + out_regs
        box = subarray_bounding_box_um2(per_tile["crossbar"], row, column)
        per_tile["floorplan"] = box - per_tile["crossbar"] - row - column
    return {k: v * t.tiles_per_core for k, v in per_tile.items()}


def cluster_area_mm2(config: AnalogConfig, tech: Technology) -> dict[str, float]:
    """Area of one cluster by component (mm^2): its cores plus the shared digital parts."""
    t = tech
    area = {k: v * 1e-6 * t.cores_per_cluster for k, v in core_area_um2(config, t).items()}
    area.update(
        accumulate=t.accumulate_area_mm2,
        activation=t.activation_area_mm2,
        digital=t.digital_area_mm2,
        buffer=t.buffer_area_mm2,
        interconnect=t.bus_area_mm2 + t.router_area_mm2,
    )
    return area
