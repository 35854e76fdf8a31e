"""``estimate_cost``: a network's energy, latency and area from one forward with counters on.

The model runs once on the example input (eval mode, no grad). Forward hooks on the analog
layers count their MVMs (conv: batch x output pixels, so strides and padding are exact) and
their data-dependent crossbar energy ``V^2 t sum_rows(sum_MVMs |x_norm| * sum_cols G)``. Hooks
on the digital leaf modules, and a ``TorchFunctionMode`` for the tensor ops written in
``forward`` bodies (residual adds, functional activations and pooling), count the digital work
between analog layers: activations (one activation-unit evaluation per output element),
pooling (one op per input element), norms (two ops per element), elementwise ops (one per
output element) and un-converted digital linear/conv layers (one op per MAC).

Latency: a layer's MVMs run back to back on its tiles (all tiles of a layer in parallel):
``MVMs per group x cycles x cycle time``; a digital layer takes its ops over the digital units
of the clusters in use. ``latency_s`` sums the layers (one inference of the example batch);
``pipelined_interval_s`` is the slowest layer, the interval of a layer pipeline (ISAAC's).
Static energy is the leakage of the cores and clusters in use over each layer's time. Off-chip
I/O: the network's input and output, and the inputs of layers that start on another chip.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from aimc.cost.activity import Entry, Recorder, eval_mode, first_tensor, tensors
from aimc.cost.components import mean_wire_mm
from aimc.cost.counts import (
    CLUSTER_COMPONENTS,
    COMPONENTS,
    Counts,
    analog_counts,
    cluster_area_mm2,
    core_area_um2,
    energy_pj,
    mvm_time_ns,
)
from aimc.cost.mapper import MappingReport, map_model, replicas_for
from aimc.cost.technology import Technology, resolve_technology

__all__ = ["LayerCost", "CostTotal", "DigitalBaseline", "CostReport", "estimate_cost"]

log = logging.getLogger(__name__)


# -------------------------------------------------------------------- reports
@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer (analog, or a digital layer/op between them).

    Attributes:
        name: qualified module name (``scope:op`` for tensor ops in a ``forward`` body).
        kind: ``"analog"`` or ``"digital"``.
        module: class name or op name.
        tiles, utilization: its tiles (0 and 0.0 for digital layers).
        counts: the events it caused (:class:`~aimc.cost.Counts`).
        energy_by_component_j: energy by component (keys ``aimc.cost.COMPONENTS``); they add
            up to ``energy_j``.
        energy_j, latency_s, area_mm2: its energy, time and the area of its tiles.
        ops: operations (2 per MAC).
    """

    name: str
    kind: str
    module: str
    tiles: int
    utilization: float
    counts: Counts
    energy_by_component_j: dict[str, float]
    energy_j: float
    latency_s: float
    area_mm2: float
    ops: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "module": self.module,
            "tiles": self.tiles,
            "utilization": self.utilization,
            "counts": self.counts.to_dict(),
            "energy_by_component_j": dict(self.energy_by_component_j),
            "energy_j": self.energy_j,
            "latency_s": self.latency_s,
            "area_mm2": self.area_mm2,
            "ops": self.ops,
        }


@dataclass(frozen=True)
class CostTotal:
    """Totals of one forward of the example input.

    Attributes:
        energy_j: energy, J (the sum of the layers').
        latency_s: one pass of the example batch through the layers, s.
        area_mm2: area of the clusters the model occupies plus the chips' I/O.
        ops: operations (2 per MAC).
        tops, tops_per_w, tops_per_mm2: throughput over ``latency_s``, efficiency, density.
        pipelined_interval_s: the slowest layer (layers pipelined on their own tiles).
        pipelined_tops, pipelined_tops_per_mm2: throughput and density of that pipeline.
        throughput_per_s: inferences per second of that pipeline (batch / interval).
        batch: the example's batch size (first dimension).
        energy_by_component_j: energy by component.
        counts: the events of the whole network.
        tiles, utilization, n_chips: from the mapping.
    """

    energy_j: float
    latency_s: float
    area_mm2: float
    ops: int
    tops: float
    tops_per_w: float
    tops_per_mm2: float
    pipelined_interval_s: float
    pipelined_tops: float
    pipelined_tops_per_mm2: float
    throughput_per_s: float
    batch: int
    energy_by_component_j: dict[str, float]
    counts: Counts
    tiles: int
    utilization: float
    n_chips: int
    area_by_component_mm2: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["energy_by_component_j"] = dict(self.energy_by_component_j)
        d["area_by_component_mm2"] = dict(self.area_by_component_mm2)
        d["counts"] = self.counts.to_dict()
        return d


@dataclass(frozen=True)
class DigitalBaseline:
    """The same network on an INT8 digital accelerator (Horowitz, ISSCC 2014, 45 nm, scaled).

    On the same boundary as the analog estimate: per 8-bit MAC 0.23 pJ (8-bit multiply 0.2 +
    add 0.03) in place of the arrays and their converters; weights read once per forward from
    a 1 MB-class SRAM at 1.56 pJ/bit (perfect reuse); the activation buffers, interconnect,
    off-chip I/O, activation and other digital units priced exactly as in the analog report
    (the same data moves around the MAC units as around the arrays). Logic scales from 45 nm
    as ``node / 45``, SRAM as ``sqrt(node / 45)`` (memories scale more slowly than logic).

    Attributes:
        node_nm: node it is scaled to.
        energy_j: energy of one forward of the example input.
        energy_by_component_j: ``mac``, ``weight_sram``, ``buffer``, ``interconnect``, ``io``,
            ``digital``.
        tops_per_w: its efficiency.
        boundary: what its total covers (the analog report's boundary).
        analog_advantage: ``energy_j`` of the baseline over the analog estimate (>1: analog
            wins).
    """

    node_nm: float
    energy_j: float
    energy_by_component_j: dict[str, float]
    tops_per_w: float
    analog_advantage: float
    boundary: str = "chip"

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["energy_by_component_j"] = dict(self.energy_by_component_j)
        return d


@dataclass(frozen=True)
class CostReport:
    """What a network costs on a technology: per layer, in total, and against digital.

    Attributes:
        technology: the :class:`~aimc.cost.Technology` used.
        layers: :class:`LayerCost` per analog and digital layer, in execution order (analog
            layers that never ran come last, with zero counts).
        total: :class:`CostTotal`.
        digital_baseline: :class:`DigitalBaseline`.
        mapping: the :class:`~aimc.cost.MappingReport` the estimate placed the model with.
    """

    technology: Technology
    layers: tuple[LayerCost, ...]
    total: CostTotal
    digital_baseline: DigitalBaseline
    mapping: MappingReport
    boundary: str = "chip"
    warnings: tuple[str, ...] = ()

    def layer(self, name: str) -> LayerCost:
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(f"no layer {name!r}; layers: {[x.name for x in self.layers]}")

    @property
    def analog_layers(self) -> tuple[LayerCost, ...]:
        return tuple(x for x in self.layers if x.kind == "analog")

    def to_dict(self) -> dict[str, Any]:
        return {
            "technology": self.technology.name,
            "boundary": self.boundary,
            "warnings": list(self.warnings),
            "total": self.total.to_dict(),
            "layers": [x.to_dict() for x in self.layers],
            "digital_baseline": self.digital_baseline.to_dict(),
            "mapping": self.mapping.to_dict(),
        }

    def table(self) -> str:
        t = self.total
        head = (
            f"{'layer':<26}{'kind':<8}{'tiles':>6}{'util':>7}{'MVMs':>10}{'ADC conv':>11}"
            f"{'energy':>11}{'latency':>11}{'top component':>22}"
        )
        lines = [f"cost on {self.technology.name} (totals cover: {self.boundary})"]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [head, "-" * len(head)]
        for x in self.layers:
            top = max(x.energy_by_component_j.items(), key=lambda kv: kv[1])
            top_text = f"{top[0]} {top[1] / x.energy_j:.0%}" if x.energy_j > 0 else "-"
            util = f"{x.utilization:.0%}" if x.kind == "analog" else "-"
            lines.append(
                f"{x.name[:25]:<26}{x.kind:<8}{x.tiles:>6}{util:>7}{x.counts.mvms:>10}"
                f"{x.counts.adc_conversions:>11}{_si(x.energy_j, 'J'):>11}"
                f"{_si(x.latency_s, 's'):>11}{top_text:>22}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"total: {_si(t.energy_j, 'J')}, latency {_si(t.latency_s, 's')} (pipelined "
            f"interval {_si(t.pipelined_interval_s, 's')}, {t.throughput_per_s:.4g} inferences/s)"
            f", area {t.area_mm2:.4g} mm^2, {t.tiles} tiles ({t.utilization:.0%} used) on "
            f"{t.n_chips} chip(s)"
        )
        lines.append(
            f"       {t.tops_per_w:.4g} TOPS/W, {t.tops:.4g} TOPS ({t.pipelined_tops:.4g} "
            f"pipelined), {t.tops_per_mm2:.4g} TOPS/mm^2"
        )
        parts = ", ".join(
            f"{k} {v / t.energy_j:.1%}"
            for k, v in sorted(t.energy_by_component_j.items(), key=lambda kv: -kv[1])
            if v > 0 and t.energy_j > 0
        )
        lines.append(f"energy by component: {parts}")
        b = self.digital_baseline
        lines.append(
            f"INT8 digital baseline at {b.node_nm:g} nm ({b.boundary}): {_si(b.energy_j, 'J')} "
            f"({b.tops_per_w:.4g} TOPS/W); analog is {b.analog_advantage:.3g}x "
            f"{'better' if b.analog_advantage >= 1 else 'worse'}"
        )
        return "\n".join(lines)


def _si(value: float, unit: str) -> str:
    if value == 0:
        return f"0 {unit}"
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value / 1e-15:.3g} f{unit}"


# -------------------------------------------------------------------- the estimate
def estimate_cost(
    model: nn.Module,
    example_input: Union[Tensor, tuple, list],
    technology: Union[str, Technology, dict] = "isaac",
    replication: Union[str, int] = "none",
) -> CostReport:
    """Energy, latency and area of one forward of ``example_input`` through ``model``.

    The model is not changed: analog layers compute with their digital twins while the
    counters run (no device programming, no converter calibration), and the crossbar energy
    uses the target conductances of the current weights.

    Args:
        model: a model with analog layers (``aimc.convert_to_analog``). It runs once in eval
            mode without gradients (its train/eval flags are restored).
        example_input: the input batch (a tensor, or a tuple of positional inputs).
        technology: a name (``aimc.cost.technology_names()``), a :class:`Technology`, a dict
            of fields, or a YAML path.
        replication: ``"none"``, ``"balanced"`` or an int cap: copies of each layer's weights
            that balance the layer pipeline (see :func:`aimc.cost.map_model`).

    Returns:
        A :class:`CostReport`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or the input holds no tensor.
        ValueError: no analog layers, or the model cannot run on ``example_input`` (wrong
            shape); the message names the input shape.
        KeyError: unknown technology name (the message lists the known ones).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"estimate_cost needs an nn.Module, got {type(model).__name__}")
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    if first_tensor(args) is None:
        raise TypeError(
            f"estimate_cost: example_input must be a tensor (or a tuple of them), got "
            f"{type(example_input).__name__}"
        )
    tech = resolve_technology(technology)
    map_model(model, tech)  # raises when there are no analog layers
    replicas_for({}, replication)  # validates replication before the forward

    recorder = Recorder(model, tech)
    try:
        with eval_mode(model), torch.no_grad(), recorder:
            recorder.active = True
            try:
                out = model(*args)
            except (RuntimeError, ValueError, IndexError) as err:
                shapes = [tuple(t.shape) for t in tensors(args)]
                raise ValueError(
                    f"estimate_cost: {type(model).__name__} cannot run on example_input of "
                    f"shape {shapes[0] if len(shapes) == 1 else shapes}: {err}. Pass an input "
                    "batch the model accepts."
                ) from err
            finally:
                recorder.active = False
    finally:
        recorder.close()
    mvms = {
        n: (recorder.entries[n].mvms_per_group if n in recorder.entries else 0)
        for n in recorder.analog
    }
    mapping = map_model(model, tech, replication, mvms=mvms)
    return _build_report(model, args, out, recorder, tech, mapping)


def setup_warnings(layers: dict[str, nn.Module], tech: Technology) -> list[str]:
    """What does not fit between the layers' configs and the technology (one line each)."""
    found: dict[str, list[str]] = {}
    for name, layer in layers.items():
        cfg = layer.config
        dev = type(cfg.device)
        dev_name = str(getattr(dev, "name", dev.__name__)).lower()
        if tech.cell and dev_name != tech.cell.lower():
            found.setdefault(
                f"device {dev_name!r} is costed with the {tech.cell!r} cell of technology "
                f"{tech.name!r} (cell area and read energy belong to that cell); use a "
                f"technology for {dev_name!r} or device={tech.cell!r}",
                [],
            ).append(name)
        if cfg.adc.bits is None:
            found.setdefault(
                f"an ideal ADC (bits=None) is costed as a {tech.word_bits}-bit converter "
                f"(word_bits of {tech.name!r}); set ADCConfig(bits=...) for a real converter",
                [],
            ).append(name)
        if (tech.tile_rows and cfg.tile.rows != tech.tile_rows) or (
            tech.tile_cols and cfg.tile.cols != tech.tile_cols
        ):
            found.setdefault(
                f"tile {cfg.tile.rows}x{cfg.tile.cols} is not in the floorplan of "
                f"{tech.name!r} ({tech.tile_rows}x{tech.tile_cols} tiles): its periphery, "
                "wires and areas are scaled from that size",
                [],
            ).append(name)
    out = []
    for text, names in found.items():
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        out.append(f"{text} [layers: {shown}]")
    return out


def _leak_mw(tech: Technology, cores: int) -> float:
    clusters = math.ceil(cores / tech.cores_per_cluster) if cores else 0
    return cores * tech.leakage_mw_per_core + clusters * tech.leakage_mw_per_cluster


def _build_report(
    model: nn.Module,
    args: tuple,
    out: Any,
    rec: Recorder,
    tech: Technology,
    mapping: MappingReport,
) -> CostReport:
    entries = sorted(rec.entries.values(), key=lambda e: e.order)
    for name, layer in rec.analog.items():  # analog layers the forward never reached
        if name not in rec.entries:
            entries.append(Entry(name, "analog", type(layer).__name__, len(entries), layer=layer))
    placed = {x.name: x for x in mapping.layers}
    clusters = mapping.clusters or 1
    word = tech.word_bits
    digital_rate = tech.digital_ops_per_cycle * tech.clock_ghz * clusters  # ops per ns
    area = _area_by_component(rec, tech, mapping)

    rows: list[dict[str, Any]] = []
    prev_chip: Optional[int] = None
    for e in entries:
        row: dict[str, Any] = {"entry": e, "config": None, "tiles": 0, "util": 0.0, "area": 0.0}
        row["geometry"] = None
        row["cores"] = 0
        row["wire_mm"] = 0.0
        if e.kind == "analog":
            geom, cfg, lay = e.layer.geometry, e.layer.config, placed[e.name]
            counts = analog_counts(geom, cfg, tech, e.mvms_per_group)
            if prev_chip is not None and e.calls and lay.chips[0] != prev_chip:
                counts = counts.replace(io_bits=e.input_numel * word)
            if e.calls:
                prev_chip = lay.chips[-1]
            per_copy = math.ceil(e.mvms_per_group / lay.replicas)
            layer_mm2 = (lay.cores or 0) * sum(core_area_um2(cfg, tech).values()) * 1e-6
            row.update(
                # an H-tree over the layer's own tiles carries its inputs and partial sums
                wire_mm=mean_wire_mm(layer_mm2) if tech.wire_energy_pj_per_bit_mm > 0 else 0.0,
                config=cfg,
                geometry=geom,
                tiles=lay.tiles,
                util=lay.utilization,
                cores=lay.cores or 0,
                area=layer_mm2,
                latency_ns=per_copy * mvm_time_ns(geom, tech, cfg),
            )
        else:
            counts = e.counts
            row["latency_ns"] = (counts.activations + counts.digital_ops) / digital_rate
        row["counts"] = counts
        rows.append(row)

    in_bits = sum(int(t.numel()) for t in tensors(args)) * word
    out_bits = sum(int(t.numel()) for t in tensors(out)) * word
    ran = [r for r in rows if r["entry"].calls]
    ran[0]["counts"] = ran[0]["counts"].replace(io_bits=ran[0]["counts"].io_bits + in_bits)
    ran[-1]["counts"] = ran[-1]["counts"].replace(io_bits=ran[-1]["counts"].io_bits + out_bits)

    all_leak_mw = _leak_mw(tech, mapping.cores or 0)
    layers = []
    for r in rows:
        e, counts = r["entry"], r["counts"]
        if tech.power_gating:  # only the running layer's cores (digital: one cluster) leak
            leak = _leak_mw(tech, r["cores"]) if r["cores"] else tech.leakage_mw_per_cluster
        else:
            leak = all_leak_mw
        pj = energy_pj(
            counts,
            tech,
            config=r["config"],
            crossbar_fj=e.crossbar_fj,
            static_pj=leak * r["latency_ns"],
            geometry=r["geometry"],
            wire_mm=r["wire_mm"],
        )
        by_j = {k: pj[k] * 1e-12 for k in COMPONENTS}
        layers.append(
            LayerCost(
                name=e.name,
                kind=e.kind,
                module=e.module,
                tiles=r["tiles"],
                utilization=r["util"],
                counts=counts,
                energy_by_component_j=by_j,
                energy_j=sum(by_j.values()),
                latency_s=r["latency_ns"] * 1e-9,
                area_mm2=r["area"],
                ops=2 * counts.macs,
            )
        )
    total = _total(layers, args, tech, mapping, area)
    baseline = _digital_baseline(layers, rec, tech, total, _boundary(tech))
    notes = setup_warnings(rec.analog, tech)
    for text in notes:
        log.warning("estimate_cost: %s", text)
    return CostReport(
        technology=tech,
        layers=tuple(layers),
        total=total,
        digital_baseline=baseline,
        mapping=mapping,
        boundary=_boundary(tech),
        warnings=tuple(notes),
    )


def _boundary(tech: Technology) -> str:
    """What the totals cover: ``"chip with I/O"`` when off-chip links are priced, else
    ``"chip"``."""
    return "chip with I/O" if (tech.io_energy_pj_per_bit > 0 or tech.io_area_mm2 > 0) else "chip"


def _area_by_component(rec: Recorder, tech: Technology, mapping: MappingReport) -> dict[str, float]:
    """Area (mm^2) of what the model occupies: each layer's cores with its own config, the
    empty core slots of its clusters, the clusters' shared units and the chips' I/O."""
    area: dict[str, float] = {}
    cores = 0
    first = None
    for lay in mapping.layers:
        cfg = rec.analog[lay.name].config
        first = first or cfg
        for k, v in core_area_um2(cfg, tech).items():
            area[k] = area.get(k, 0.0) + (lay.cores or 0) * v * 1e-6
        cores += lay.cores or 0
    clusters = mapping.clusters or 1
    empty = clusters * tech.cores_per_cluster - cores
    if empty > 0 and first is not None:
        for k, v in core_area_um2(first, tech).items():
            area[k] += empty * v * 1e-6
    shared = cluster_area_mm2(first, tech)
    for k in CLUSTER_COMPONENTS:
        area[k] = area.get(k, 0.0) + clusters * shared[k]
    area["io"] = (mapping.n_chips or 1) * tech.io_area_mm2
    return area


def _total(
    layers: list[LayerCost],
    args: tuple,
    tech: Technology,
    mapping: MappingReport,
    area_by: dict[str, float],
) -> CostTotal:
    counts = Counts()
    for x in layers:
        counts = counts + x.counts
    energy = sum(x.energy_j for x in layers)
    latency = sum(x.latency_s for x in layers)
    interval = max(x.latency_s for x in layers)
    area = sum(area_by.values())
    ops = sum(x.ops for x in layers)
    x0 = first_tensor(args)
    batch = int(x0.shape[0]) if x0 is not None and x0.dim() > 1 else 1
    tops = ops / latency * 1e-12 if latency > 0 else 0.0
    p_tops = ops / interval * 1e-12 if interval > 0 else 0.0
    return CostTotal(
        energy_j=energy,
        latency_s=latency,
        area_mm2=area,
        ops=ops,
        tops=tops,
        tops_per_w=ops / energy * 1e-12 if energy > 0 else 0.0,
        tops_per_mm2=tops / area,
        pipelined_interval_s=interval,
        pipelined_tops=p_tops,
        pipelined_tops_per_mm2=p_tops / area,
        throughput_per_s=batch / interval if interval > 0 else 0.0,
        batch=batch,
        energy_by_component_j={
            k: sum(x.energy_by_component_j[k] for x in layers) for k in COMPONENTS
        },
        counts=counts,
        tiles=mapping.tiles,
        utilization=mapping.utilization,
        n_chips=mapping.n_chips or 1,
        area_by_component_mm2=dict(area_by),
    )


def _digital_baseline(
    layers: list[LayerCost], rec: Recorder, tech: Technology, total: CostTotal, boundary: str
) -> DigitalBaseline:
    logic = tech.node_nm / 45.0
    sram = math.sqrt(tech.node_nm / 45.0)
    mac_pj, w_pj_bit = 0.23 * logic, 1.56 * sram
    macs = w_bits = 0
    for x in layers:
        c = x.counts
        macs += c.macs
        if x.kind == "analog" and c.mvms:
            g = rec.analog[x.name].geometry
            w_bits += 8 * g.groups * g.in_rows * g.out_cols
    same = total.energy_by_component_j
    parts = {
        "mac": macs * mac_pj * 1e-12,
        "weight_sram": w_bits * w_pj_bit * 1e-12,
        # the same activation buffers, interconnect, off-chip links and digital units as the
        # analog chip: the boundary of both totals is the same
        "buffer": same["buffer"],
        "interconnect": same["interconnect"],
        "io": same["io"],
        "digital": same["activation"] + same["digital"],
    }
    energy = sum(parts.values())
    return DigitalBaseline(
        node_nm=tech.node_nm,
        energy_j=energy,
        energy_by_component_j=parts,
        tops_per_w=total.ops / energy * 1e-12 if energy > 0 else 0.0,
        boundary=boundary,
        analog_advantage=energy / total.energy_j if total.energy_j > 0 else math.inf,
    )
