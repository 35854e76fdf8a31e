"""``Stage``: what every pipeline stage module shares (a name for messages, cached scalars)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

__all__ = ["Stage", "IdentityConverter"]


class Stage(nn.Module):
    """Base of the DAC, crossbar, ADC and accumulation modules of an analog layer.

    ``layer_name`` names the owning layer in messages. :meth:`scalar` reads a Python number
    from a buffer once and again only after the buffer changed (no device sync per forward).
    Copies and pickles drop everything derived (:meth:`forget`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer_name = ""
        self._scalars: dict[Any, Any] = {}

    def scalar(self, name: str, read: Callable[[Tensor], Any]) -> Any:
        """``read(buffer)``, recomputed only when the buffer was replaced or changed in place."""
        buf = self._buffers.get(name)
        if buf is None:
            buf = getattr(self, name)
        # plain names and numbers only: torch.compile guards on this dict's keys
        code = getattr(read, "__code__", None)
        what = (code.co_qualname, code.co_firstlineno) if code else read.__name__
        if buf.is_inference():  # no version counter: read it every time
            value = read(buf)
            self._scalars[(name, what)] = (None, value)
            return value
        key = (buf.data_ptr(), buf._version)
        hit = self._scalars.get((name, what))
        if hit is not None and hit[0] == key:
            return hit[1]
        value = read(buf)
        self._scalars[(name, what)] = (key, value)
        return value

    def forget(self) -> None:
        """Drop what is derived from the buffers (subclasses add their caches)."""
        self._scalars.clear()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in self._derived():
            state[key] = {}
        return state

    def _derived(self) -> tuple[str, ...]:
        return ("_scalars",)

    def _apply(self, fn, *args, **kwargs):
        # .to() / .double() / .cuda(): derived values live on the old device/dtype
        out = super()._apply(fn, *args, **kwargs)
        self.forget()
        return out


class IdentityConverter(Stage):
    """Base of the converters that are off (``IdentityDAC``, ``IdentityADC``): nothing to
    observe or calibrate, but the observer switch still tells the layer that calibration runs
    (so the layer's calibration passes behave as with real converters)."""

    uncalibrated = False

    def __init__(self) -> None:
        super().__init__()
        self.observing = False

    def enable_observer(self) -> None:
        self.observing = True

    def disable_observer(self) -> None:
        self.observing = False

    def load_observed(self) -> None:
        pass

    def observe(self, *args: Any) -> None:
        pass
