"""IBM's statistical model of phase-change memory (PCM) cells for inference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from device_models import functional as F
from device_models._checks import (
    G_MAX_LIMIT_US,
    SCALE_LIMIT,
    TIME_LIMIT_S,
    check_bounded,
    check_clip,
    check_g_range,
    check_numbers,
)
from device_models.base import DeviceModel, check_conductance, check_time
from device_models.registry import register_device

__all__ = ["PCM"]


@register_device("pcm")
@dataclass
class PCM(DeviceModel):
    r"""PCM cell: programming noise, per-device power-law drift and accumulated 1/f read noise.

    The statistical model fitted on about one million doped-GST mushroom cells (Nandakumar et al.,
    "Phase-change memory models for deep learning training and inference", ICECS 2019; Joshi et
    al., "Accurate deep neural network inference using computational phase-change memory",
    Nature Communications 11, 2473, 2020); the same model as aihwkit's ``PCMLikeNoiseModel``.
    Conductances in µS, times in seconds after programming, ``r = G_target / g_max``.

    * **Programming** (once, at ``t = 0``): the target is clipped to ``[g_min, g_max]``, then
      ``G_prog = max(G_target + s_p σ_prog(r) ε, 0)``, ``ε ~ N(0, 1)``, with
      ``σ_prog(r) = (0.26348 + 1.9650 r - 1.1731 r²) · g_max / 25 µS`` (clipped at 0). The result
      is clipped at 0 only, not at ``g_max``: aihwkit's ``apply_programming_noise_to_conductance``
      does ``clamp_(min=0.0)`` alone, so a device may land slightly above ``g_max`` as real
      program-and-verify does.
    * **Drift**: ``G(t) = G_prog ((t + t0) / t0)^(-ν)`` with a per-device exponent drawn at
      programming, ``ν = s_d |N(μ_ν, σ_ν)|``, ``μ_ν = clip(-0.0155 ln r + 0.0244, 0.049, 0.1)``,
      ``σ_ν = clip(-0.0125 ln r - 0.0059, 0.008, 0.045)`` (``r`` floored at 1e-7). ν is stored
      in the state (``"nu"``, already multiplied by ``s_d``), so every read of a device drifts
      with the same exponent. ``G(0) = G_prog`` exactly.
    * **Read noise** (1/f, accumulated since programming): one read at ``t`` is
      ``G(t) + s_r σ_read ε`` with ``σ_read = |G(t)| Q_s sqrt(ln((t + t0 + t_read) / (2 t_read)))``,
      ``Q_s = min(0.0088 / r_p^0.65, 0.2)``, ``r_p = G_prog / g_max`` (aihwkit evaluates ``Q_s``
      on the programmed conductance). Reads are not clipped at 0, so that ``read`` equals
      ``conductance + read_noise_std · ε`` exactly (the path the analog layers take); aihwkit
      clips its final weight at 0, which matters only for the lowest conductances.

    Args:
        g_max: largest target conductance in µS (25 µS: the reference of the fits).
        g_min: smallest target conductance in µS (0: the RESET state).
        t0: time in s of the first read after programming, the reference of the drift fit (20 s).
        t_read: read-pulse duration in s of the 1/f fit (250 ns).
        prog_coeffs: polynomial coefficients of ``σ_prog`` in µS, lowest power of ``r`` first.
        prog_g_ref: ``g_max`` in µS at which ``prog_coeffs`` were fitted (25 µS); ``σ_prog`` is
            scaled by ``g_max / prog_g_ref``.
        nu_mu_coeffs: ``[slope, intercept]`` of ``μ_ν`` in ``ln r`` (-0.0155, 0.0244).
        nu_mu_clip: ``[lo, hi]`` clip of ``μ_ν`` (0.049, 0.1).
        nu_sigma_coeffs: ``[slope, intercept]`` of ``σ_ν`` in ``ln r`` (-0.0125, -0.0059).
        nu_sigma_clip: ``[lo, hi]`` clip of ``σ_ν`` (0.008, 0.045).
        read_q_coeff, read_q_exp, read_q_max: ``Q_s = min(read_q_coeff / r^read_q_exp,
            read_q_max)`` (0.0088, 0.65, 0.2).
        prog_noise_scale: ``s_p``, multiplies ``σ_prog``; 0 programs exactly.
        drift_scale: ``s_d``, multiplies ν; 0 turns drift off.
        read_noise_scale: ``s_r``, multiplies ``σ_read``; 0 makes reads exact.

    State (per device, shaped like ``g_target``): ``"g"`` programmed conductance (µS, dtype of
    ``g_target``), ``"nu"`` drift exponent (dimensionless, float16). Half precision is enough
    for ν: its rounding (at most 2^-11 of ν) moves ``G(t)`` by at most ``ν 2^-11 ln((t + t0) /
    t0)``, 0.25% after ten years for ν = 0.3, against a device-to-device spread of
    ``σ_ν ln((t + t0) / t0)`` with ``σ_ν >= 0.008``, 14% after ten years; it halves the state
    a drifting device needs.

    Examples:
        >>> dev = PCM()
        >>> gen = torch.Generator().manual_seed(0)
        >>> state = dev.program(torch.full((4, 3), 10.0), generator=gen)
        >>> sorted(state), state["g"].shape
        (['g', 'nu'], torch.Size([4, 3]))
        >>> bool((dev.conductance(state, 86400.0) < state["g"]).all())
        True
    """

    name: ClassVar[str] = "pcm"
    g_max: float = 25.0
    g_min: float = 0.0
    t0: float = 20.0
    t_read: float = 250e-9
    prog_coeffs: list[float] = field(default_factory=lambda: [0.26348, 1.9650, -1.1731])
    prog_g_ref: float = 25.0
    nu_mu_coeffs: list[float] = field(default_factory=lambda: [-0.0155, 0.0244])
    nu_mu_clip: list[float] = field(default_factory=lambda: [0.049, 0.1])
    nu_sigma_coeffs: list[float] = field(default_factory=lambda: [-0.0125, -0.0059])
    nu_sigma_clip: list[float] = field(default_factory=lambda: [0.008, 0.045])
    read_q_coeff: float = 0.0088
    read_q_exp: float = 0.65
    read_q_max: float = 0.2
    prog_noise_scale: float = 1.0
    drift_scale: float = 1.0
    read_noise_scale: float = 1.0

    def __post_init__(self) -> None:
        check_g_range("PCM", self.g_min, self.g_max)
        check_bounded("PCM", "t0", self.t0, 0.0, TIME_LIMIT_S, " s", open_lo=True)
        check_bounded("PCM", "t_read", self.t_read, 0.0, 1.0, " s", open_lo=True)
        if self.t_read >= self.t0:
            raise ValueError(
                f"PCM.t_read must be < PCM.t0 (the 1/f term needs ln((t0 + t_read) / 2 t_read) "
                f">= 0), got t_read={self.t_read} s, t0={self.t0} s"
            )
        check_numbers("PCM", "prog_coeffs", self.prog_coeffs)
        for i, c in enumerate(self.prog_coeffs):
            check_bounded("PCM", f"prog_coeffs[{i}]", c, -G_MAX_LIMIT_US, G_MAX_LIMIT_US, " µS")
        g_lim = G_MAX_LIMIT_US
        check_bounded("PCM", "prog_g_ref", self.prog_g_ref, 0.0, g_lim, " µS", open_lo=True)
        check_numbers("PCM", "nu_mu_coeffs", self.nu_mu_coeffs, length=2)
        check_numbers("PCM", "nu_sigma_coeffs", self.nu_sigma_coeffs, length=2)
        for name in ("nu_mu_coeffs", "nu_sigma_coeffs"):
            for i, c in enumerate(getattr(self, name)):
                check_bounded("PCM", f"{name}[{i}]", c, -1.0, 1.0)
        check_clip("PCM", "nu_mu_clip", self.nu_mu_clip)
        check_clip("PCM", "nu_sigma_clip", self.nu_sigma_clip)
        for name in ("nu_mu_clip", "nu_sigma_clip"):  # drift exponents of real PCM: ~0.005..0.1
            check_bounded("PCM", f"{name}[1]", getattr(self, name)[1], 0.0, 1.0)
        check_bounded("PCM", "read_q_coeff", self.read_q_coeff, 0.0, 1.0)
        check_bounded("PCM", "read_q_exp", self.read_q_exp, 0.0, 10.0)
        check_bounded("PCM", "read_q_max", self.read_q_max, 0.0, 1.0)
        for name in ("prog_noise_scale", "drift_scale", "read_noise_scale"):
            check_bounded("PCM", name, getattr(self, name), 0.0, SCALE_LIMIT)

    # --- the interface -------------------------------------------------------------------------
    def program(
        self, g_target: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Program ``g_target`` (µS): draw the programmed conductance, then ν (in this order)."""
        check_conductance(g_target)
        g_t = g_target.clamp(self.g_min, self.g_max)
        if self.prog_noise_scale > 0:
            std = self.prog_noise_scale * self.prog_noise_std(g_t)
            g = F.program_conductance(g_t, std, generator)
        else:
            g = g_t
        mu, sigma = F.pcm_drift_nu_stats(
            g_t,
            self.g_max,
            self.nu_mu_coeffs,
            self.nu_mu_clip,
            self.nu_sigma_coeffs,
            self.nu_sigma_clip,
        )
        nu = F.sample_drift_exponent(mu, sigma, generator, scale=self.drift_scale)
        return {"g": g, "nu": nu.to(F.COMPACT_DTYPE)}

    def conductance(self, state: dict[str, Tensor], t: float) -> Tensor:
        """``G_prog ((t + t0) / t0)^(-ν)`` (µS); ``G_prog`` itself at ``t = 0``."""
        t = check_time(t)
        if t == 0 or self.drift_scale == 0:
            return state["g"]
        return F.apply_drift(state["g"], state["nu"], t, self.t0)

    def read_noise_std(self, state: dict[str, Tensor], t: float) -> Tensor | None:
        """``s_r |G(t)| Q_s sqrt(ln((t + t0 + t_read) / (2 t_read)))`` (µS), or ``None``."""
        t = check_time(t)
        if self.read_noise_scale == 0:
            return None
        std = F.pcm_read_noise_std(
            self.conductance(state, t),
            state["g"],
            self.g_max,
            t,
            self.t0,
            self.t_read,
            self.read_q_coeff,
            self.read_q_exp,
            self.read_q_max,
        )
        return self.read_noise_scale * std

    # --- helpers and facts ---------------------------------------------------------------------
    def prog_noise_std(self, g_target: Tensor) -> Tensor:
        """``σ_prog`` (µS) at the (clipped) targets, before ``prog_noise_scale``."""
        return F.polynomial_std(g_target, self.g_max, self.prog_coeffs, self.prog_g_ref)

    @property
    def is_ideal(self) -> bool:
        return self.prog_noise_scale == 0 and self.drift_scale == 0 and self.read_noise_scale == 0

    @property
    def drifts(self) -> bool:
        return self.drift_scale > 0

    def state_keys(self) -> tuple[str, ...]:
        return ("g", "nu")

    def state_dtypes(self) -> dict[str, torch.dtype | None]:
        return {"g": None, "nu": F.COMPACT_DTYPE}

    def describe(self) -> str:
        return (
            f"pcm(g={self.g_min:g}..{self.g_max:g} µS, t0={self.t0:g} s, "
            f"prog×{self.prog_noise_scale:g}, drift×{self.drift_scale:g}, "
            f"read×{self.read_noise_scale:g})"
        )
