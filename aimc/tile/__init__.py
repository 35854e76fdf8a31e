"""Tile geometry: how a layer's weight matrix is cut into crossbar tiles."""

from __future__ import annotations

from aimc.tile.geometry import TileGeometry

__all__ = ["TileGeometry"]
