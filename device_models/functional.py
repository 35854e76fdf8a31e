"""Pure tensor functions behind the memory-cell models (conductances in µS, times in s).

Every numerical step of :class:`~device_models.PCM`, :class:`~device_models.RRAM` and
:class:`~device_models.Tabulated` exists here as a function of tensors and explicit scalars, so
the models are one-line compositions and each step can be tested on its own. Stochastic functions
take ``generator=`` (never the global RNG) and draw on the device and dtype of their input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "randn_like",
    "polynomial_std",
    "pcm_prog_noise_std",
    "program_conductance",
    "pcm_drift_nu_stats",
    "sample_drift_exponent",
    "drift_factor",
    "apply_drift",
    "drift",
    "pcm_read_noise_std",
    "read_noise",
    "quantize_to_levels",
    "nearest_level",
    "relaxation_scale",
    "apply_relaxation",
    "draw_stuck",
    "apply_stuck",
    "STUCK_NONE",
    "STUCK_ON",
    "STUCK_OFF",
    "COMPACT_DTYPE",
]

#: dtype of per-device state that needs only a few significant digits (a drift exponent, a
#: relaxation draw): float16 keeps 11 bits, far below the device-to-device spread it encodes.
COMPACT_DTYPE = torch.float16

#: Codes of the ``"stuck"`` state entry (int8): a healthy cell, one stuck at g_max, at g_min.
STUCK_NONE, STUCK_ON, STUCK_OFF = 0, 1, -1

# Smallest relative conductance used inside logarithms and negative powers (the value aihwkit's
# PCMLikeNoiseModel uses for its drift statistics); keeps r -> 0 finite.
_R_FLOOR = 1e-7


def randn_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal samples shaped like ``x``, on its device and dtype, from ``generator``.

    Examples:
        >>> gen = torch.Generator().manual_seed(0)
        >>> randn_like(torch.zeros(2, 3, dtype=torch.float64), gen).dtype
        torch.float64
    """
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def polynomial_std(
    g: Tensor, g_max: float, coeffs: Sequence[float], g_ref: float | None = None
) -> Tensor:
    """A conductance-dependent spread ``sum_i c_i r**i`` (µS), ``r = g / g_max``, clipped at 0.

    The coefficients are in µS for a device whose largest conductance is ``g_ref``; the result is
    scaled by ``g_max / g_ref`` so that the *relative* spread is kept when ``g_max`` changes (the
    convention of aihwkit's ``prog_coeff_g_max_reference``). ``g_ref=None`` means ``g_max``.

    Examples:
        >>> polynomial_std(torch.tensor([0.0, 25.0]), 25.0, [1.0, 2.0])
        tensor([1., 3.])
        >>> polynomial_std(torch.tensor([50.0]), 50.0, [1.0, 2.0], g_ref=25.0)
        tensor([6.])
    """
    r = g / g_max
    coeffs = list(coeffs)
    if not coeffs:
        return torch.zeros_like(r)
    std = torch.full_like(r, float(coeffs[-1]))
    for c in reversed(coeffs[:-1]):  # Horner's scheme, in place (one buffer for any degree)
        std.mul_(r).add_(c)
    scale = 1.0 if g_ref is None else g_max / g_ref
    return std.mul_(scale).clamp_(min=0.0)


def pcm_prog_noise_std(
    g_target: Tensor,
    g_max: float = 25.0,
    coeffs: Sequence[float] = (0.26348, 1.9650, -1.1731),
    g_ref: float = 25.0,
) -> Tensor:
    """PCM programming-noise std (µS): ``0.26348 + 1.9650 r - 1.1731 r**2`` at ``g_max = 25 µS``.

    Nandakumar et al., ICECS 2019 (the polynomial of aihwkit's ``PCMLikeNoiseModel``), scaled by
    ``g_max / 25 µS``; ``r = g_target / g_max``.

    Examples:
        >>> pcm_prog_noise_std(torch.tensor([0.0, 25.0]))
        tensor([0.2635, 1.0554])
    """
    return polynomial_std(g_target, g_max, coeffs, g_ref)


def program_conductance(
    g_target: Tensor,
    std: Tensor | float,
    generator: torch.Generator | None = None,
    g_floor: float = 0.0,
) -> Tensor:
    """One programming attempt: ``max(g_target + std * N(0, 1), g_floor)`` (µS).

    A conductance cannot be negative, so the result is clipped at ``g_floor`` (0 by default).

    Examples:
        >>> program_conductance(torch.tensor([1.0, 2.0]), 0.0)
        tensor([1., 2.])
        >>> gen = torch.Generator().manual_seed(0)
        >>> bool((program_conductance(torch.zeros(1000), 1.0, gen) >= 0).all())
        True
    """
    if isinstance(std, (int, float)) and std == 0:
        return g_target.clamp(min=g_floor)
    noise = randn_like(g_target, generator)
    return noise.mul_(std).add_(g_target).clamp_(min=g_floor)


def pcm_drift_nu_stats(
    g_target: Tensor,
    g_max: float = 25.0,
    mu_coeffs: Sequence[float] = (-0.0155, 0.0244),
    mu_clip: Sequence[float] = (0.049, 0.1),
    sigma_coeffs: Sequence[float] = (-0.0125, -0.0059),
    sigma_clip: Sequence[float] = (0.008, 0.045),
) -> tuple[Tensor, Tensor]:
    """Mean and std of the PCM drift exponent ν at relative conductance ``r = g_target/g_max``.

    ``mu = clip(-0.0155 ln r + 0.0244, 0.049, 0.1)`` and
    ``sigma = clip(-0.0125 ln r - 0.0059, 0.008, 0.045)`` (Nandakumar et al., ICECS 2019; Joshi
    et al., Nat. Commun. 2020). ``r`` is floored at 1e-7 so that ``r -> 0`` gives the clip values.

    Examples:
        >>> mu, sigma = pcm_drift_nu_stats(torch.tensor([0.0, 25.0]))
        >>> mu, sigma
        (tensor([0.1000, 0.0490]), tensor([0.0450, 0.0080]))
    """
    log_r = g_target.abs().div_(g_max).clamp_(min=_R_FLOOR).log_()
    mu = (mu_coeffs[0] * log_r).add_(mu_coeffs[1]).clamp_(mu_clip[0], mu_clip[1])
    sigma = log_r.mul_(sigma_coeffs[0]).add_(sigma_coeffs[1]).clamp_(sigma_clip[0], sigma_clip[1])
    return mu, sigma


def sample_drift_exponent(
    mu: Tensor, sigma: Tensor, generator: torch.Generator | None = None, scale: float = 1.0
) -> Tensor:
    """Per-device drift exponents ``scale * |N(mu, sigma)|`` (dimensionless, >= 0).

    Examples:
        >>> sample_drift_exponent(torch.tensor([0.05]), torch.tensor([0.0]))
        tensor([0.0500])
    """
    if scale == 0:
        return torch.zeros_like(mu)
    return randn_like(mu, generator).mul_(sigma).add_(mu).abs_().mul_(scale)


def drift_factor(nu: Tensor, t: float, t0: float) -> Tensor:
    """The power-law drift factor ``((t + t0) / t0) ** (-nu)``; exactly 1 at ``t = 0``.

    Examples:
        >>> drift_factor(torch.tensor([0.0, 0.1]), t=180.0, t0=20.0)
        tensor([1.0000, 0.7943])
    """
    if nu.dtype in (torch.float16, torch.bfloat16):  # compact state: compute in float32
        nu = nu.float()
    return torch.exp(-nu * math.log((t + t0) / t0))


def apply_drift(g: Tensor, nu: Tensor, t: float, t0: float) -> Tensor:
    """Conductance ``t`` seconds after programming: ``G(t) = G_prog ((t + t0) / t0) ** (-nu)``.

    Examples:
        >>> apply_drift(torch.tensor([10.0]), torch.tensor([0.1]), t=180.0, t0=20.0)
        tensor([7.9433])
        >>> apply_drift(torch.tensor([10.0]), torch.tensor([0.1]), t=0.0, t0=20.0)
        tensor([10.])
    """
    return g * drift_factor(nu, t, t0).to(g.dtype)


drift = apply_drift


def pcm_read_noise_std(
    g_t: Tensor,
    g_prog: Tensor,
    g_max: float,
    t: float,
    t0: float = 20.0,
    t_read: float = 250e-9,
    q_coeff: float = 0.0088,
    q_exp: float = 0.65,
    q_max: float = 0.2,
) -> Tensor:
    """Std (µS) of one PCM read at ``t``: ``|G(t)| Q_s sqrt(ln((t + t0 + t_read) / (2 t_read)))``.

    ``Q_s = min(0.0088 / r**0.65, 0.2)`` with ``r = |g_prog| / g_max`` (the programmed
    conductance, as in aihwkit's ``PCMLikeNoiseModel``); the 1/f noise accumulated since
    programming (Nandakumar et al., ICECS 2019).

    Examples:
        >>> g = torch.tensor([25.0])
        >>> pcm_read_noise_std(g, g, 25.0, t=0.0)
        tensor([0.9204])
    """
    r = (g_prog.abs() / g_max).clamp(min=_R_FLOOR)
    q_s = (q_coeff / r**q_exp).clamp(max=q_max)
    time_term = math.sqrt(math.log((t + t0 + t_read) / (2.0 * t_read)))
    return g_t.abs() * q_s * time_term


def read_noise(g: Tensor, std: Tensor | float | None, generator: torch.Generator | None = None):
    """One noisy read ``g + std * N(0, 1)`` (µS); ``std=None`` returns ``g`` unchanged.

    Examples:
        >>> read_noise(torch.tensor([1.0]), None)
        tensor([1.])
    """
    if std is None:
        return g
    return g + std * randn_like(g, generator)


def quantize_to_levels(g: Tensor, levels: int | None, g_min: float, g_max: float) -> Tensor:
    """Clip ``g`` to ``[g_min, g_max]`` and snap it to the nearest of ``levels`` equally spaced
    conductances (``levels=None``: only the clipping).

    Examples:
        >>> quantize_to_levels(torch.tensor([0.0, 1.4, 2.6, 9.0]), 3, 0.0, 4.0)
        tensor([0., 2., 2., 4.])
    """
    g = g.clamp(g_min, g_max)
    if levels is None:
        return g
    step = (g_max - g_min) / (levels - 1)
    return g_min + torch.round((g - g_min) / step) * step


def nearest_level(g: Tensor, means: Tensor) -> Tensor:
    """Index (int64) of the nearest of the sorted level ``means`` for every entry of ``g``.

    Ties go to the lower level.

    Examples:
        >>> nearest_level(torch.tensor([0.0, 1.6, 2.5, 9.0]), torch.tensor([1.0, 2.0, 3.0]))
        tensor([0, 1, 1, 2])
    """
    if means.numel() == 1:
        return torch.zeros(g.shape, dtype=torch.long, device=g.device)
    midpoints = (means[1:] + means[:-1]) / 2
    return torch.bucketize(g, midpoints.to(device=g.device, dtype=g.dtype), right=False)


def relaxation_scale(t: float, t0: float) -> float:
    """Decades of relaxation ``log10(1 + t / t0)`` after programming; 0 at ``t = 0``.

    Examples:
        >>> relaxation_scale(9.0, 1.0)
        1.0
    """
    return math.log10(1.0 + t / t0)


def apply_relaxation(
    g: Tensor, z: Tensor, t: float, t0: float, std_per_decade: float, mean_per_decade: float = 0.0
) -> Tensor:
    """RRAM relaxation: ``max(G + log10(1 + t/t0) (mean + std z), 0)`` with a fixed per-device
    standard normal ``z`` (µS; ``std``/``mean`` in µS per decade).

    Examples:
        >>> apply_relaxation(torch.tensor([10.0]), torch.tensor([1.0]), 9.0, 1.0, 0.5)
        tensor([10.5000])
    """
    s = relaxation_scale(t, t0)
    if s == 0:
        return g
    return (g + s * (mean_per_decade + std_per_decade * z.to(g.dtype))).clamp(min=0.0)


def draw_stuck(
    like: Tensor, on_rate: float, off_rate: float, generator: torch.Generator | None = None
) -> Tensor:
    """Stuck-cell codes (int8, shaped like ``like``): ``STUCK_ON`` with probability ``on_rate``,
    ``STUCK_OFF`` with ``off_rate``, else ``STUCK_NONE``.

    Examples:
        >>> draw_stuck(torch.zeros(4), 0.0, 0.0)
        tensor([0, 0, 0, 0], dtype=torch.int8)
        >>> draw_stuck(torch.zeros(2), 1.0, 0.0)
        tensor([1, 1], dtype=torch.int8)
    """
    code = torch.zeros(like.shape, dtype=torch.int8, device=like.device)
    if on_rate == 0 and off_rate == 0:
        return code
    u = torch.rand(like.shape, generator=generator, device=like.device, dtype=torch.float32)
    code[u < on_rate] = STUCK_ON
    code[(u >= on_rate) & (u < on_rate + off_rate)] = STUCK_OFF
    return code


def apply_stuck(g: Tensor, stuck: Tensor, g_min: float, g_max: float) -> Tensor:
    """Replace stuck cells: ``g_max`` where ``stuck == STUCK_ON``, ``g_min`` where ``STUCK_OFF``.

    Examples:
        >>> apply_stuck(torch.tensor([5.0, 5.0, 5.0]), torch.tensor([0, 1, -1]), 1.0, 9.0)
        tensor([5., 9., 1.])
    """
    g = torch.where(stuck == STUCK_ON, torch.full_like(g, g_max), g)
    return torch.where(stuck == STUCK_OFF, torch.full_like(g, g_min), g)
