"""device_models.functional: doctests and properties of the pure functions.

Named ``test_device_functional.py`` so it cannot collide with ``tests/aimc/test_functional.py``.
"""

from __future__ import annotations

import doctest
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from device_models import functional as F

PROPS = settings(max_examples=40, deadline=None, derandomize=True)
times = st.floats(min_value=0.0, max_value=1e9, allow_nan=False)


def test_doctests() -> None:
    result = doctest.testmod(F, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0


@PROPS
@given(t1=times, t2=times, nu=st.floats(0.0, 0.5), t0=st.floats(1e-3, 1e3))
def test_drift_is_monotone_and_identity_at_zero(t1: float, t2: float, nu: float, t0: float):
    g = torch.tensor([3.0, 25.0], dtype=torch.float64)
    nu_t = torch.full_like(g, nu)
    lo, hi = sorted((t1, t2))
    assert bool((F.apply_drift(g, nu_t, hi, t0) <= F.apply_drift(g, nu_t, lo, t0)).all())
    assert torch.equal(F.apply_drift(g, nu_t, 0.0, t0), g)


@PROPS
@given(r=st.floats(0.0, 1.0), g_max=st.floats(1.0, 200.0))
def test_pcm_stats_are_clipped_and_scale_free(r: float, g_max: float) -> None:
    g = torch.tensor([r * g_max], dtype=torch.float64)
    mu, sigma = F.pcm_drift_nu_stats(g, g_max)
    assert 0.049 <= float(mu) <= 0.1 and 0.008 <= float(sigma) <= 0.045
    std = F.pcm_prog_noise_std(g, g_max)
    expect = (0.26348 + 1.9650 * r - 1.1731 * r * r) * g_max / 25.0
    assert math.isclose(float(std), expect, rel_tol=1e-9, abs_tol=1e-12)


def test_read_noise_std_guards_r_to_zero() -> None:
    g = torch.tensor([0.0, 1e-12, 25.0])
    std = F.pcm_read_noise_std(g, g, 25.0, t=3600.0)
    assert bool(torch.isfinite(std).all()) and float(std[0]) == 0.0
    term = math.sqrt(math.log((3600.0 + 20.0 + 250e-9) / (2 * 250e-9)))
    assert math.isclose(float(std[1]), 1e-12 * 0.2 * term, rel_tol=1e-5)  # Q_s capped at 0.2


@PROPS
@given(
    g=st.lists(st.floats(-10.0, 60.0), min_size=1, max_size=20),
    levels=st.one_of(st.none(), st.integers(2, 64)),
)
def test_quantize_to_levels_is_bounded_and_idempotent(g: list[float], levels) -> None:
    x = torch.tensor(g, dtype=torch.float64)
    q = F.quantize_to_levels(x, levels, 4.0, 40.0)
    assert bool((q >= 4.0).all()) and bool((q <= 40.0).all())
    torch.testing.assert_close(F.quantize_to_levels(q, levels, 4.0, 40.0), q)
    if levels is not None:
        assert torch.unique(q).numel() <= levels


@PROPS
@given(g=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=30))
def test_nearest_level_is_nearest(g: list[float]) -> None:
    means = torch.tensor([0.5, 4.0, 7.5, 25.0], dtype=torch.float64)
    x = torch.tensor(g, dtype=torch.float64)
    k = F.nearest_level(x, means)
    best = (x[:, None] - means[None, :]).abs().min(dim=1).values
    torch.testing.assert_close((x - means[k]).abs(), best)


def test_stuck_codes_and_application() -> None:
    like = torch.zeros(10_000)
    code = F.draw_stuck(like, 0.25, 0.25, torch.Generator().manual_seed(0))
    assert code.dtype == torch.int8 and set(code.unique().tolist()) == {-1, 0, 1}
    g = F.apply_stuck(torch.full_like(like, 5.0), code, 1.0, 9.0)
    assert bool((g[code == F.STUCK_ON] == 9.0).all())
    assert bool((g[code == F.STUCK_OFF] == 1.0).all())
    assert bool((g[code == F.STUCK_NONE] == 5.0).all())


def test_relaxation_identity_at_zero_and_log_growth() -> None:
    g, z = torch.tensor([10.0, 10.0]), torch.tensor([1.0, -1.0])
    assert torch.equal(F.apply_relaxation(g, z, 0.0, 1.0, 0.5), g)
    torch.testing.assert_close(F.apply_relaxation(g, z, 99.0, 1.0, 0.5), torch.tensor([11.0, 9.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_randomness_follows_input_dtype_and_generator(dtype: torch.dtype) -> None:
    x = torch.zeros(5, dtype=dtype)
    a = F.program_conductance(x + 10, 1.0, torch.Generator().manual_seed(3))
    b = F.program_conductance(x + 10, 1.0, torch.Generator().manual_seed(3))
    assert a.dtype == dtype and torch.equal(a, b)
    assert F.read_noise(x, None) is x
