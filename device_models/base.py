"""The ``DeviceModel`` interface every memory-cell model implements.

A cell model is a small dataclass of physical parameters with pure methods:

* ``program(g_target, generator)`` returns the per-device *state*, a ``dict`` of tensors of the
  same shape as ``g_target``. ``state["g"]`` is the programmed conductance (µS). Models add their
  own per-device entries (a drift exponent ``"nu"``, a ``"stuck"`` mask, ...); every entry is a
  tensor so that analog layers can keep the state as buffers and ``state_dict`` round-trips it.
* ``conductance(state, t)`` is the expected conductance ``t`` seconds after programming (drift,
  relaxation), deterministic given the state.
* ``read_noise_std(state, t)`` is the standard deviation (µS) of one read at time ``t``, or
  ``None`` when reads are noiseless. ``read`` draws one noisy read from it.

Analog layers call ``conductance`` and ``read_noise_std`` once per drift time and draw the read
noise themselves (chunked and in parallel), which is exactly ``read`` in distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["DeviceModel", "check_conductance", "check_time", "check_positive", "check_bool"]


def check_positive(owner: str, field: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise a ``ValueError`` naming ``owner.field`` unless ``value`` is finite and positive."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{field} must be a number, got {type(value).__name__} {value!r}")
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        what = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{owner}.{field} must be {what}, got {value!r}")


def check_bool(owner: str, field: str, value: object) -> None:
    """Raise a ``TypeError`` naming ``owner.field`` unless ``value`` is a real ``bool``.

    A string such as ``"no"`` or ``"false"`` is truthy in Python, so accepting it would quietly
    switch a feature on; 0/1 are refused too, so a YAML typo cannot pass as a flag.
    """
    if not isinstance(value, bool):
        raise TypeError(
            f"{owner}.{field} must be a bool (True/False; true/false in YAML and on the command "
            f"line), got {type(value).__name__} {value!r}"
        )


def check_time(t: float, owner: str = "t") -> float:
    """Validate a time after programming in seconds (finite, >= 0) and return it as a float."""
    if isinstance(t, Tensor):
        t = float(t)
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError(f"{owner} must be a time in seconds (float), got {type(t).__name__}")
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"{owner} must be a finite time >= 0 s after programming, got {t!r}")
    return float(t)


def check_conductance(g: Tensor, name: str = "g_target") -> None:
    """Raise a ``ValueError`` if ``g`` holds a negative, NaN or infinite conductance."""
    if not isinstance(g, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of conductances in µS, got {type(g)}")
    if not g.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {g.dtype}")
    if g.numel() and not bool(torch.isfinite(g).all()):
        raise ValueError(f"{name} contains NaN or infinite conductances")
    if g.numel() and bool((g < 0).any()):
        raise ValueError(f"{name} contains negative conductances (min {float(g.min()):.3g} µS)")


@dataclass
class DeviceModel:
    """Base class of memory-cell models (conductances in µS, times in s after programming).

    Subclasses are dataclasses with at least the fields ``g_max`` and ``g_min`` (µS) and a class
    attribute ``name`` under which they are registered (see :mod:`device_models.registry`).

    Every physical field is bounded to the range of real cells, so that an absurd value fails
    at construction, naming the field, instead of overflowing to NaN later: conductances in
    ``(0, 1e4]`` µS (10 mS), time constants up to ``1e9`` s, ``*_scale`` multipliers in
    ``[0, 100]``, drift exponents and relative noise in ``[0, 1]``.
    """

    name: ClassVar[str] = "base"

    # --- the interface -------------------------------------------------------------------------
    def program(
        self, g_target: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Program target conductances ``g_target`` (µS); return the per-device state."""
        raise NotImplementedError

    def conductance(self, state: dict[str, Tensor], t: float) -> Tensor:
        """Expected conductance (µS) ``t`` seconds after programming; the identity by default."""
        check_time(t)
        return state["g"]

    def read_noise_std(self, state: dict[str, Tensor], t: float) -> Tensor | None:
        """Standard deviation (µS) of one read at time ``t``; ``None`` when reads are exact."""
        return None

    def read(
        self, state: dict[str, Tensor], t: float, generator: torch.Generator | None = None
    ) -> Tensor:
        """One noisy read (µS) at time ``t``: ``conductance(state, t)`` plus read noise."""
        g = self.conductance(state, t)
        std = self.read_noise_std(state, t)
        if std is None:
            return g
        noise = torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)
        return g + std * noise

    # --- facts the layers and the cost model use ----------------------------------------------
    @property
    def is_ideal(self) -> bool:
        """True when programming and reading are exact and nothing drifts."""
        return False

    @property
    def stochastic(self) -> bool:
        """True when programming or reading draws random numbers (another seed, another draw)."""
        return not self.is_ideal

    @property
    def drifts(self) -> bool:
        """True when ``conductance`` depends on time (drift compensation is then meaningful)."""
        return True

    def state_keys(self) -> tuple[str, ...]:
        """Names of the per-device state entries ``program`` returns (``"g"`` first)."""
        return ("g",)

    def state_dtypes(self) -> dict[str, torch.dtype | None]:
        """dtype of each state entry; ``None`` means the dtype of the conductances."""
        return {k: None for k in self.state_keys()}

    def describe(self) -> str:
        """A short human-readable description used in ``extra_repr`` and reports."""
        return self.name
