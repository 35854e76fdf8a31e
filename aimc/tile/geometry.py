"""``TileGeometry``: the tile grid of one analog layer (a pure, frozen description)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["TileGeometry"]


@dataclass(frozen=True)
class TileGeometry:
    """The tile grid of one layer.

    A layer computes ``groups`` independent matrix-vector products, each of ``in_rows`` inputs and
    ``out_cols`` weight columns (a conv layer's unrolled kernel: ``C_in/groups * kh * kw`` rows).
    Each group takes ``n_row_tiles × n_col_tiles`` tiles of ``rows × cols`` devices; a weight
    column takes ``cols_per_weight`` device columns (2 per slice for differential pairs).

    Row tiles hold ``row_block`` consecutive rows each (the last may hold fewer): ``rows`` for a
    dense mapping, fewer when a conv keeps whole input channels in a tile (``row_block`` a
    multiple of ``kh * kw``), or ``in_rows`` when one tile holds them all (no wasted compute on
    empty rows).

    Attributes:
        groups: independent weight matrices (conv ``groups``; 1 for linear layers).
        in_rows: word lines one group needs.
        out_cols: weight columns (outputs) per group.
        rows: word lines per tile.
        cols: bit lines per tile.
        slices: devices a weight is bit-sliced over.
        cols_per_weight: device columns per weight column.
        cycles: input cycles per MVM (bit-serial DACs stream one bit per cycle).
        row_block: rows used per row tile (0: ``min(rows, in_rows)``).
    """

    groups: int
    in_rows: int
    out_cols: int
    rows: int
    cols: int
    slices: int
    cols_per_weight: int
    cycles: int = 1
    row_block: int = 0

    def __post_init__(self) -> None:
        if self.row_block == 0:
            object.__setattr__(self, "row_block", min(self.rows, self.in_rows))
        if not 1 <= self.row_block <= self.rows:
            raise ValueError(
                f"TileGeometry.row_block must be in 1..rows={self.rows}, got {self.row_block}"
            )

    @classmethod
    def for_config(
        cls, config: Any, groups: int, in_rows: int, out_cols: int, row_block: int = 0
    ) -> TileGeometry:
        """The grid of ``groups`` matrices of ``in_rows x out_cols`` weights on the tiles,
        slices and input cycles of ``config`` (an ``AnalogConfig``)."""
        return cls(
            groups=groups,
            in_rows=in_rows,
            out_cols=out_cols,
            rows=config.tile.rows,
            cols=config.tile.cols,
            slices=config.mapping.slices,
            cols_per_weight=config.mapping.cols_per_weight,
            cycles=config.dac.cycles,
            row_block=row_block,
        )

    @property
    def n_row_tiles(self) -> int:
        """Row tiles per group: ``ceil(in_rows / row_block)``."""
        return math.ceil(self.in_rows / self.row_block)

    @property
    def weights_per_col_tile(self) -> int:
        """Weight columns one tile holds."""
        return self.cols // self.cols_per_weight

    @property
    def n_col_tiles(self) -> int:
        """Column tiles per group: ``ceil(out_cols / weights_per_col_tile)``."""
        return math.ceil(self.out_cols / self.weights_per_col_tile)

    @property
    def n_tiles(self) -> int:
        """Tiles of the whole layer."""
        return self.groups * self.n_row_tiles * self.n_col_tiles

    @property
    def cells_used(self) -> int:
        """Devices holding weights (padding excluded)."""
        return self.groups * self.in_rows * self.out_cols * self.cols_per_weight

    @property
    def utilization(self) -> float:
        """Fraction of the layer's tile devices that hold weights."""
        return self.cells_used / (self.n_tiles * self.rows * self.cols)

    @property
    def grid(self) -> str:
        """``"<groups>x<row tiles>x<col tiles>"`` (the groups factor only when > 1)."""
        base = f"{self.n_row_tiles}x{self.n_col_tiles}"
        return base if self.groups == 1 else f"{self.groups}x{base}"
