"""Shared test setup: a deterministic hypothesis profile (fixed seed, no deadline)."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from aimc import sampling

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(
    params=[
        "torch",
        pytest.param(
            "mkl",
            marks=pytest.mark.skipif(not sampling.mkl_available(), reason="oneMKL not installed"),
        ),
    ]
)
def normal_sampler(request):
    """Run the test once per backend of :mod:`aimc.sampling` (oneMKL when installed)."""
    previous = sampling.set_normal_sampler(request.param)
    yield request.param
    sampling.set_normal_sampler(previous)
