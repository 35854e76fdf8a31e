"""Name → device-model registry (strict: duplicates and unknown names raise)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["register_device", "get", "create_device", "names", "list_devices"]

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_device(name: str) -> Callable[[T], T]:
    """Class decorator registering a ``DeviceModel`` subclass under ``name`` (lower case)."""
    key = name.lower()

    def wrap(cls: T) -> T:
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(
                f"device name {key!r} is already registered to {_REGISTRY[key].__qualname__}"
            )
        _REGISTRY[key] = cls
        return cls

    return wrap


def _lookup(name: str) -> type:
    if not isinstance(name, str):
        raise TypeError(f"device must be a DeviceModel or a registered name, got {type(name)}")
    key = name.lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown device {name!r}; known devices: {sorted(_REGISTRY)}{hint}")
    return _REGISTRY[key]


def get(name: str, **overrides: Any):
    """A fresh instance of the device registered as ``name``, with field ``overrides``."""
    cls = _lookup(name)
    try:
        return cls(**overrides)
    except TypeError as err:
        raise TypeError(f"bad field for device {name!r}: {err}") from None


def create_device(name: str, config: dict[str, Any] | None = None):
    """Same as :func:`get` with the overrides as a dict (timm-style factory)."""
    return get(name, **(config or {}))


def names(pattern: str = "*") -> list[str]:
    """Registered device names matching the glob ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


list_devices = names
