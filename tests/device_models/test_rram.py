"""RRAM: levels, programming spread, log-time relaxation, read noise and stuck cells.

Bounds: a sample mean has standard error σ/√N, a Gaussian sample std ≈ σ/√(2N), and a count of
N Bernoulli(p) cells has std √(N p (1 - p)); every check allows k = 5 standard errors (a correct
model fails one with probability < 6e-7; the generators are fixed, so the outcome is fixed).
"""

from __future__ import annotations

import math

import pytest
import torch

from device_models import RRAM
from device_models.functional import STUCK_NONE, STUCK_OFF, STUCK_ON

K = 5.0
N = 100_000
HOUR, DAY, YEAR = 3600.0, 86400.0, 365.25 * 86400.0
WAN_COEFFS = [0.348, 16.030, -43.853, 45.393, -16.815]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sigma_prog(r: float, g_max: float = 40.0) -> float:
    return max(sum(c * r**i for i, c in enumerate(WAN_COEFFS)), 0.0) * g_max / 40.0


def assert_mean_close(sample: torch.Tensor, mu: float, sigma: float) -> None:
    err = abs(float(sample.double().mean()) - mu)
    assert err <= K * sigma / math.sqrt(sample.numel()), (float(sample.mean()), mu)


def assert_std_close(sample: torch.Tensor, sigma: float) -> None:
    err = abs(float(sample.double().std()) - sigma)
    assert err <= K * sigma / math.sqrt(2 * sample.numel()), (float(sample.std()), sigma)


def assert_count_close(count: int, n: int, p: float) -> None:
    assert abs(count - n * p) <= K * math.sqrt(n * p * (1 - p)) + 1e-9, (count, n * p)


def test_defaults() -> None:
    dev = RRAM()
    assert (dev.g_min, dev.g_max) == (4.0, 40.0)
    assert dev.levels is None and dev.prog_coeffs == WAN_COEFFS
    assert dev.drifts and not dev.is_ideal
    assert dev.state_keys() == ("g", "relax", "stuck")


# --- levels --------------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [2, 5, 16])
def test_level_count_and_values(levels: int) -> None:
    dev = RRAM(levels=levels, prog_noise_scale=0.0)
    target = torch.linspace(0.0, 50.0, 20_001, dtype=torch.float64)  # also beyond the range
    g = dev.program(target, generator=gen())["g"]
    values = torch.unique(g)
    assert values.numel() == levels
    torch.testing.assert_close(values, torch.tensor(dev.level_values(), dtype=torch.float64))
    assert float(g.min()) == dev.g_min and float(g.max()) == dev.g_max
    # nearest level: no target is more than half a step from its level (inside the range)
    inside = (target >= dev.g_min) & (target <= dev.g_max)
    step = (dev.g_max - dev.g_min) / (levels - 1)
    assert float((g[inside] - target[inside]).abs().max()) <= step / 2 + 1e-9


@pytest.mark.statistical
def test_level_occupancy_of_uniform_targets() -> None:
    """Uniform targets on [g_min, g_max]: inner levels get 1/(L-1) of them, the ends half that."""
    levels = 8
    dev = RRAM(levels=levels, prog_noise_scale=0.0)
    u = torch.rand(N, generator=gen(1), dtype=torch.float64)
    g = dev.program(dev.g_min + u * (dev.g_max - dev.g_min), generator=gen(2))["g"]
    for i, v in enumerate(dev.level_values()):
        p = (0.5 if i in (0, levels - 1) else 1.0) / (levels - 1)
        assert_count_close(int((g == v).sum()), N, p)


def test_continuous_clips_to_range() -> None:
    dev = RRAM(prog_noise_scale=0.0, relax_std=0.0)
    g = dev.program(torch.tensor([0.0, 10.0, 100.0]), generator=gen())["g"]
    torch.testing.assert_close(g, torch.tensor([4.0, 10.0, 40.0]))


# --- programming spread and relaxation -----------------------------------------------------------
@pytest.mark.statistical
@pytest.mark.parametrize("r", [0.1, 0.5, 1.0])
def test_programming_spread(r: float) -> None:
    dev = RRAM()
    target = torch.full((N,), r * 40.0, dtype=torch.float64)
    g = dev.program(target, generator=gen(3))["g"]
    sigma = sigma_prog(r)  # 1.56, 2.02, 1.10 µS
    # The clip at 0: for X ~ N(μ, σ) and a = μ/σ, E[max(X, 0)] = μ + σ φ(a) - σ a Φ(-a). At
    # r = 0.1 (a = 2.6) that is +0.0017σ, below the bound but added exactly anyway; the std is
    # checked only far from the clip.
    a = r * 40.0 / sigma
    pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    clip_shift = sigma * (pdf - a * 0.5 * math.erfc(a / math.sqrt(2)))
    assert_mean_close(g, r * 40.0 + clip_shift, sigma)
    if r >= 0.5:  # far from the clip: the spread is the polynomial itself
        assert_std_close(g, sigma)


@pytest.mark.statistical
@pytest.mark.parametrize("t", [HOUR, DAY, YEAR])
def test_relaxation_spread_grows_with_log_time(t: float) -> None:
    """G(t) = G_prog + σ_rel log10(1 + t/t0) z: variance σ_prog² + (σ_rel log10(1 + t/t0))²."""
    dev = RRAM(relax_mean=-0.1)
    g0 = 20.0
    state = dev.program(torch.full((N,), g0, dtype=torch.float64), generator=gen(4))
    s = math.log10(1 + t / dev.t0)
    g_t = dev.conductance(state, t)
    sigma = math.sqrt(sigma_prog(0.5) ** 2 + (0.58 * s) ** 2)
    # G(t) stays > 4σ above the clip at 0 (1 year: 20 µS vs σ = 4.8 µS; shift < 1e-5 σ)
    assert_mean_close(g_t, g0 - 0.1 * s, sigma)
    assert_std_close(g_t, sigma)


def test_relaxation_identity_at_zero_and_fixed_draw() -> None:
    dev = RRAM(stuck_on_rate=0.1, stuck_off_rate=0.1)
    state = dev.program(torch.rand(5000, generator=gen(5)) * 40.0, generator=gen(6))
    torch.testing.assert_close(dev.conductance(state, 0.0), state["g"], rtol=0, atol=0)
    before = {k: v.clone() for k, v in state.items()}
    a = dev.conductance(state, DAY)
    dev.read(state, DAY, generator=gen(7))
    torch.testing.assert_close(dev.conductance(state, DAY), a, rtol=0, atol=0)
    for k, v in state.items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    # the per-device spread grows monotonically in log time: |G(t) - G_prog| is non-decreasing
    # for healthy devices (no clipping at 0 this far above it)
    healthy = state["stuck"] == STUCK_NONE
    dev_t = [(dev.conductance(state, t) - state["g"])[healthy].abs() for t in (1.0, HOUR, YEAR)]
    assert bool((dev_t[1] >= dev_t[0]).all()) and bool((dev_t[2] >= dev_t[1]).all())


def test_scaled_with_g_max() -> None:
    """Coefficients are fitted at 40 µS; at g_max = 20 µS every spread halves."""
    dev = RRAM(g_max=20.0, g_min=2.0)
    g = dev.program(torch.full((N,), 10.0, dtype=torch.float64), generator=gen(8))["g"]
    assert_std_close(g, sigma_prog(0.5, g_max=20.0))


# --- read noise ----------------------------------------------------------------------------------
@pytest.mark.statistical
@pytest.mark.parametrize("t", [0.0, DAY])
def test_read_noise_spread(t: float) -> None:
    dev = RRAM()
    state = dev.program(torch.full((N,), 20.0, dtype=torch.float64), generator=gen(9))
    noise = dev.read(state, t, generator=gen(10)) - dev.conductance(state, t)
    sigma = 0.01 * 40.0
    assert_mean_close(noise, 0.0, sigma)
    assert_std_close(noise, sigma)
    assert RRAM(read_noise=0.0).read_noise_std(state, t) is None


# --- stuck cells ---------------------------------------------------------------------------------
@pytest.mark.statistical
@pytest.mark.parametrize(("p_on", "p_off"), [(0.02, 0.05), (0.0, 0.01), (0.3, 0.0)])
def test_stuck_rates_and_they_stay_stuck(p_on: float, p_off: float) -> None:
    dev = RRAM(stuck_on_rate=p_on, stuck_off_rate=p_off, levels=16)
    target = torch.rand(N, generator=gen(11), dtype=torch.float64) * 40.0
    state = dev.program(target, generator=gen(12))
    stuck = state["stuck"]
    assert stuck.dtype == torch.int8
    assert set(torch.unique(stuck).tolist()) <= {STUCK_NONE, STUCK_ON, STUCK_OFF}
    assert_count_close(int((stuck == STUCK_ON).sum()), N, p_on)
    assert_count_close(int((stuck == STUCK_OFF).sum()), N, p_off)
    for t in (0.0, 1.0, DAY, 10 * YEAR):
        g = dev.conductance(state, t)
        assert bool((g[stuck == STUCK_ON] == dev.g_max).all())
        assert bool((g[stuck == STUCK_OFF] == dev.g_min).all())


def test_stuck_cells_ignore_their_target() -> None:
    dev = RRAM(stuck_on_rate=1.0)
    state = dev.program(torch.zeros(100), generator=gen())
    assert bool((state["g"] == 40.0).all())


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"g_min": 40.0}, "RRAM.g_min must be < RRAM.g_max"),
        ({"g_min": -1.0}, "RRAM.g_min"),
        ({"g_max": 0.0}, "RRAM.g_max"),
        ({"levels": 1}, "RRAM.levels"),
        ({"levels": 0}, "RRAM.levels"),
        ({"prog_noise_scale": -1.0}, "RRAM.prog_noise_scale"),
        ({"relax_std": -0.1}, "RRAM.relax_std"),
        ({"relax_mean": float("nan")}, "RRAM.relax_mean"),
        ({"read_noise": -0.01}, "RRAM.read_noise"),
        ({"t0": 0.0}, "RRAM.t0"),
        ({"g_ref": -40.0}, "RRAM.g_ref"),
        ({"stuck_on_rate": -0.1}, "RRAM.stuck_on_rate"),
        ({"stuck_off_rate": 1.5}, "RRAM.stuck_off_rate"),
        ({"stuck_on_rate": 0.6, "stuck_off_rate": 0.6}, r"stuck_on_rate \+ RRAM.stuck_off_rate"),
        ({"prog_coeffs": []}, "RRAM.prog_coeffs"),
    ],
)
def test_bad_fields(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RRAM(**kwargs)


def test_bad_levels_type() -> None:
    with pytest.raises(TypeError, match="RRAM.levels"):
        RRAM(levels=2.5)
