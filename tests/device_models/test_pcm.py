"""PCM: the statistics of programming, drift and read noise against the published equations.

Bounds of the statistical tests: the mean of N independent samples of std σ has standard error
σ/√N, and the sample std of N Gaussian samples has standard error ≈ σ/√(2N). With N ≥ 1e5 and
k = 5, a correct model fails a single check with probability < 6e-7 (two-sided normal tail), and
the generators are fixed, so the tests are deterministic; a model off by more than k standard
errors (a few tenths of a percent of σ here) fails.
"""

from __future__ import annotations

import math

import pytest
import torch

import device_models
from device_models import PCM

K = 5.0  # bound in standard errors
N = 100_000  # devices per condition
HOUR, DAY, YEAR = 3600.0, 86400.0, 365.25 * 86400.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_mean_close(sample: torch.Tensor, mu: float, sigma: float, k: float = K) -> None:
    n = sample.numel()
    err = abs(float(sample.double().mean()) - mu)
    assert err <= k * sigma / math.sqrt(n), f"mean {float(sample.mean())} vs {mu} (σ={sigma})"


def assert_std_close(sample: torch.Tensor, sigma: float, k: float = K) -> None:
    n = sample.numel()
    err = abs(float(sample.double().std()) - sigma)
    assert err <= k * sigma / math.sqrt(2 * n), f"std {float(sample.std())} vs {sigma}"


def sigma_prog(r: float, g_max: float = 25.0) -> float:
    """The published polynomial, written out independently of the library."""
    return max(0.26348 + 1.9650 * r - 1.1731 * r**2, 0.0) * g_max / 25.0


def nu_stats(r: float) -> tuple[float, float]:
    lr = math.log(max(r, 1e-7))
    mu = min(max(-0.0155 * lr + 0.0244, 0.049), 0.1)
    sigma = min(max(-0.0125 * lr - 0.0059, 0.008), 0.045)
    return mu, sigma


def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def mean_exp_abs(mu: float, sigma: float, a: float) -> float:
    """E[exp(-a |X|)] for X ~ N(mu, sigma²), split at X = 0 and completed to Gaussians:
    E[e^{-aX}; X>0] = e^{-aμ + a²σ²/2} Φ(μ/σ - aσ),  E[e^{aX}; X<0] = e^{aμ + a²σ²/2} Φ(-μ/σ - aσ).
    """
    v = a * a * sigma * sigma / 2
    return math.exp(-a * mu + v) * phi(mu / sigma - a * sigma) + math.exp(a * mu + v) * phi(
        -mu / sigma - a * sigma
    )


# --- programming ---------------------------------------------------------------------------------
@pytest.mark.statistical
@pytest.mark.parametrize("r", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("g_max", [25.0, 10.0])
def test_programming_spread_matches_polynomial(r: float, g_max: float) -> None:
    dev = PCM(g_max=g_max, drift_scale=0.0, read_noise_scale=0.0)
    target = torch.full((N,), r * g_max, dtype=torch.float64)
    g = dev.program(target, generator=gen(1))["g"]
    sigma = sigma_prog(r, g_max)
    # The clip at 0 is >= 5σ away for r >= 0.1 (2.5 µS vs σ = 0.45 µS): the mean is the target.
    assert_mean_close(g, r * g_max, sigma)
    assert_std_close(g, sigma)


@pytest.mark.statistical
def test_programming_at_zero_is_half_normal() -> None:
    """At G_target = 0 the clip at 0 turns N(0, σ) into max(N(0, σ), 0): mean σ/√(2π)."""
    dev = PCM(drift_scale=0.0, read_noise_scale=0.0)
    g = dev.program(torch.zeros(N), generator=gen(2))["g"]
    sigma = sigma_prog(0.0)
    assert float(g.min()) == 0.0
    # max(X, 0) has std σ·sqrt(1/2 - 1/(2π)) < σ, so σ/√N bounds its standard error.
    assert_mean_close(g, sigma / math.sqrt(2 * math.pi), sigma)
    assert abs(float((g == 0).double().mean()) - 0.5) <= K * 0.5 / math.sqrt(N)


def test_prog_noise_scale_zero_programs_exactly() -> None:
    dev = PCM(prog_noise_scale=0.0)
    target = torch.linspace(0, 30, 50)
    g = dev.program(target, generator=gen())["g"]
    torch.testing.assert_close(g, target.clamp(0, 25.0), rtol=0, atol=0)


# --- drift ---------------------------------------------------------------------------------------
@pytest.mark.statistical
@pytest.mark.parametrize("r", [0.02, 0.3, 1.0])
def test_nu_distribution(r: float) -> None:
    dev = PCM(prog_noise_scale=0.0, read_noise_scale=0.0)
    nu = dev.program(torch.full((N,), r * 25.0, dtype=torch.float64), generator=gen(3))["nu"]
    mu, sigma = nu_stats(r)
    assert bool((nu >= 0).all())
    # ν = |X| is a folded normal (μ/σ >= 1.94 for every r, so the fold moves < 3% of the mass):
    # E|X| = σ√(2/π) e^{-μ²/2σ²} + μ(1 - 2Φ(-μ/σ)), and Var|X| = μ² + σ² - (E|X|)² <= σ²
    # because E|X| >= |μ|, so σ/√N bounds the standard error of the sample mean.
    mean_abs = sigma * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * sigma**2)) + mu * (
        1 - 2 * phi(-mu / sigma)
    )
    assert_mean_close(nu, mean_abs, sigma)


@pytest.mark.statistical
@pytest.mark.parametrize("t", [HOUR, DAY, YEAR])
@pytest.mark.parametrize("r", [0.05, 0.5, 1.0])
def test_mean_drift_factor(t: float, r: float) -> None:
    """E[G(t)/G_prog] = E[((t + t0)/t0)^(-|X|)], X ~ N(μ_ν, σ_ν): closed form above."""
    dev = PCM(prog_noise_scale=0.0, read_noise_scale=0.0)
    g0 = r * 25.0
    state = dev.program(torch.full((N,), g0, dtype=torch.float64), generator=gen(4))
    factor = dev.conductance(state, t) / g0
    mu, sigma = nu_stats(r)
    a = math.log((t + dev.t0) / dev.t0)
    m1 = mean_exp_abs(mu, sigma, a)
    sd = math.sqrt(mean_exp_abs(mu, sigma, 2 * a) - m1**2)  # exact std of the factor
    assert_mean_close(factor, m1, sd)


def test_drift_is_monotone_in_time_and_identity_at_zero() -> None:
    dev = PCM()
    target = torch.rand(10_000, generator=gen(5), dtype=torch.float64) * 25.0
    state = dev.program(target, generator=gen(6))
    torch.testing.assert_close(dev.conductance(state, 0.0), state["g"], rtol=0, atol=0)
    times = [0.0, 1.0, 20.0, HOUR, DAY, 30 * DAY, YEAR, 10 * YEAR]
    g = torch.stack([dev.conductance(state, t) for t in times])
    assert bool((g[1:] <= g[:-1]).all())


def test_nu_is_fixed_between_reads() -> None:
    """Every read of a device drifts with the exponent drawn at programming."""
    dev = PCM(prog_noise_scale=0.0)
    state = dev.program(torch.full((1000,), 12.0, dtype=torch.float64), generator=gen(7))
    nu = state["nu"].clone().double()  # stored in half precision, applied exactly
    for t in (HOUR, DAY, YEAR):
        dev.read(state, t, generator=gen(8))
        nu_t = -torch.log(dev.conductance(state, t) / state["g"]) / math.log((t + 20.0) / 20.0)
        torch.testing.assert_close(nu_t, nu)
    torch.testing.assert_close(state["nu"].double(), nu, rtol=0, atol=0)
    torch.testing.assert_close(dev.conductance(state, DAY), dev.conductance(state, DAY))


def test_drift_scale_zero_turns_drift_off() -> None:
    dev = PCM(drift_scale=0.0)
    state = dev.program(torch.full((100,), 10.0), generator=gen())
    assert not dev.drifts
    assert bool((state["nu"] == 0).all())
    torch.testing.assert_close(dev.conductance(state, YEAR), state["g"], rtol=0, atol=0)


# --- read noise ----------------------------------------------------------------------------------
@pytest.mark.statistical
@pytest.mark.parametrize("t", [0.0, HOUR, DAY, YEAR])
@pytest.mark.parametrize("r", [0.005, 0.5, 1.0])
def test_read_noise_spread(t: float, r: float) -> None:
    """(read - G(t)) / G(t) ~ N(0, Q_s² ln((t + t0 + t_read) / 2 t_read)), Q_s from G_prog."""
    dev = PCM(prog_noise_scale=0.0)  # G_prog = target for every device; ν still random
    state = dev.program(torch.full((N,), r * 25.0, dtype=torch.float64), generator=gen(9))
    g_t = dev.conductance(state, t)
    rel = (dev.read(state, t, generator=gen(10)) - g_t) / g_t
    q_s = min(0.0088 / r**0.65, 0.2)
    sigma = q_s * math.sqrt(math.log((t + 20.0 + 250e-9) / (2 * 250e-9)))
    assert_mean_close(rel, 0.0, sigma)
    assert_std_close(rel, sigma)
    torch.testing.assert_close(dev.read_noise_std(state, t) / g_t, torch.full_like(g_t, sigma))


def test_read_noise_scale_zero_gives_exact_reads() -> None:
    dev = PCM(read_noise_scale=0.0)
    state = dev.program(torch.full((10,), 10.0), generator=gen())
    assert dev.read_noise_std(state, DAY) is None
    torch.testing.assert_close(dev.read(state, DAY, gen()), dev.conductance(state, DAY))


def test_all_scales_zero_is_ideal() -> None:
    dev = PCM(prog_noise_scale=0.0, drift_scale=0.0, read_noise_scale=0.0)
    assert dev.is_ideal
    assert not PCM().is_ideal


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"g_max": -1.0}, "PCM.g_max"),
        ({"g_max": float("nan")}, "PCM.g_max"),
        ({"g_min": -0.5}, "PCM.g_min"),
        ({"g_min": 25.0}, "PCM.g_min must be < PCM.g_max"),
        ({"g_min": 30.0, "g_max": 25.0}, "PCM.g_min"),
        ({"t0": 0.0}, "PCM.t0"),
        ({"t_read": -1e-9}, "PCM.t_read"),
        ({"t0": 1e-7, "t_read": 5e-7}, "PCM.t_read must be < PCM.t0"),
        ({"prog_noise_scale": -1.0}, "PCM.prog_noise_scale"),
        ({"drift_scale": -0.1}, "PCM.drift_scale"),
        ({"read_noise_scale": float("inf")}, "PCM.read_noise_scale"),
        ({"prog_coeffs": []}, "PCM.prog_coeffs"),
        ({"prog_coeffs": [1.0, float("nan")]}, r"PCM.prog_coeffs\[1\]"),
        ({"nu_mu_clip": [0.1, 0.05]}, "PCM.nu_mu_clip"),
        ({"nu_sigma_clip": [0.1]}, "PCM.nu_sigma_clip"),
        ({"nu_mu_coeffs": [1.0, 2.0, 3.0]}, "PCM.nu_mu_coeffs"),
        ({"prog_g_ref": 0.0}, "PCM.prog_g_ref"),
    ],
)
def test_bad_fields(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PCM(**kwargs)


def test_bad_field_types() -> None:
    with pytest.raises(TypeError, match="PCM.g_max"):
        PCM(g_max="25")
    with pytest.raises(TypeError, match="PCM.drift_scale"):
        PCM(drift_scale=True)


def test_registry_builds_pcm_with_overrides() -> None:
    dev = device_models.get("pcm", g_max=20.0)
    assert isinstance(dev, PCM) and dev.g_max == 20.0
    with pytest.raises(ValueError, match="PCM.t0"):
        device_models.get("pcm", t0=-1.0)
