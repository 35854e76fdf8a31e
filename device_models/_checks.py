"""Validation helpers of the cell models: errors name ``Class.field``, the value and the rule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

__all__ = [
    "check_number",
    "check_numbers",
    "check_clip",
    "check_rate",
    "check_g_range",
    "check_bounded",
    "G_MAX_LIMIT_US",
    "TIME_LIMIT_S",
    "SCALE_LIMIT",
]

#: Largest conductance (µS) a cell model accepts: 10 mS, ten times the on-state of the most
#: conductive memory cells in use (about 1 mS); beyond it currents and sums overflow float32.
G_MAX_LIMIT_US = 1e4
#: Longest time constant (s) a cell model accepts (about 30 years).
TIME_LIMIT_S = 1e9
#: Largest multiplier of a fitted noise or drift term (``*_scale`` fields).
SCALE_LIMIT = 100.0


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


def check_bounded(
    owner: str, field: str, value: Any, lo: float, hi: float, unit: str = "", *, open_lo=False
) -> None:
    """Raise unless ``value`` is a finite number in ``[lo, hi]`` (``(lo, hi]`` if ``open_lo``)."""
    check_number(owner, field, value)
    ok = (lo < value if open_lo else lo <= value) and value <= hi
    if not ok:
        left = "(" if open_lo else "["
        raise ValueError(
            f"{owner}.{field} must be in {left}{lo:g}, {hi:g}]{unit} (the range of physical "
            f"cells this model describes), got {value!r}"
        )


def check_g_range(owner: str, g_min: Any, g_max: Any) -> None:
    """Raise unless ``0 <= g_min < g_max <= G_MAX_LIMIT_US`` (µS), naming the offending field."""
    check_bounded(owner, "g_max", g_max, 0.0, G_MAX_LIMIT_US, " µS", open_lo=True)
    check_bounded(owner, "g_min", g_min, 0.0, G_MAX_LIMIT_US, " µS")
    if g_min >= g_max:
        raise ValueError(
            f"{owner}.g_min must be < {owner}.g_max, got g_min={g_min} µS, g_max={g_max} µS"
        )
