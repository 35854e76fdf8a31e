"""Validation helpers of the cell models: errors name ``Class.field``, the value and the rule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

from device_models.base import check_positive

__all__ = ["check_number", "check_numbers", "check_clip", "check_rate", "check_g_range"]


def check_number(owner: str, field: str, value: Any) -> None:
    """Raise unless ``value`` is a finite real number (any sign)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{field} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}.{field} must be finite, got {value!r}")


def check_numbers(owner: str, field: str, values: Any, length: Optional[int] = None) -> None:
    """Raise unless ``values`` is a non-empty list of finite numbers (of ``length`` if given)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{owner}.{field} must be a list of numbers, got {values!r}")
    if len(values) == 0 or (length is not None and len(values) != length):
        what = f"exactly {length}" if length is not None else "at least 1"
        raise ValueError(f"{owner}.{field} must hold {what} numbers, got {list(values)!r}")
    for i, v in enumerate(values):
        check_number(owner, f"{field}[{i}]", v)


def check_clip(owner: str, field: str, values: Any) -> None:
    """Raise unless ``values`` is ``[lo, hi]`` with ``0 <= lo <= hi``."""
    check_numbers(owner, field, values, length=2)
    lo, hi = values
    if not 0 <= lo <= hi:
        raise ValueError(f"{owner}.{field} must be [lo, hi] with 0 <= lo <= hi, got {list(values)}")


def check_rate(owner: str, field: str, value: Any) -> None:
    """Raise unless ``value`` is a probability in [0, 1]."""
    check_number(owner, field, value)
    if not 0 <= value <= 1:
        raise ValueError(f"{owner}.{field} must be a probability in [0, 1], got {value!r}")


def check_g_range(owner: str, g_min: Any, g_max: Any) -> None:
    """Raise unless ``0 <= g_min < g_max`` (µS), naming the offending field."""
    check_positive(owner, "g_max", g_max)
    check_positive(owner, "g_min", g_min, allow_zero=True)
    if g_min >= g_max:
        raise ValueError(
            f"{owner}.g_min must be < {owner}.g_max, got g_min={g_min} µS, g_max={g_max} µS"
        )
