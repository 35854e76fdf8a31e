"""Name registries: one small helper for devices, technologies, presets and models.

:class:`Registry` maps names to objects (classes or factories): registration by decorator on
import, strict lookup (an unknown name raises a ``KeyError`` listing the known names and the
closest match; registering a taken name to another object raises), ``names()``. It lives here,
in the standalone ``device_models`` package, so that ``aimc`` (technologies, presets) and
``experiments`` (models) use the same helper without an import cycle.

The device registry of this package is one instance: :func:`register_device`, :func:`get`,
:func:`names`.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "register_device", "get", "create_device", "names", "list_devices"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects, strict.

    Args:
        kind: what is registered, for messages (``"device"``).
        plural: its plural (default ``kind + "s"``).
        case_sensitive: ``False`` stores and looks names up in lower case.

    Examples:
        >>> shapes = Registry("shape")
        >>> @shapes.register("square")
        ... def square(side=1.0):
        ...     return side * side
        >>> shapes.names(), shapes.lookup("square")(2.0)
        (['square'], 4.0)
        >>> shapes.lookup("squre")
        Traceback (most recent call last):
        ...
        KeyError: "unknown shape 'squre'; known shapes: ['square']; did you mean 'square'?"
    """

    def __init__(self, kind: str, plural: str | None = None, case_sensitive: bool = True) -> None:
        self.kind = kind
        self.plural = plural or kind + "s"
        self.case_sensitive = case_sensitive
        self._items: dict[str, T] = {}

    def _key(self, name: str) -> str:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} name must be a non-empty str, got {name!r}")
        return name if self.case_sensitive else name.lower()

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an object under ``name``."""
        key = self._key(name)

        def wrap(obj: T) -> T:
            if key in self._items and self._items[key] is not obj:
                old = getattr(self._items[key], "__qualname__", repr(self._items[key]))
                raise ValueError(f"{self.kind} name {key!r} is already registered to {old}")
            self._items[key] = obj
            return obj

        return wrap

    def lookup(self, name: str) -> T:
        """The object registered as ``name``; ``KeyError`` with the known names otherwise."""
        key = self._key(name) if isinstance(name, str) and name else name
        if key not in self._items:
            close = difflib.get_close_matches(str(key), list(self._items), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}; known {self.plural}: {self.names()}{hint}"
            )
        return self._items[key]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the glob ``pattern``, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return (name if self.case_sensitive else name.lower()) in self._items


DEVICES: Registry[type] = Registry("device", case_sensitive=False)


def register_device(name: str) -> Callable[[Any], Any]:
    """Class decorator registering a ``DeviceModel`` subclass under ``name`` (lower case)."""
    return DEVICES.register(name)


def _lookup(name: str) -> type:
    if not isinstance(name, str):
        raise TypeError(f"device must be a DeviceModel or a registered name, got {type(name)}")
    return DEVICES.lookup(name)


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
    return DEVICES.names(pattern)


list_devices = names
