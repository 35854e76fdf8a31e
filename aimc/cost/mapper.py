"""Weight-stationary placement of a model's analog layers on tiles, cores and chips.

Every weight stays on chip. A layer takes ``groups x n_row_tiles x n_col_tiles`` tiles (its
``TileGeometry``); with a technology, its tiles fill whole cores (a core serves one layer: its
tiles share input registers and ADCs), cores are placed in module order onto clusters and
chips (layers may share a cluster), and the report says how many chips the model needs and
which layers do not fit on the first one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

from torch import nn

from aimc.cost.technology import Technology, resolve_technology
from aimc.nn.protocol import analog_layers

__all__ = [
    "LayerMapping",
    "MappingReport",
    "map_model",
    "iter_analog_layers",
    "replicas_for",
    "MAX_BALANCED_REPLICATION",
]

iter_analog_layers = analog_layers  # the cost model finds layers as the conversion helpers do


@dataclass(frozen=True)
class LayerMapping:
    """Placement of one analog layer.

    Attributes:
        name: qualified module name.
        module: class name.
        groups, in_rows, out_cols: the weight matrices (rows are inputs).
        rows, cols: tile size; ``cols_per_weight`` device columns per weight column.
        n_row_tiles, n_col_tiles: tile grid per group; ``tiles`` in all.
        cells_used, cells_total: weight-holding devices and devices of its tiles.
        utilization: ``cells_used / cells_total``.
        cores: cores it occupies (``None`` without a technology); ``first_core`` the first.
        chips: chip indices it lies on (``()`` without a technology).
        replicas: copies of its weights (pipeline balancing); ``tiles`` counts them all.
        mvms: MVMs per group of one forward of the example input (0: not counted).
    """

    name: str
    module: str
    groups: int
    in_rows: int
    out_cols: int
    rows: int
    cols: int
    cols_per_weight: int
    n_row_tiles: int
    n_col_tiles: int
    tiles: int
    cells_used: int
    cells_total: int
    utilization: float
    cores: Optional[int] = None
    first_core: Optional[int] = None
    chips: tuple[int, ...] = ()
    replicas: int = 1
    mvms: int = 0

    @property
    def grid(self) -> str:
        g = f"{self.groups}x" if self.groups > 1 else ""
        return f"{g}{self.n_row_tiles}x{self.n_col_tiles}"

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["chips"] = list(self.chips)
        return d


@dataclass(frozen=True)
class MappingReport:
    """Tiles per layer and their placement on cores and chips.

    Attributes:
        layers: one :class:`LayerMapping` per analog layer, in module order.
        tiles, cells_used, cells_total, utilization: totals.
        technology: technology name, or ``None`` (tile counts only).
        tiles_per_core, cores_per_cluster, tiles_per_chip: the technology's grouping.
        cores, clusters, n_chips: what the model occupies.
        fits_on_one_chip: whether every weight fits on one chip.
        overflow_layers: layers placed (partly) beyond the first chip.
        oversized_layers: layers that alone need more than one chip.
    """

    layers: tuple[LayerMapping, ...]
    tiles: int
    cells_used: int
    cells_total: int
    utilization: float
    technology: Optional[str] = None
    tiles_per_core: Optional[int] = None
    cores_per_cluster: Optional[int] = None
    tiles_per_chip: Optional[int] = None
    cores: Optional[int] = None
    clusters: Optional[int] = None
    n_chips: Optional[int] = None
    fits_on_one_chip: Optional[bool] = None
    overflow_layers: tuple[str, ...] = ()
    oversized_layers: tuple[str, ...] = ()

    def layer(self, name: str) -> LayerMapping:
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(f"no analog layer {name!r}; layers: {[x.name for x in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "layers"}
        d["overflow_layers"] = list(self.overflow_layers)
        d["oversized_layers"] = list(self.oversized_layers)
        d["layers"] = [lay.to_dict() for lay in self.layers]
        return d

    def table(self) -> str:
        head = (
            f"{'layer':<24}{'module':<14}{'matrix':>14}{'tile':>9}{'grid':>9}{'tiles':>7}"
            f"{'util':>7}{'cores':>7}{'chips':>7}"
        )
        lines = [head, "-" * len(head)]
        for lay in self.layers:
            matrix = f"{lay.in_rows}x{lay.out_cols}"
            chips = _span(lay.chips)
            cores = "-" if lay.cores is None else str(lay.cores)
            grid = lay.grid if lay.replicas == 1 else f"{lay.replicas}*{lay.grid}"
            lines.append(
                f"{lay.name[:23]:<24}{lay.module[:13]:<14}{matrix:>14}"
                f"{f'{lay.rows}x{lay.cols}':>9}{grid:>9}{lay.tiles:>7}"
                f"{lay.utilization:>7.1%}{cores:>7}{chips:>7}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'total':<24}{'':<14}{'':>14}{'':>9}{'':>9}{self.tiles:>7}{self.utilization:>7.1%}"
            f"{'-' if self.cores is None else self.cores:>7}"
            f"{'-' if self.n_chips is None else self.n_chips:>7}"
        )
        if self.technology is not None:
            beyond = ", ".join(self.overflow_layers)
            fit = "fits on one chip"
            if not self.fits_on_one_chip:
                fit = f"needs {self.n_chips} chips; beyond the first: {beyond}"
            lines.append(
                f"{self.technology}: {self.tiles_per_core} tiles/core, {self.tiles_per_chip} "
                f"tiles/chip; {fit}"
            )
            if self.oversized_layers:
                lines.append(f"larger than one chip: {', '.join(self.oversized_layers)}")
        return "\n".join(lines)


def _layer_mapping(name: str, layer: nn.Module) -> LayerMapping:
    g = layer.geometry
    tiles = int(g.n_tiles)
    total = tiles * g.rows * g.cols
    return LayerMapping(
        name=name,
        module=type(layer).__name__,
        groups=int(g.groups),
        in_rows=int(g.in_rows),
        out_cols=int(g.out_cols),
        rows=int(g.rows),
        cols=int(g.cols),
        cols_per_weight=int(g.cols_per_weight),
        n_row_tiles=int(g.n_row_tiles),
        n_col_tiles=int(g.n_col_tiles),
        tiles=tiles,
        cells_used=int(g.cells_used),
        cells_total=int(total),
        utilization=g.cells_used / total,
    )


MAX_BALANCED_REPLICATION = 64
"""Replication cap of ``replication="balanced"``: NeuroSim's default pipeline speed-up of 8 in
each image dimension (64 copies of the largest feature map's layer)."""


def replicas_for(mvms: dict[str, int], replication: Union[str, int]) -> dict[str, int]:
    """Copies of each layer's weights that balance a layer pipeline (ISAAC, NeuroSim).

    ``"none"``: one copy each. ``"balanced"`` or an int cap ``k`` (``"balanced"`` is
    ``k = 64``): layers with more than one MVM per forward are replicated so that their MVMs
    per copy approach those of the layer with the fewest, ``r = min(k, ceil(m / T))`` with
    ``T = max(min m, max m / k)``. For VGG-8 on 32x32 images this is 16, 16, 4, 4, 1, 1, 1, 1,
    the duplication NeuroSim's pipeline mode builds.
    """
    if replication == "none":
        return {n: 1 for n in mvms}
    if replication == "balanced":
        cap = MAX_BALANCED_REPLICATION
    elif isinstance(replication, int) and not isinstance(replication, bool) and replication >= 1:
        cap = replication
    else:
        raise ValueError(
            f"replication must be 'none', 'balanced' or an int >= 1 (the largest number of "
            f"copies of a layer), got {replication!r}"
        )
    busy = [m for m in mvms.values() if m > 1]
    if not busy:
        return {n: 1 for n in mvms}
    target = max(min(busy), max(busy) / cap)
    return {n: (1 if m <= 1 else min(cap, math.ceil(m / target))) for n, m in mvms.items()}


def map_model(
    model: nn.Module,
    technology: Union[None, str, Technology, dict] = None,
    replication: Union[str, int] = "none",
    example_input: Any = None,
    *,
    mvms: Optional[dict[str, int]] = None,
) -> MappingReport:
    """Place every analog layer of ``model`` on tiles (and, with a ``technology``, on cores,
    clusters and chips, as many chips as needed).

    Args:
        model: a model with analog layers (``aimc.convert_to_analog``).
        technology: a name (``aimc.cost.technology_names()``), a :class:`Technology`, or
            ``None`` for tile counts only.
        replication: ``"none"``, ``"balanced"`` or an int cap: copies of each layer's weights
            that balance a layer pipeline (:func:`replicas_for`). Needs the MVMs per layer:
            ``example_input`` (one cheap digital pass, the model is not changed) or ``mvms``.
        example_input: an input batch, to count each layer's MVMs.
        mvms: MVMs per group of each layer by name (instead of ``example_input``).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: the model has no analog layers; bad ``replication``; replication without
            ``example_input``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"map_model needs an nn.Module, got {type(model).__name__}")
    layers = [_layer_mapping(n, m) for n, m in iter_analog_layers(model)]
    if not layers:
        raise ValueError(
            f"map_model: {type(model).__name__} has no analog layers; convert it first with "
            "aimc.convert_to_analog(model, aimc.AnalogConfig(...))"
        )
    if mvms is None and example_input is not None:
        from aimc.cost.activity import count_mvms

        mvms = count_mvms(model, example_input)
    if replication != "none" and mvms is None:
        replicas_for({}, replication)  # validates the value first
        raise ValueError(
            f"map_model(replication={replication!r}) needs each layer's MVMs: pass "
            "example_input=<an input batch> (or mvms={layer name: MVMs})"
        )
    if mvms is not None:
        counted = {x.name: int(mvms.get(x.name, 0)) for x in layers}
        copies = replicas_for(counted, replication)
        layers = [
            _replace(
                x,
                mvms=counted[x.name],
                replicas=copies[x.name],
                tiles=x.tiles * copies[x.name],
                cells_used=x.cells_used * copies[x.name],
                cells_total=x.cells_total * copies[x.name],
            )
            for x in layers
        ]
    tiles = sum(x.tiles for x in layers)
    used = sum(x.cells_used for x in layers)
    total = sum(x.cells_total for x in layers)
    base = dict(tiles=tiles, cells_used=used, cells_total=total, utilization=used / total)
    if technology is None:
        return MappingReport(layers=tuple(layers), **base)

    tech = resolve_technology(technology)
    per_chip = tech.cores_per_chip
    placed, core = [], 0
    for lay in layers:
        n = math.ceil(lay.tiles / tech.tiles_per_core)
        chips = tuple(range(core // per_chip, (core + n - 1) // per_chip + 1))
        placed.append(_replace(lay, cores=n, first_core=core, chips=chips))
        core += n
    n_chips = math.ceil(core / per_chip)
    return MappingReport(
        layers=tuple(placed),
        technology=tech.name,
        tiles_per_core=tech.tiles_per_core,
        cores_per_cluster=tech.cores_per_cluster,
        tiles_per_chip=tech.tiles_per_chip,
        cores=core,
        clusters=math.ceil(core / tech.cores_per_cluster),
        n_chips=n_chips,
        fits_on_one_chip=n_chips == 1,
        overflow_layers=tuple(x.name for x in placed if max(x.chips) > 0),
        oversized_layers=tuple(x.name for x in placed if x.cores > per_chip),
        **base,
    )


def _replace(lay: LayerMapping, **changes: Any) -> LayerMapping:
    import dataclasses

    return dataclasses.replace(lay, **changes)


def _span(chips: tuple[int, ...]) -> str:
    """Chip indices as a short label: ``"-"``, ``"3"`` or ``"0-28"`` (placement is contiguous)."""
    if not chips:
        return "-"
    return str(chips[0]) if len(chips) == 1 else f"{chips[0]}-{chips[-1]}"
