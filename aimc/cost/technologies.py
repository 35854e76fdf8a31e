"""Technology presets, each with the sources of its numbers.

Notation in the derivations: ``mW * ns / events = pJ``; ISAAC's Table I powers are at full
activity, so each per-event energy is a Table I power divided by the rate at which this cost
model counts that event at peak (see :func:`aimc.cost.peak_performance`).
"""

from __future__ import annotations

import math

from aimc.cost import components
from aimc.cost.technology import Technology, register_technology

__all__ = ["isaac", "hermes", "rram22", "sram22"]

# ---------------------------------------------------------------------------------------- ISAAC
# Shafiee et al., "ISAAC: A CNN Accelerator with In-Situ Analog Arithmetic in Crossbars",
# ISCA 2016, Table I (ISAAC-CE); the per-component values reappear in Accelergy's
# hwcomponents-library isaac.py and puma-simulator constants.py (docs/sources.md, ISAAC).
# Events this model counts at peak, for the aimc.presets.isaac() config (128x128 tiles, 16-bit
# weights on 8 columns = 16 weights per tile, 16-bit inputs streamed over 16 cycles of 100 ns):
_CYCLE_NS = 100.0  # one crossbar read
_MVM_NS = 16 * _CYCLE_NS  # 16 one-bit input cycles
_IMA_EVENTS = 8 * 128  # per IMA and cycle: DAC bits, S&H samples, ADC conversions, shift-adds
_TILES = 12 * 8  # crossbars per ISAAC tile (our cluster)
_IN_BITS = 128 * 16  # per crossbar MVM: inputs read from the buffer and sent on the bus
_OUT_BITS = 16 * 16  # per crossbar MVM: 16 outputs of 16 bits (partial sums, outputs)
_OUTS = 16  # outputs per crossbar MVM (one activation, one pooling op, one accumulation each)


@register_technology("isaac")
def isaac() -> Technology:
    """ISAAC (Shafiee et al., ISCA 2016), 32 nm, 1.2 GHz, Table I (ISAAC-CE).

    168 tiles (our clusters) of 12 IMAs (our cores) of 8 crossbars of 128x128 2-bit memristors;
    one 8-bit ADC per crossbar multiplexed over its 128 columns; 100 ns crossbar cycle; 64 KB
    eDRAM per tile; 4 HyperTransport links. With :func:`aimc.presets.isaac` the model gives the
    table back: 330 mW and 0.372 mm^2 per tile, 65.8 W and 85.4 mm^2 per chip, 41.3 TOPS.

    How we count efficiency (docs/sources.md, ISAAC): peak throughput is
    16-bit operations, 1 MAC = 2 ops: 168*12*8 crossbars * 16 weights * 128 rows * 2 ops per
    1.6 us = 41.3 TOPS, so CE = 41.3 TOPS / 85.4 mm^2 = 484 GOPS/(s mm^2) (the paper: 479.0) and
    PE = 41.3 TOPS / 65.8 W = 628 GOPS/W, the whole chip's Table I power at full activity,
    HyperTransport included. The same 41.3 TOPS, 0.48 TOPS/mm^2 and 0.63 TOPS/W appear for ISAAC
    in the review "Hardware implementation of memristor-based artificial neural networks"
    (Nature Communications 2024, Table 3). The 380.7 GOPS/W printed in the first ISCA version is
    not reproducible from Table I (it would need 108 W at 41.3 TOPS); the revision of Oct 5 2016
    "corrects some of the results for the ISAAC-PE and ISAAC-SE configurations". We therefore
    validate against Table I and the 41.3 TOPS it implies, not against 380.7.

    Derivations (Table I power x time / events counted at peak; area per instance):

    * ADC: 16 mW per 8 ADCs, 1024 conversions per 100 ns -> 1.5625 pJ = FOM_W * 2**8, so
      FOM_W = 6.10 fJ/cs (ISAAC's converter: about 6.5 fJ/cs at 1.2 GS/s). Rate 1.28 GS/s: 128
      columns per 100 ns cycle (Table I rounds to 1.2 GS/s; the 100 ns cycle and 41.3 TOPS need
      1.28). Area 9600 um^2 / 8 = 1200 um^2 (Accelergy's 8-bit ISAAC ADC: 1200 um^2).
    * DAC: 4 mW / 1024 one-bit DACs -> 0.39 pJ per row drive; 170 um^2 / 1024.
    * S+H: 10 uW / 1024 -> 0.98 fJ; 40 um^2 / 1024.
    * Crossbar: 0.3 mW per array -> 30 pJ per 100 ns read = 1.83 fJ per cell; with 0.2 V and
      g = 0.5 * 25 uS (the config's device) that is a 3.66 ns effective read pulse. 25 um^2 per
      128x128 array.
    * S+A (IMA): 0.2 mW / 1024 ADC outputs per cycle -> 0.0195 pJ; 240 um^2 per 8 ADCs.
    * IR 2 KB: 1.24 mW / 1024 bits per cycle -> 0.121 pJ/bit; 2100 um^2 / 16384 bits.
    * OR 256 B: 0.23 mW / 2048 bits per cycle -> 0.0112 pJ/bit; 770 um^2 / 2048 bits.
    * eDRAM 64 KB: 20.7 mW over 96 crossbar MVMs (2048 input + 256 output bits each) per
      1.6 us -> 0.150 pJ/bit (sources: 0.08 pJ/bit per 256-bit access); 0.083 mm^2. The tile
      OR (3 KB, 1.68 mW, 0.0032 mm^2) holds outputs before the eDRAM: 0.109 pJ per output bit,
      added to the write energy and the buffer area.
    * Bus 7 mW, router 42 mW / 4 tiles: per bit of the same traffic -> 0.0506 and 0.0760 pJ
      (~0.08 pJ/bit per router hop, docs/sources.md); 0.090 and 0.151 / 4 mm^2.
    * Sigmoid (2 units) 0.52 mW, S+A 0.05 mW, max-pool 0.4 mW: one each per output (1536 per
      1.6 us) -> 0.542, 0.052, 0.417 pJ; 0.0006, 0.00006, 0.00024 mm^2.
    * HyperTransport: 10.4 W for 4 links x 6.4 GB/s = 204.8 Gb/s -> 50.8 pJ/bit; 22.88 mm^2.
    """
    cluster_mvm_bits = _TILES * (_IN_BITS + _OUT_BITS)
    cluster_outs = _TILES * _OUTS
    g_avg_us = 0.5 * 25.0  # peak_g_fraction * g_max of aimc.presets.isaac()'s device
    cell_fj = 2.4 * _CYCLE_NS / (8 * 128 * 128) * 1e3  # 0.3 mW per array per read
    return Technology(
        name="isaac",
        node_nm=32.0,
        tiles_per_core=8,
        cores_per_cluster=12,
        clusters_per_chip=168,
        cycle_ns=_CYCLE_NS,
        clock_ghz=1.2,
        word_bits=16,
        v_read_v=0.2,
        t_read_ns=cell_fj / (0.2**2 * g_avg_us),  # fJ / (V^2 uS) = ns
        peak_g_fraction=0.5,
        cell_area_um2=200.0 / (8 * 128 * 128),
        dac_energy_pj_per_bit=4.0 * _CYCLE_NS / _IMA_EVENTS,
        dac_area_um2_per_bit=170.0 / 1024,
        sample_hold_energy_pj=0.01 * _CYCLE_NS / _IMA_EVENTS,
        sample_hold_area_um2=40.0 / 1024,
        adc_fom_walden_fj=16.0 * _CYCLE_NS / _IMA_EVENTS / 2**8 * 1e3,
        adc_fom_schreier_db=185.0,  # Murmann survey envelope, low speed (docs/sources.md)
        adc_rate_gsps=128 / _CYCLE_NS,
        adc_area_um2=9600.0 / 8,
        cols_per_adc=128,
        shift_add_energy_pj=0.2 * _CYCLE_NS / _IMA_EVENTS,
        shift_add_area_um2=240.0 / 8,
        input_register_energy_pj_per_bit=1.24 * _CYCLE_NS / _IMA_EVENTS,
        input_register_area_um2_per_bit=2100.0 / (2048 * 8),
        output_register_energy_pj_per_bit=0.23 * _CYCLE_NS / (8 * _OUT_BITS),
        output_register_area_um2_per_bit=770.0 / (256 * 8),
        accumulate_energy_pj=0.05 * _MVM_NS / cluster_outs,
        accumulate_area_mm2=0.00006,
        activation_energy_pj=0.52 * _MVM_NS / cluster_outs,
        activation_area_mm2=0.0006,
        digital_op_energy_pj=0.4 * _MVM_NS / cluster_outs,
        digital_area_mm2=0.00024,
        digital_ops_per_cycle=2.0,  # two sigmoid units per tile
        buffer_read_energy_pj_per_bit=20.7 * _MVM_NS / cluster_mvm_bits,
        buffer_write_energy_pj_per_bit=20.7 * _MVM_NS / cluster_mvm_bits
        + 1.68 * _MVM_NS / (_TILES * _OUT_BITS),
        buffer_area_mm2=0.083 + 0.0032,
        bus_energy_pj_per_bit=7.0 * _MVM_NS / cluster_mvm_bits,
        bus_area_mm2=0.090,
        router_energy_pj_per_bit_hop=(42.0 / 4) * _MVM_NS / cluster_mvm_bits,
        router_area_mm2=0.151 / 4,
        avg_hops=1.0,
        io_energy_pj_per_bit=10.4e3 / (4 * 6.4 * 8),  # mW / (Gb/s) = pJ/bit
        io_bandwidth_gbps=4 * 6.4 * 8,
        io_area_mm2=22.88,
    )


# --------------------------------------------------------------------------------------- HERMES
@register_technology("hermes")
def hermes() -> Technology:
    """IBM HERMES (Le Gallo et al., Nature Electronics 2023), 14 nm CMOS with PCM, 1 GHz.

    64 cores of 256x256 unit cells (4 PCM devices per weight; with :func:`aimc.presets.hermes`
    a 256-row x 512-device-column tile of differential pairs), one CCO-based ADC per column
    pair, 8-bit duration-coded (PWM) inputs and 8-bit outputs, a local digital processing unit
    (affine scaling, ReLU) per core. The paper reports 63.1 TOPS at 9.76 TOPS/W for 8-bit MVMs
    in the one-phase read mode, with no per-component breakdown, so:

    * MVM time 133 ns = 64 * 256 * 256 * 2 ops / 63.1 TOPS (the paper's own throughput):
      8-bit signed PWM at ~1 ns LSB (127 ns full scale) plus readout.
    * Read 0.2 V (docs/sources.md) for up to 127 ns; peak G = 0.25 g_max (differential: one
      device of each pair near 0, |w| averaging half its range).
    * ADC: FOM_W 40 fJ/cs, the survey's median for 6-8 ENOB at ~1 GS/s (docs/sources.md;
      CCO converters are not SAR-class efficient); 80 ns per conversion (256 LSB at the
      300 ps/LSB of HERMES-core, Khaddam-Aljameh et al., JSSC 2022); ~240 um^2 (4 um pitch).
    * Digital energies: Horowitz 45 nm figures scaled to 14 nm (logic x 14/45, SRAM x
      sqrt(14/45)): accumulate 0.02 pJ, activation (affine + ReLU) 0.5 pJ, buffer 0.05 pJ/bit,
      interconnect 0.02 pJ/bit bus + 0.1 pJ/bit/hop (0.08-0.16 pJ/bit/mm, docs/sources.md).
    * Calibrated (the one fitted number): 40 mW per computing core of power this model does
      not break down (1 GHz clock tree, control, CCO bias), so that the modelled one-phase
      peak lands near the measured 9.76 TOPS/W; it is charged per tile MVM (40 mW x 133 ns =
      5.32 nJ, component ``control``), so an idle core costs nothing (its clock and bias are
      gated) and a network using a few cores is not dominated by it. Leakage of the 14 nm
      logic proper is not modelled (0). The check against 63.1 TOPS and 9.76 TOPS/W is
      therefore a consistency check, not an independent prediction.
    * Areas: per core ~0.63 mm^2, from HERMES-core's 1.59 TOPS/mm^2 at ~0.99 TOPS per core
      (JSSC 2022); the split (array 0.35 mm^2, ADCs 0.06, LDPU 0.1, buffer 0.05, ...) is ours.
    * Off-chip I/O is left out of the peak (the 9.76 TOPS/W are MVM figures): bandwidth 0.
    """
    return Technology(
        name="hermes",
        node_nm=14.0,
        tiles_per_core=1,
        cores_per_cluster=1,
        clusters_per_chip=64,
        cycle_ns=133.0,
        clock_ghz=1.0,
        word_bits=8,
        v_read_v=0.2,
        t_read_ns=127.0,
        peak_g_fraction=0.25,
        cell_area_um2=2.7,
        dac_energy_pj_per_bit=0.05,
        dac_area_um2_per_bit=10.0,
        sample_hold_energy_pj=0.0,  # the CCO integrates the column current directly
        sample_hold_area_um2=0.0,
        adc_fom_walden_fj=40.0,
        adc_fom_schreier_db=185.0,
        adc_rate_gsps=1.0 / 80.0,
        adc_area_um2=240.0,
        cols_per_adc=2,
        shift_add_energy_pj=0.01,
        shift_add_area_um2=0.0,
        input_register_energy_pj_per_bit=0.01,
        input_register_area_um2_per_bit=0.1,
        output_register_energy_pj_per_bit=0.01,
        output_register_area_um2_per_bit=0.3,
        accumulate_energy_pj=0.02,
        accumulate_area_mm2=0.001,
        activation_energy_pj=0.5,
        activation_area_mm2=0.1,
        digital_op_energy_pj=0.05,
        digital_area_mm2=0.01,
        digital_ops_per_cycle=8.0,
        buffer_read_energy_pj_per_bit=0.05,
        buffer_write_energy_pj_per_bit=0.05,
        buffer_area_mm2=0.05,
        bus_energy_pj_per_bit=0.02,
        bus_area_mm2=0.01,
        router_energy_pj_per_bit_hop=0.1,
        router_area_mm2=0.02,
        avg_hops=1.0,
        io_energy_pj_per_bit=2.0,  # a modern SerDes, 1-5 pJ/bit [R] (docs/sources.md, wires)
        io_bandwidth_gbps=0.0,
        io_area_mm2=0.0,
        mvm_overhead_energy_pj=40.0 * 133.0,  # mW x ns per tile MVM
        tile_rows=256,
        tile_cols=512,
        cell="pcm",
    )


# ------------------------------------------------------------------------ NeuroSim 22 nm
# DNN+NeuroSim V1.4 (Param.cpp defaults and its circuit modules; user manual, Tables VI-VII).
_F_UM = 0.022  # feature size, um
_VDD = 0.85  # NeuroSim's 22 nm supply (PTM 22 nm, Technology.cpp)
_V_READ = 0.55  # NeuroSim V1.4's fixed read voltage at 22 nm (Param.cpp readVoltage)
_C_WIRE_FF_UM = 0.2  # intermediate-metal wire capacitance (14-45 nm), fF/um
_FA_FJ = 0.03e3 / 8 * (22.0 / 45.0) * (0.15 / 0.5)  # Horowitz 8-bit add, 22 nm, activity 0.15
_DFF_FJ = 1.0 * 0.5  # one flip-flop write at 22 nm (~1 fJ) x NeuroSim's DFF activity 0.5
_CMP_UM2 = 2.4  # one sense-amp level incl. its reference-column share (NeuroSim MLSA area)


def _neurosim22(name: str, cell: str, cell_f2: float, row_um2: float) -> Technology:
    """The NeuroSim V1.4 22 nm macro around a cell of ``cell_f2`` F^2 whose row periphery
    (word-line drivers and switch matrices) takes ``row_um2`` per row."""
    pitch_um = math.sqrt(cell_f2) * _F_UM
    row_fj = components.row_drive_energy_fj(128, 0.05, _C_WIRE_FF_UM, pitch_um, _VDD)
    return Technology(
        name=name,
        node_nm=22.0,
        tiles_per_core=1,
        cores_per_cluster=16,
        clusters_per_chip=1024,
        cycle_ns=1.0,
        clock_ghz=1.0,
        word_bits=8,
        v_read_v=_V_READ,
        t_read_ns=1.0,
        peak_g_fraction=0.5,
        cell_area_um2=cell_f2 * _F_UM**2,
        dac_energy_pj_per_bit=row_fj * 1e-3,
        dac_area_um2_per_bit=row_um2,
        sample_hold_energy_pj=components.switch_energy_fj(1.0, _V_READ) * 1e-3,
        sample_hold_area_um2=4.0,
        adc_fom_walden_fj=20.0,
        adc_fom_schreier_db=185.0,
        adc_rate_gsps=1.0,
        adc_area_um2=1.0,
        cols_per_adc=8,
        shift_add_energy_pj=16 * _DFF_FJ * 1e-3,
        shift_add_area_um2=120.0,
        input_register_energy_pj_per_bit=_DFF_FJ * 1e-3,
        input_register_area_um2_per_bit=0.5,
        output_register_energy_pj_per_bit=_DFF_FJ * 1e-3,
        output_register_area_um2_per_bit=0.5,
        accumulate_energy_pj=16 * _DFF_FJ * 1e-3,
        accumulate_area_mm2=0.01,
        activation_energy_pj=0.01,
        activation_area_mm2=0.001,
        digital_op_energy_pj=0.01,
        digital_area_mm2=0.001,
        digital_ops_per_cycle=64.0,
        buffer_read_energy_pj_per_bit=_DFF_FJ * 1e-3,
        buffer_write_energy_pj_per_bit=_DFF_FJ * 1e-3,
        buffer_area_mm2=components.sram_area_mm2(16 * 1024 * 8, 22.0),
        bus_energy_pj_per_bit=0.0,
        bus_area_mm2=0.02,
        router_energy_pj_per_bit_hop=0.0,
        router_area_mm2=0.0,
        avg_hops=1.0,
        io_energy_pj_per_bit=0.0,
        io_bandwidth_gbps=0.0,
        io_area_mm2=0.0,
        adc_type="mlsa",
        adc_comparator_energy_fj=2.0,
        adc_reference_energy_fj=components.switch_energy_fj(128 * 0.2 * pitch_um, _V_READ),
        adc_comparator_area_um2=_CMP_UM2,
        adc_ns_per_bit=2.4,
        full_adder_energy_fj=_FA_FJ,
        wire_energy_pj_per_bit_mm=components.wire_energy_pj_per_bit(1.0, _VDD, activity=0.18),
        tile_bounding_box=True,
        tile_rows=128,
        tile_cols=128,
        cell=cell,
    )


@register_technology("rram22")
def rram22() -> Technology:
    """DNN+NeuroSim V1.4's 22 nm 1T1R RRAM macro (pair it with :func:`aimc.presets.rram22`)."""
    return _neurosim22("rram22", "rram", 4 * 12, 22.0)


@register_technology("sram22")
def sram22() -> Technology:
    """DNN+NeuroSim V1.4's 22 nm SRAM macro (pair it with :func:`aimc.presets.sram22`)."""
    return _neurosim22("sram22", "sram", 10 * 28, 4.7)
