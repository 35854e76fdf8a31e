"""``TileGeometry``: the tile grid of one analog layer (a pure, frozen description)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TileGeometry"]


@dataclass(frozen=True)
class TileGeometry:
    """The tile grid of one layer.

    A layer computes ``groups`` independent matrix-vector products, each of ``in_rows`` inputs and
    ``out_cols`` weight columns (a conv layer's unrolled kernel: ``C_in/groups * kh * kw`` rows).
    Each group takes ``n_row_tiles × n_col_tiles`` tiles of ``rows × cols`` devices; a weight
    column takes ``cols_per_weight`` device columns (2 per slice for differential pairs).

    Attributes:
        groups: independent weight matrices (conv ``groups``; 1 for linear layers).
        in_rows: word lines one group needs.
        out_cols: weight columns (outputs) per group.
        rows: word lines per tile.
        cols: bit lines per tile.
        slices: devices a weight is bit-sliced over.
        cols_per_weight: device columns per weight column.
        cycles: input cycles per MVM (bit-serial DACs stream one bit per cycle).
    """

    groups: int
    in_rows: int
    out_cols: int
    rows: int
    cols: int
    slices: int
    cols_per_weight: int
    cycles: int = 1

    @property
    def n_row_tiles(self) -> int:
        """Row tiles per group: ``ceil(in_rows / rows)``."""
        return math.ceil(self.in_rows / self.rows)

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
