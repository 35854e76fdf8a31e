"""The ideal cell: programs exactly, never drifts, reads without noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from device_models._checks import check_g_range
from device_models.base import DeviceModel, check_conductance
from device_models.registry import register_device

__all__ = ["Ideal"]


@register_device("ideal")
@dataclass
class Ideal(DeviceModel):
    """A perfect cell: ``program`` returns the target and ``read`` returns it unchanged.

    Args:
        g_max: largest programmable conductance in µS. The default 25 µS is the PCM ``g_max`` of
            IBM's statistical model (Nandakumar et al., ICECS 2019), so that an ideal device and
            ``PCM()`` map weights onto the same conductance range.
        g_min: smallest conductance in µS (0: a perfect off state).
    """

    name: ClassVar[str] = "ideal"
    g_max: float = 25.0
    g_min: float = 0.0

    def __post_init__(self) -> None:
        check_g_range("Ideal", self.g_min, self.g_max)

    def program(
        self, g_target: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        check_conductance(g_target)
        return {"g": g_target.clamp(self.g_min, self.g_max)}

    @property
    def is_ideal(self) -> bool:
        return True

    @property
    def drifts(self) -> bool:
        return False
