"""A binary SRAM compute-in-memory cell: one bit, stored exactly, no drift, no read noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from device_models.base import DeviceModel, check_conductance, check_positive, check_time
from device_models.registry import register_device

__all__ = ["SRAM"]


@register_device("sram")
@dataclass
class SRAM(DeviceModel):
    """An SRAM bit cell read through its access transistors (SRAM compute-in-memory).

    The cell stores one bit: ``program`` snaps each target to ``g_max`` (1) when it lies in
    the upper half of ``[g_min, g_max]``, else to ``g_min`` (0). A latch holds its state, so
    the conductance never drifts and a read is exact; weights of more than one bit are
    bit-sliced over several cells (``MappingConfig(slices=...)``).

    Args:
        g_max: conductance of the read path of a stored 1, µS. The default 10 µS is a ~100 kOhm
            minimum-width access transistor at 22 nm (the on-resistance NeuroSim derives for the
            access device of its SRAM cell is of this order).
        g_min: conductance of a stored 0, µS (0: the read path is off; NeuroSim treats the SRAM
            on/off ratio as infinite).
    """

    name: ClassVar[str] = "sram"
    g_max: float = 10.0
    g_min: float = 0.0

    def __post_init__(self) -> None:
        check_positive("SRAM", "g_max", self.g_max)
        check_positive("SRAM", "g_min", self.g_min, allow_zero=True)
        if self.g_min >= self.g_max:
            raise ValueError(
                f"SRAM.g_min must be < g_max, got g_min={self.g_min} µS, g_max={self.g_max} µS"
            )

    def program(
        self, g_target: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        check_conductance(g_target)
        mid = 0.5 * (self.g_min + self.g_max)
        one = torch.full_like(g_target, self.g_max)
        return {"g": torch.where(g_target >= mid, one, torch.full_like(g_target, self.g_min))}

    @property
    def drifts(self) -> bool:
        return False

    @property
    def stochastic(self) -> bool:
        return False

    def read_noise_std(self, state: dict[str, Tensor], t: float) -> Tensor | None:
        check_time(t)
        return None  # a latch reads exactly

    def describe(self) -> str:
        return f"sram(g_max={self.g_max:g} µS)"
