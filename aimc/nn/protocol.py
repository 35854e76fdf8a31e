"""``AnalogLayer``: what the cost model needs from an analog layer, and the one way to find them.

The cost model (``map_model``, ``estimate_cost``) and the conversion helpers (``program``,
``drift``, ``calibrate``, ``track_adc_saturation``) all find layers with :func:`analog_layers`,
so no layer is costed but skipped by the others: a helper that needs more than the protocol
(programming, converter stages) raises for a layer that lacks it, naming the layer.
Subclasses of :class:`aimc.nn.AnalogLayerBase` have all of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional, Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ["AnalogLayer", "analog_layers"]


@runtime_checkable
class AnalogLayer(Protocol):
    """An analog layer as the cost model sees it: its hardware (``config``, an
    ``AnalogConfig``), tile grid (``geometry``, a ``TileGeometry``) and activity counts."""

    config: Any
    geometry: Any

    def mvm_count(self, x: Tensor) -> int:
        """Matrix-vector products (input vectors per group) one forward of ``x`` runs."""

    def row_activity(self, x: Tensor) -> Tensor:
        """Sum over the MVMs of ``x`` of ``|normalized input|`` per row ``[groups, in_rows]``."""

    def row_conductance_sums(self) -> Tensor:
        """Summed target conductance (µS) of each row's devices ``[groups, in_rows]``."""


def analog_layers(model: nn.Module) -> Iterator[tuple[str, AnalogLayer]]:
    """``(qualified name, layer)`` of every analog layer of ``model``, in module order (the
    modules inside an analog layer belong to it and are not listed again)."""
    inside: Optional[str] = None
    for name, module in model.named_modules():
        if inside is not None and name.startswith(inside):
            continue
        if isinstance(module, AnalogLayer):
            inside = name + "." if name else ""
            yield name, module
