"""``Technology``: energy, latency and area per component of an analog chip, and its registry.

The architecture (tile size, cells per weight, DAC/ADC bits, bit-serial cycles) comes from the
:class:`~aimc.config.AnalogConfig` the accuracy simulation uses; a ``Technology`` adds what each
event costs and how tiles are grouped. The hierarchy is *tile* (one crossbar) -> *core* (tiles
sharing input/output registers, ADCs and shift-add units; ISAAC's IMA) -> *cluster* (cores
sharing a buffer, a bus, a router and the digital units; ISAAC's "tile") -> *chip*.

Every field is a plain number with its unit in the name, so a technology is a Hydra structured
config and a YAML file. Presets live in :mod:`aimc.cost.technologies` and are found by name::

    tech = get_technology("isaac")                       # a fresh instance
    tech = get_technology("isaac", adc_fom_walden_fj=20)  # with overrides
    tech = load_technology("my_chip.yaml")               # every field, or ``preset:`` + overrides
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from aimc.cost.components import ADC_TYPES
from device_models.registry import Registry

__all__ = [
    "Technology",
    "register_technology",
    "get_technology",
    "technology_names",
    "list_technologies",
    "load_technology",
    "resolve_technology",
]

_INT_FIELDS = ("tiles_per_core", "cores_per_cluster", "clusters_per_chip", "cols_per_adc")
_INT_FIELDS += ("word_bits", "tile_rows", "tile_cols")
_BOOL_FIELDS = ("power_gating", "tile_bounding_box")
_POSITIVE = (
    "node_nm",
    "clock_ghz",
    "cycle_ns",
    "v_read_v",
    "t_read_ns",
    "peak_g_fraction",
    "adc_rate_gsps",
    "adc_area_um2",
    "digital_ops_per_cycle",
)


@dataclass
class Technology:
    """Energy, latency and area of each component of an analog in-memory-computing chip.

    Energies are per event (pJ), areas per instance (um^2 inside a core, mm^2 per cluster),
    times in ns. Every field is required except the leakage powers; all are finite and >= 0,
    and the sizes, clocks and times are > 0.

    Attributes:
        name: the technology's name (reports print it).
        node_nm: CMOS node in nm (scales the digital baseline from Horowitz's 45 nm).
        tiles_per_core: tiles (crossbars) per core.
        cores_per_cluster: cores per cluster.
        clusters_per_chip: clusters per chip.
        cycle_ns: one input cycle of a tile in ns (drive rows, integrate, sample); an MVM takes
            ``cycles`` of them, or longer when the ADCs cannot convert a tile's columns in time.
        clock_ghz: clock of the digital units (digital layers' latency).
        word_bits: bits of a digital activation or partial sum (buffer and interconnect words).
        v_read_v: row read voltage at full-scale input, V.
        t_read_ns: time a full-scale input drives a row per input cycle, ns. Cell energy is
            ``v_read_v**2 * G * t_read_ns * |x|`` (duration-coded inputs).
        peak_g_fraction: mean programmed conductance over ``g_max`` assumed at peak activity.
        cell_area_um2: area of one device (cell) of a tile, um^2.
        dac_energy_pj_per_bit: energy of one row-input conversion per DAC bit, pJ (a bit-serial
            1-bit DAC costs this per cycle).
        dac_area_um2_per_bit: area of a row DAC per bit, um^2.
        sample_hold_energy_pj: one sample of one device column, pJ.
        sample_hold_area_um2: one sample-and-hold (one per device column), um^2.
        adc_fom_walden_fj: Walden figure of merit, fJ per conversion step.
        adc_fom_schreier_db: Schreier figure of merit at low speed, dB (the noise floor).
        adc_rate_gsps: conversions per ns of one ADC.
        adc_area_um2: area of one 8-bit ADC, um^2 (other resolutions scale with energy).
        cols_per_adc: device columns multiplexed onto one ADC (a differential pair is read as
            one conversion).
        shift_add_energy_pj: one shift-and-add of an ADC output, pJ.
        shift_add_area_um2: shift-and-add area per ADC it serves, um^2.
        input_register_energy_pj_per_bit: core input register, per bit a DAC reads, pJ.
        input_register_area_um2_per_bit: per bit of capacity (``rows`` x input bits per tile).
        output_register_energy_pj_per_bit: core output register, per bit written, pJ.
        output_register_area_um2_per_bit: per bit of capacity (weights x ``word_bits`` per tile).
        accumulate_energy_pj: adding one row tile's partial sum into an output, pJ.
        accumulate_area_mm2: accumulators per cluster, mm^2.
        activation_energy_pj: one activation-function evaluation, pJ.
        activation_area_mm2: activation units per cluster, mm^2.
        digital_op_energy_pj: one elementary op of a digital layer (pooling compare, norm
            scale, residual add, digital MAC), pJ.
        digital_area_mm2: other digital units (pooling, ...) per cluster, mm^2.
        digital_ops_per_cycle: elementary digital ops per clock per cluster (digital latency).
        buffer_read_energy_pj_per_bit: activation buffer (SRAM/eDRAM) read, pJ per bit.
        buffer_write_energy_pj_per_bit: activation buffer write, pJ per bit.
        buffer_area_mm2: activation buffer per cluster, mm^2.
        bus_energy_pj_per_bit: buffer-to-core bus, pJ per bit.
        bus_area_mm2: bus per cluster, mm^2.
        router_energy_pj_per_bit_hop: network-on-chip, pJ per bit per hop.
        router_area_mm2: router share per cluster, mm^2.
        avg_hops: mean router hops of a transfer.
        io_energy_pj_per_bit: off-chip link, pJ per bit.
        io_bandwidth_gbps: off-chip bandwidth in Gb/s (its power counts at peak).
        io_area_mm2: off-chip links per chip, mm^2.
        leakage_mw_per_core: static power of a core in use, mW.
        leakage_mw_per_cluster: static power of a cluster in use, mW.
        power_gating: ``True``: a core or cluster leaks only while its layer runs (idle ones
            are power-gated); ``False``: every core and cluster the model occupies leaks for the
            whole inference.
        adc_type: converter architecture (:data:`aimc.cost.components.ADC_TYPES`): ``"sar"``
            (figure-of-merit model from ``adc_fom_*``), ``"flash"`` or ``"mlsa"`` (NeuroSim's
            multi-level sense amplifier: ``2^b - 1`` comparators), ``"ramp"`` (``2^b`` steps).
        adc_comparator_energy_fj, adc_reference_energy_fj: flash/MLSA/ramp energy per
            comparator (or step) and the fixed part per conversion, fJ.
        adc_comparator_area_um2: flash/MLSA area per comparator (ramp: per counter bit), um^2;
            ``adc_area_um2`` is then the fixed part per converter.
        adc_ns_per_bit: flash/MLSA decision time per bit of resolution, ns.
        full_adder_energy_fj: one full-adder cell switching, fJ. When > 0, shift-adds and
            accumulations are priced by their bit widths (``shift_add_energy_pj`` and
            ``accumulate_energy_pj`` then hold their register parts).
        mvm_overhead_energy_pj: energy per tile MVM not broken down into the components above
            (control, clock tree, bias), pJ; it is spent only when a tile computes.
        wire_energy_pj_per_bit_mm: global interconnect (H-tree / X-Y bus) per bit and mm; the
            distance is half the side of the chip area the model occupies.
        tile_bounding_box: price each tile as the bounding box of its array, row periphery
            (DACs, drivers) and column periphery (S&H, ADCs, shift-adders, output registers)
            (:func:`aimc.cost.components.subarray_bounding_box_um2`); ``False``: the sum.
        tile_rows, tile_cols: the tile size the technology's floorplan and energies were
            derived for (0: any); another size is costed with a warning.
        cell: the registered device model whose cell the technology's cell area and read
            energies describe (``""``: any); another device is costed with a warning.
    """

    name: str
    node_nm: float
    tiles_per_core: int
    cores_per_cluster: int
    clusters_per_chip: int
    cycle_ns: float
    clock_ghz: float
    word_bits: int
    v_read_v: float
    t_read_ns: float
    peak_g_fraction: float
    cell_area_um2: float
    dac_energy_pj_per_bit: float
    dac_area_um2_per_bit: float
    sample_hold_energy_pj: float
    sample_hold_area_um2: float
    adc_fom_walden_fj: float
    adc_fom_schreier_db: float
    adc_rate_gsps: float
    adc_area_um2: float
    cols_per_adc: int
    shift_add_energy_pj: float
    shift_add_area_um2: float
    input_register_energy_pj_per_bit: float
    input_register_area_um2_per_bit: float
    output_register_energy_pj_per_bit: float
    output_register_area_um2_per_bit: float
    accumulate_energy_pj: float
    accumulate_area_mm2: float
    activation_energy_pj: float
    activation_area_mm2: float
    digital_op_energy_pj: float
    digital_area_mm2: float
    digital_ops_per_cycle: float
    buffer_read_energy_pj_per_bit: float
    buffer_write_energy_pj_per_bit: float
    buffer_area_mm2: float
    bus_energy_pj_per_bit: float
    bus_area_mm2: float
    router_energy_pj_per_bit_hop: float
    router_area_mm2: float
    avg_hops: float
    io_energy_pj_per_bit: float
    io_bandwidth_gbps: float
    io_area_mm2: float
    leakage_mw_per_core: float = 0.0
    leakage_mw_per_cluster: float = 0.0
    power_gating: bool = True
    adc_type: str = "sar"
    adc_comparator_energy_fj: float = 0.0
    adc_reference_energy_fj: float = 0.0
    adc_comparator_area_um2: float = 0.0
    adc_ns_per_bit: float = 0.0
    full_adder_energy_fj: float = 0.0
    mvm_overhead_energy_pj: float = 0.0
    wire_energy_pj_per_bit_mm: float = 0.0
    tile_bounding_box: bool = False
    tile_rows: int = 0
    tile_cols: int = 0
    cell: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Technology.name must be a non-empty str, got {self.name!r}")
        for f in dataclasses.fields(self):
            if f.name in ("name", "adc_type", "cell"):
                continue
            if f.name in _BOOL_FIELDS:
                if not isinstance(getattr(self, f.name), bool):
                    raise TypeError(
                        f"Technology.{f.name} must be True or False, got {getattr(self, f.name)!r}"
                    )
                continue
            value = getattr(self, f.name)
            if f.name in _INT_FIELDS:
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                    setattr(self, f.name, value)
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"Technology.{f.name} must be an int, got {value!r}")
                if value < (0 if f.name in ("tile_rows", "tile_cols") else 1):
                    raise ValueError(f"Technology.{f.name} must be >= 1, got {value}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"Technology.{f.name} must be a number, got {type(value).__name__} {value!r}"
                )
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Technology.{f.name} must be a finite number >= 0, got {value!r}")
            if f.name in _POSITIVE and value == 0:
                raise ValueError(f"Technology.{f.name} must be > 0, got {value!r}")
            setattr(self, f.name, float(value))
        if self.adc_type not in ADC_TYPES:
            raise ValueError(
                f"Technology.adc_type must be one of {ADC_TYPES}, got {self.adc_type!r}"
            )
        if self.adc_type in ("flash", "mlsa") and self.adc_ns_per_bit <= 0:
            raise ValueError(
                f"Technology.adc_ns_per_bit must be > 0 for adc_type={self.adc_type!r} "
                "(the comparators' decision time per bit)"
            )
        if not isinstance(self.cell, str):
            raise TypeError(f"Technology.cell must be a device name (str), got {self.cell!r}")
        if self.peak_g_fraction > 1:
            raise ValueError(
                f"Technology.peak_g_fraction is a fraction of g_max in (0, 1], "
                f"got {self.peak_g_fraction}"
            )

    # ------------------------------------------------------------------ derived sizes
    @property
    def tiles_per_cluster(self) -> int:
        return self.tiles_per_core * self.cores_per_cluster

    @property
    def cores_per_chip(self) -> int:
        return self.cores_per_cluster * self.clusters_per_chip

    @property
    def tiles_per_chip(self) -> int:
        return self.tiles_per_cluster * self.clusters_per_chip

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def required_fields(cls) -> tuple[str, ...]:
        return tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "Technology") -> Technology:
        """Build from a mapping: either every required field, or ``preset: <name>`` plus
        overrides. Missing or unknown keys raise a ``ValueError`` that lists them."""
        if not isinstance(data, dict):
            raise TypeError(f"{source} must be a mapping of fields, got {type(data).__name__}")
        data = {k: v for k, v in data.items() if k != "_target_"}
        preset = data.pop("preset", None)
        known = set(cls.field_names())
        unknown = sorted(set(data) - known)
        if unknown:
            hints = [difflib.get_close_matches(k, known, n=1) for k in unknown]
            hint = "; ".join(f"{k!r} (did you mean {h[0]!r}?)" for k, h in zip(unknown, hints) if h)
            raise ValueError(
                f"{source} has unknown fields {unknown}" + (f": {hint}" if hint else "")
            )
        if preset is not None:
            return get_technology(preset, **data)
        missing = [k for k in cls.required_fields() if k not in data]
        if missing:
            raise ValueError(
                f"{source} is missing required fields {missing}; give every field, or "
                f"'preset: <name>' (one of {technology_names()}) plus the fields to override"
            )
        return cls(**data)

    def replace(self, **overrides: Any) -> Technology:
        """A copy with ``overrides`` (validated again)."""
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------- registry
TECHNOLOGIES: Registry[Callable[[], Technology]] = Registry("technology", "technologies")


def register_technology(
    name: str,
) -> Callable[[Callable[[], Technology]], Callable[[], Technology]]:
    """Register a zero-argument factory of a :class:`Technology` under ``name``."""
    if name in TECHNOLOGIES:
        raise ValueError(f"technology {name!r} is already registered")
    return TECHNOLOGIES.register(name)


def technology_names() -> list[str]:
    """Names of the registered technologies, sorted."""
    return TECHNOLOGIES.names()


list_technologies = technology_names


def get_technology(name: str, **overrides: Any) -> Technology:
    """A fresh instance of the technology registered as ``name``, with field ``overrides``.

    Raises:
        KeyError: unknown name; the message lists the known names and the closest match.
    """
    tech = TECHNOLOGIES.lookup(name)()
    if overrides:
        unknown = sorted(set(overrides) - set(Technology.field_names()))
        if unknown:
            raise ValueError(f"get_technology({name!r}): unknown fields {unknown}")
        tech = dataclasses.replace(tech, **overrides)
    return tech


def load_technology(path: Union[str, Path]) -> Technology:
    """Read a technology from a YAML file (every field, or ``preset: <name>`` + overrides)."""
    import yaml  # PyYAML; imported here so that the cost model does not need it otherwise

    path = Path(path)
    with path.open() as fh:
        data = yaml.safe_load(fh)
    return Technology.from_dict(data or {}, source=f"technology YAML {path}")


def resolve_technology(technology: Union[None, str, Path, dict, Technology]) -> Technology:
    """A :class:`Technology` from a name, a YAML path, a mapping or an instance."""
    if isinstance(technology, Technology):
        return technology
    if isinstance(technology, dict):
        return Technology.from_dict(technology)
    if isinstance(technology, Path) or (
        isinstance(technology, str) and technology.endswith((".yaml", ".yml"))
    ):
        return load_technology(technology)
    if isinstance(technology, str):
        return get_technology(technology)
    raise TypeError(
        "technology must be a name (one of "
        f"{technology_names()}), a YAML path, a dict or an aimc.cost.Technology, "
        f"got {type(technology).__name__}"
    )
