"""Shared test setup: a deterministic hypothesis profile (fixed seed, no deadline)."""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings

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
    import pytest

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _sampler_params():
    import pytest

    from aimc import sampling

    mkl = pytest.param(
        "mkl",
        marks=pytest.mark.skipif(not sampling.mkl_available(), reason="oneMKL not installed"),
    )
    return ["torch", mkl]


def pytest_generate_tests(metafunc):
    # ``normal_sampler``: run the test once per backend of aimc.sampling (oneMKL when installed)
    if "normal_sampler" in metafunc.fixturenames:
        metafunc.parametrize("normal_sampler", _sampler_params(), indirect=True)


def _fixture():
    import pytest

    @pytest.fixture
    def normal_sampler(request):
        from aimc import sampling

        sampling.set_normal_sampler(request.param)
        yield request.param
        sampling.set_normal_sampler("auto")

    return normal_sampler


normal_sampler = _fixture()
