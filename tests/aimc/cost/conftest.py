"""Fixtures of the cost-model tests."""

from __future__ import annotations

import pytest

import aimc
import aimc.presets


@pytest.fixture
def isaac_cfg():
    return aimc.presets.isaac()


@pytest.fixture
def small_cfg():
    """A cheap config (8-bit, not bit-serial) for counting tests."""
    return aimc.AnalogConfig(
        tile=aimc.TileConfig(rows=32, cols=32),
        dac=aimc.DACConfig(bits=8, signed=True),
        adc=aimc.ADCConfig(bits=8),
        mapping=aimc.MappingConfig(encoding="differential"),
        drift_compensation=False,
    )
