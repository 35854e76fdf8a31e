"""The normal samplers of the per-forward noise: statistics, seeding, backend choice.

Each statistical check runs on both backends (torch, and oneMKL when installed) with a tolerance
of ``K`` standard errors of the estimate at the sample size, from the moments of N(0, 1).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from aimc import functional as AF
from aimc import sampling

K = 5.0  # standard errors: a false alarm has probability < 1e-6 per check
N = 1 << 20


def _gens(seed: int = 0, n: int = 4) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 100 + i) for i in range(n)]


@pytest.mark.statistical
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_moments_match_the_normal_law(normal_sampler, dtype):
    sigma = 1.7
    z = sampling.fill_normal_(torch.empty(N, dtype=dtype), _gens(), sigma).double() / sigma
    n = z.numel()
    # sampling s.d. of the mean, E[z^2], E[z^4] of N(0,1): 1, sqrt(2), sqrt(96) over sqrt(n)
    assert abs(float(z.mean())) < K / math.sqrt(n)
    assert abs(float(z.pow(2).mean()) - 1.0) < K * math.sqrt(2 / n)
    assert abs(float(z.pow(4).mean()) - 3.0) < K * math.sqrt(96 / n)
    assert abs(float(z.pow(3).mean())) < K * math.sqrt(15 / n)
    # tails: P(|z| > 3) = 2.6998e-3, binomial standard error
    p = 2 * stats.norm.sf(3.0)
    assert abs(float((z.abs() > 3).double().mean()) - p) < K * math.sqrt(p * (1 - p) / n)


@pytest.mark.statistical
def test_distribution_passes_kolmogorov_smirnov(normal_sampler):
    z = sampling.fill_normal_(torch.empty(200_000), _gens(1)).double().numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-6


@pytest.mark.statistical
def test_chunks_and_neighbours_are_uncorrelated(normal_sampler):
    z = sampling.fill_normal_(torch.empty(N), _gens(2)).double()
    a, b = z.view(4, -1)[0], z.view(4, -1)[1]  # chunks from different generators
    m = a.numel()
    assert abs(float((a * b).mean())) < K / math.sqrt(m)
    assert abs(float((z[1:] * z[:-1]).mean())) < K / math.sqrt(z.numel() - 1)


def test_seeded_and_independent_of_thread_count(normal_sampler):
    a = sampling.fill_normal_(torch.empty(300_000), _gens(3))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        b = sampling.fill_normal_(torch.empty(300_000), _gens(3))
    finally:
        torch.set_num_threads(n)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, sampling.fill_normal_(torch.empty(300_000), _gens(4)))
    # the generators advance: the next draw from the same ones is new
    gens = _gens(3)
    first = sampling.fill_normal_(torch.empty(1000), gens).clone()
    assert not torch.equal(first, sampling.fill_normal_(torch.empty(1000), gens))


def test_sigma_scales_the_same_draws(normal_sampler):
    a = sampling.fill_normal_(torch.empty(10_000, dtype=torch.float64), _gens(5))
    b = sampling.fill_normal_(torch.empty(10_000, dtype=torch.float64), _gens(5), 3.0)
    torch.testing.assert_close(b, 3.0 * a)


def test_other_dtypes_and_devices_use_torch():
    assert sampling.normal_sampler("cpu", torch.float16) == "torch"
    assert sampling.normal_sampler("meta") == "torch"
    z = sampling.fill_normal_(torch.empty(1000, dtype=torch.bfloat16), _gens())
    assert z.dtype == torch.bfloat16 and torch.isfinite(z).all()


def test_randn_chunked_applies_std_and_mean(normal_sampler):
    std = torch.full((50, 40), 2.0, dtype=torch.float64)
    mean = torch.full((50, 40), -1.0, dtype=torch.float64)
    z = AF.randn_chunked((50, 40), _gens(6), dtype=torch.float64)
    y = AF.randn_chunked((50, 40), _gens(6), dtype=torch.float64, std=std, mean=mean)
    torch.testing.assert_close(y, mean + std * z)


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match=r"normal sampler must be one of \('auto'"):
        sampling.set_normal_sampler("numpy")
    with pytest.raises(ValueError, match="contiguous"):
        sampling.fill_normal_(torch.empty(4, 4).t(), _gens())


def test_mkl_requested_but_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(sampling, "_mkl", None)
    monkeypatch.setattr(sampling, "_mkl_tried", False)
    monkeypatch.setattr(sampling, "_mkl_error", None)
    monkeypatch.setenv("AIMC_MKL_RT", "/nonexistent/libmkl_rt.so.2")
    assert not sampling.mkl_available()
    with pytest.raises(RuntimeError, match="fast"):
        sampling.set_normal_sampler("mkl")
    assert sampling.normal_sampler() == "torch"  # "auto" falls back
    z = sampling.fill_normal_(torch.empty(1000), _gens())
    assert torch.isfinite(z).all()


def test_environment_variable_picks_the_backend_at_import():
    import os
    import subprocess
    import sys

    code = "import aimc; print(aimc.sampling.normal_sampler())"
    env = dict(os.environ, AIMC_NORMAL_SAMPLER="torch")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "torch"
    env["AIMC_NORMAL_SAMPLER"] = "fastest"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "AIMC_NORMAL_SAMPLER must be one of" in out.stderr
