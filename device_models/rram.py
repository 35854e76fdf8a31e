"""HfO2-class resistive RAM (RRAM) cells: finite on/off ratio, levels, relaxation, stuck cells."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
from torch import Tensor

from device_models import functional as F
from device_models._checks import (
    G_MAX_LIMIT_US,
    SCALE_LIMIT,
    TIME_LIMIT_S,
    check_bounded,
    check_g_range,
    check_numbers,
    check_rate,
)
from device_models.base import DeviceModel, check_conductance, check_time
from device_models.registry import register_device

__all__ = ["RRAM"]

# aihwkit's ReRamWan2022NoiseModel fit of the t = 1 s spread of Wan et al., Nature 2022,
# Extended Data: sigma(r) in µS at g_max = 40 µS, lowest power of r = G/g_max first.
_WAN2022_PROG_COEFFS = [0.348, 16.030, -43.853, 45.393, -16.815]


@register_device("rram")
@dataclass
class RRAM(DeviceModel):
    r"""HfO2-class 1T1R RRAM cell programmed by write-verify, for inference.

    Conductances in µS, times in seconds after programming, ``r = G / g_max``.

    * **Levels**: the target is clipped to ``[g_min, g_max]`` and, when ``levels`` is set, snapped
      to the nearest of ``levels`` equally spaced conductances in ``[g_min, g_max]``.
    * **Programming spread**: ``G_prog = max(G_level + s_p σ_prog(r) ε, 0)``, ``ε ~ N(0, 1)``,
      ``σ_prog(r) = Σ_i prog_coeffs[i] r^i · g_max / g_ref``. The default polynomial
      (0.348 + 16.030 r − 43.853 r² + 45.393 r³ − 16.815 r⁴ µS at 40 µS, i.e. 0.35 µS at r = 0,
      2.3 µS at r = 0.3, 1.1 µS at r = 1) is aihwkit's fit (``ReRamWan2022NoiseModel``) of the
      spread 1 s after write-verify programming measured on the NeuRRAM chip (W. Wan et al., "A
      compute-in-memory chip based on resistive random-access memory", Nature 608, 504, 2022,
      Extended Data). Sandia's CrossSim fits the same data with a cubic (its ``RRAMWan``).
    * **Relaxation** over log time: every device draws a fixed ``z ~ N(0, 1)`` at programming;
      ``G(t) = max(G_prog + log10(1 + t / t0) · (μ_rel + σ_rel z) · g_max / g_ref, 0)``. The
      spread therefore grows as ``σ_rel log10(1 + t/t0)`` on top of the programming spread.
      ``σ_rel = 0.58 µS per decade`` (at 40 µS, ``t0 = 1 s``) is
      ``sqrt(σ_1day² − σ_1s²) / log10(1 + 86400)`` from aihwkit's 1 s and 1 day fits of Wan et
      al. (2022), averaged over ``r ∈ [0.1, 1]`` (the 2-day fit gives 0.55). Those fits describe
      spread only, so the mean shift ``μ_rel`` defaults to 0.
    * **Read noise**: additive, ``σ_read = read_noise · g_max`` per read, independent of ``t``
      (aihwkit's note on this model: short-term read noise of "about 1%" of the weight range).
    * **Stuck cells**: drawn at programming, with probabilities ``stuck_on_rate`` (stuck at
      ``g_max``) and ``stuck_off_rate`` (stuck at ``g_min``); stored in the state as an int8 code
      (``"stuck"``: 1 on, -1 off, 0 healthy) and stuck at every time. The defaults are 0: the
      frequently quoted figure, about 10% stuck cells in a first-cut 4 Mb HfO2 test chip (C.-Y.
      Chen et al., IEEE Trans. Computers 64(1), 180, 2015), describes an immature process, not a
      write-verified array; set the rates to study faults.

    Args:
        g_max: largest conductance in µS (40 µS: the reference of the Wan et al. fits).
        g_min: smallest conductance in µS (4 µS: on/off ratio 10, the 130 nm HfOx RRAM of
            NeuroSim's device table, DNN+NeuroSim V1.4 manual, Table VI).
        levels: number of programmable conductances (>= 2), or ``None`` for a continuous target.
        prog_coeffs: ``σ_prog`` polynomial in µS at ``g_ref``, lowest power of ``r`` first.
        g_ref: ``g_max`` in µS at which ``prog_coeffs``, ``relax_std`` and ``relax_mean`` were
            fitted (40 µS); they are scaled by ``g_max / g_ref``.
        prog_noise_scale: ``s_p``, multiplies ``σ_prog``; 0 programs exactly.
        t0: time scale of relaxation in s (1 s: the first read of the fits).
        relax_std: ``σ_rel`` in µS per decade of ``1 + t / t0``; 0 turns relaxation spread off.
        relax_mean: ``μ_rel``, the mean shift in µS per decade (negative: conductance decay).
        read_noise: read-noise std as a fraction of ``g_max``; 0 makes reads exact.
        stuck_on_rate: probability that a cell is stuck at ``g_max``.
        stuck_off_rate: probability that a cell is stuck at ``g_min``.

    State (per device, shaped like ``g_target``): ``"g"`` programmed conductance (µS, dtype of
    ``g_target``), ``"relax"`` the relaxation draw ``z`` (float16: its rounding, relative
    2^-11, moves ``G(t)`` by under 1e-3 of the relaxation spread), ``"stuck"`` (int8).

    Examples:
        >>> dev = RRAM(levels=8, stuck_on_rate=0.01)
        >>> gen = torch.Generator().manual_seed(0)
        >>> state = dev.program(torch.full((5, 5), 20.0), generator=gen)
        >>> sorted(state), state["stuck"].dtype
        (['g', 'relax', 'stuck'], torch.int8)
    """

    name: ClassVar[str] = "rram"
    g_max: float = 40.0
    g_min: float = 4.0
    levels: Optional[int] = None
    prog_coeffs: list[float] = field(default_factory=lambda: list(_WAN2022_PROG_COEFFS))
    g_ref: float = 40.0
    prog_noise_scale: float = 1.0
    t0: float = 1.0
    relax_std: float = 0.58
    relax_mean: float = 0.0
    read_noise: float = 0.01
    stuck_on_rate: float = 0.0
    stuck_off_rate: float = 0.0

    def __post_init__(self) -> None:
        check_g_range("RRAM", self.g_min, self.g_max)
        if self.levels is not None:
            if isinstance(self.levels, bool) or not isinstance(self.levels, int):
                raise TypeError(f"RRAM.levels must be an int >= 2 or None, got {self.levels!r}")
            if not 2 <= self.levels <= 65536:
                raise ValueError(
                    f"RRAM.levels must be in 2..65536 (g_min and g_max at least) or None "
                    "(continuous), "
                    f"got {self.levels}"
                )
        check_numbers("RRAM", "prog_coeffs", self.prog_coeffs)
        for i, c in enumerate(self.prog_coeffs):
            check_bounded("RRAM", f"prog_coeffs[{i}]", c, -G_MAX_LIMIT_US, G_MAX_LIMIT_US, " µS")
        check_bounded("RRAM", "g_ref", self.g_ref, 0.0, G_MAX_LIMIT_US, " µS", open_lo=True)
        check_bounded("RRAM", "prog_noise_scale", self.prog_noise_scale, 0.0, SCALE_LIMIT)
        check_bounded("RRAM", "t0", self.t0, 0.0, TIME_LIMIT_S, " s", open_lo=True)
        check_bounded("RRAM", "relax_std", self.relax_std, 0.0, G_MAX_LIMIT_US, " µS/decade")
        lim = G_MAX_LIMIT_US
        check_bounded("RRAM", "relax_mean", self.relax_mean, -lim, lim, " µS/decade")
        check_bounded("RRAM", "read_noise", self.read_noise, 0.0, 1.0, " (fraction of g_max)")
        check_rate("RRAM", "stuck_on_rate", self.stuck_on_rate)
        check_rate("RRAM", "stuck_off_rate", self.stuck_off_rate)
        if self.stuck_on_rate + self.stuck_off_rate > 1:
            raise ValueError(
                f"RRAM.stuck_on_rate + RRAM.stuck_off_rate must be <= 1, got "
                f"{self.stuck_on_rate} + {self.stuck_off_rate}"
            )

    # --- the interface -------------------------------------------------------------------------
    def program(
        self, g_target: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Program ``g_target`` (µS); draws, in order: spread, relaxation ``z``, stuck cells."""
        check_conductance(g_target)
        g_level = self.quantize(g_target)
        if self.prog_noise_scale > 0:
            std = self.prog_noise_scale * self.prog_noise_std(g_level)
            g = F.program_conductance(g_level, std, generator)
        else:
            g = g_level
        if self.relax_std > 0:
            z = F.randn_like(g_level, generator)
        else:
            z = torch.zeros_like(g_level)
        stuck = F.draw_stuck(g_level, self.stuck_on_rate, self.stuck_off_rate, generator)
        g = F.apply_stuck(g, stuck, self.g_min, self.g_max)
        return {"g": g, "relax": z.to(F.COMPACT_DTYPE), "stuck": stuck}

    def conductance(self, state: dict[str, Tensor], t: float) -> Tensor:
        """Relaxed conductance at ``t`` (µS); stuck cells stay at ``g_max`` / ``g_min``."""
        t = check_time(t)
        if t == 0 or not self.drifts:
            return state["g"]
        k = self.g_max / self.g_ref
        g = F.apply_relaxation(
            state["g"], state["relax"], t, self.t0, self.relax_std * k, self.relax_mean * k
        )
        if self.stuck_on_rate == 0 and self.stuck_off_rate == 0:
            return g  # no cell of this device's states is stuck
        return F.apply_stuck(g, state["stuck"], self.g_min, self.g_max)

    def read_noise_std(self, state: dict[str, Tensor], t: float) -> Tensor | None:
        """``read_noise · g_max`` (µS) as a 0-d tensor (broadcastable), or ``None``."""
        check_time(t)
        if self.read_noise == 0:
            return None
        g = state["g"]
        return torch.tensor(self.read_noise * self.g_max, dtype=g.dtype, device=g.device)

    # --- helpers and facts ---------------------------------------------------------------------
    def quantize(self, g_target: Tensor) -> Tensor:
        """The conductance the write-verify loop aims at: clipped, snapped to ``levels``."""
        return F.quantize_to_levels(g_target, self.levels, self.g_min, self.g_max)

    def level_values(self) -> Optional[list[float]]:
        """The ``levels`` programmable conductances (µS), or ``None`` when continuous."""
        if self.levels is None:
            return None
        step = (self.g_max - self.g_min) / (self.levels - 1)
        return [self.g_min + i * step for i in range(self.levels)]

    def prog_noise_std(self, g_level: Tensor) -> Tensor:
        """``σ_prog`` (µS) at the snapped targets, before ``prog_noise_scale``."""
        return F.polynomial_std(g_level, self.g_max, self.prog_coeffs, self.g_ref)

    @property
    def is_ideal(self) -> bool:
        return (
            self.levels is None
            and self.prog_noise_scale == 0
            and not self.drifts
            and self.read_noise == 0
            and self.stuck_on_rate == 0
            and self.stuck_off_rate == 0
        )

    @property
    def drifts(self) -> bool:
        return self.relax_std > 0 or self.relax_mean != 0

    def state_keys(self) -> tuple[str, ...]:
        return ("g", "relax", "stuck")

    def state_dtypes(self) -> dict[str, torch.dtype | None]:
        return {"g": None, "relax": F.COMPACT_DTYPE, "stuck": torch.int8}

    def describe(self) -> str:
        lv = "continuous" if self.levels is None else f"{self.levels} levels"
        return (
            f"rram(g={self.g_min:g}..{self.g_max:g} µS, {lv}, relax {self.relax_std:g} µS/dec, "
            f"stuck on/off {self.stuck_on_rate:g}/{self.stuck_off_rate:g})"
        )
