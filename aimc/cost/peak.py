"""Peak figures of a chip: power, area and throughput at full activity.

Full activity: every tile of the chip runs back-to-back MVMs that fill it (``rows`` inputs,
``cols // cols_per_weight`` weight columns), all rows at full-scale input, programmed
conductances averaging ``peak_g_fraction * g_max``, every output passing one accumulation, one
activation and one digital op, and the off-chip links at full bandwidth. Throughput counts
``2 * rows * weights`` operations (1 MAC = 2 ops) per tile per MVM time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from aimc.config import AnalogConfig
from aimc.cost.counts import (
    CLUSTER_COMPONENTS,
    CORE_COMPONENTS,
    analog_counts,
    cluster_area_mm2,
    core_area_um2,
    energy_pj,
    mvm_time_ns,
)
from aimc.cost.technology import Technology, resolve_technology

__all__ = ["PeakReport", "peak_performance", "full_tile_geometry"]


def full_tile_geometry(config: AnalogConfig) -> Any:
    """The geometry of one tile filled with weights (one group, one row and column tile)."""
    from aimc.tile.geometry import TileGeometry  # deferred: aimc.tile imports aimc

    out_cols = config.tile.cols // config.mapping.cols_per_weight
    return TileGeometry.for_config(config, 1, config.tile.rows, out_cols)


@dataclass(frozen=True)
class PeakReport:
    """Peak power, area and throughput of one chip (and of one core and one cluster).

    Attributes:
        technology: technology name.
        tops: peak throughput, 1e12 ops/s (1 MAC = 2 ops).
        power_w: chip power at full activity, W.
        area_mm2: chip area, mm^2.
        tops_per_w, tops_per_mm2: peak efficiency and density.
        mvm_time_ns: one MVM of a tile.
        tiles: tiles per chip.
        power_by_component_w, area_by_component_mm2: the chip's power and area by component.
        core_power_w, core_area_mm2: one core (ISAAC's IMA).
        core_power_by_component_w, core_area_by_component_mm2: one core by component.
        cluster_power_w, cluster_area_mm2: one cluster (ISAAC's tile).
    """

    technology: str
    tops: float
    power_w: float
    area_mm2: float
    tops_per_w: float
    tops_per_mm2: float
    mvm_time_ns: float
    tiles: int
    power_by_component_w: dict[str, float] = field(default_factory=dict)
    area_by_component_mm2: dict[str, float] = field(default_factory=dict)
    core_power_w: float = 0.0
    core_area_mm2: float = 0.0
    core_power_by_component_w: dict[str, float] = field(default_factory=dict)
    core_area_by_component_mm2: dict[str, float] = field(default_factory=dict)
    cluster_power_w: float = 0.0
    cluster_area_mm2: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "technology": self.technology,
            "tops": self.tops,
            "power_w": self.power_w,
            "area_mm2": self.area_mm2,
            "tops_per_w": self.tops_per_w,
            "tops_per_mm2": self.tops_per_mm2,
            "mvm_time_ns": self.mvm_time_ns,
            "tiles": self.tiles,
            "power_by_component_w": dict(self.power_by_component_w),
            "area_by_component_mm2": dict(self.area_by_component_mm2),
            "core_power_w": self.core_power_w,
            "core_area_mm2": self.core_area_mm2,
            "core_power_by_component_w": dict(self.core_power_by_component_w),
            "core_area_by_component_mm2": dict(self.core_area_by_component_mm2),
            "cluster_power_w": self.cluster_power_w,
            "cluster_area_mm2": self.cluster_area_mm2,
        }

    def table(self) -> str:
        lines = [
            f"peak of one {self.technology} chip: {self.tops:.2f} TOPS, {self.power_w:.3g} W, "
            f"{self.area_mm2:.4g} mm^2, {self.tops_per_w:.3g} TOPS/W, "
            f"{self.tops_per_mm2:.3g} TOPS/mm^2 ({self.tiles} tiles, "
            f"MVM {self.mvm_time_ns:.4g} ns)",
            f"{'component':<14}{'power W':>12}{'share':>8}{'area mm^2':>12}{'share':>8}",
        ]
        for key, p in self.power_by_component_w.items():
            a = self.area_by_component_mm2.get(key, 0.0)
            lines.append(
                f"{key:<14}{p:>12.4g}{p / self.power_w:>8.1%}{a:>12.4g}{a / self.area_mm2:>8.1%}"
            )
        return "\n".join(lines)


def peak_performance(
    config: AnalogConfig, technology: Union[str, Technology, dict] = "isaac"
) -> PeakReport:
    """Power, area and throughput of one chip of ``technology`` built for ``config`` at full
    activity (see the module docstring for what "full" means)."""
    if not isinstance(config, AnalogConfig):
        raise TypeError(f"config must be an aimc.AnalogConfig, got {type(config).__name__}")
    tech = resolve_technology(technology)
    geom = full_tile_geometry(config)
    t_mvm = mvm_time_ns(geom, tech, config)
    counts = analog_counts(geom, config, tech, 1)
    weights = geom.out_cols
    counts = counts.replace(activations=weights, digital_ops=weights)
    pulses = geom.cycles if config.dac.bit_serial else 1
    g_row = geom.out_cols * geom.cols_per_weight * config.device.g_max * tech.peak_g_fraction
    crossbar_fj = tech.v_read_v**2 * tech.t_read_ns * pulses * geom.rows * g_row
    tile_pj = energy_pj(counts, tech, config=config, crossbar_fj=crossbar_fj, geometry=geom)

    # mW = pJ / ns
    core_mw = {k: tile_pj[k] / t_mvm * tech.tiles_per_core for k in CORE_COMPONENTS}
    core_mw["static"] = tech.leakage_mw_per_core
    core_total_mw = sum(core_mw.values())
    cluster_mw = {k: v * tech.cores_per_cluster for k, v in core_mw.items()}
    for k in CLUSTER_COMPONENTS:
        cluster_mw[k] = tile_pj[k] / t_mvm * tech.tiles_per_cluster
    cluster_mw["static"] += tech.leakage_mw_per_cluster
    chip_w = {k: v * tech.clusters_per_chip * 1e-3 for k, v in cluster_mw.items()}
    chip_w["io"] = tech.io_energy_pj_per_bit * tech.io_bandwidth_gbps * 1e-3
    power_w = sum(chip_w.values())

    core_um2 = core_area_um2(config, tech)
    cluster_mm2 = cluster_area_mm2(config, tech)
    chip_mm2 = {k: v * tech.clusters_per_chip for k, v in cluster_mm2.items()}
    chip_mm2["io"] = tech.io_area_mm2
    area_mm2 = sum(chip_mm2.values())

    tiles = tech.tiles_per_chip
    tops = 2.0 * geom.rows * weights * tiles / t_mvm * 1e-3  # ops per ns -> TOPS
    return PeakReport(
        technology=tech.name,
        tops=tops,
        power_w=power_w,
        area_mm2=area_mm2,
        tops_per_w=tops / power_w,
        tops_per_mm2=tops / area_mm2,
        mvm_time_ns=t_mvm,
        tiles=tiles,
        power_by_component_w=chip_w,
        area_by_component_mm2=chip_mm2,
        core_power_w=core_total_mw * 1e-3,
        core_area_mm2=sum(core_um2.values()) * 1e-6,
        core_power_by_component_w={k: v * 1e-3 for k, v in core_mw.items()},
        core_area_by_component_mm2={k: v * 1e-6 for k, v in core_um2.items()},
        cluster_power_w=sum(cluster_mw.values()) * 1e-3,
        cluster_area_mm2=sum(cluster_mm2.values()),
    )
