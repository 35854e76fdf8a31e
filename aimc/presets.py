"""Analog configurations of published hardware; each pairs with the technology of the same name.

Each function returns a fresh :class:`~aimc.config.AnalogConfig`; the energy, latency and area
of the same chip come from ``aimc.cost.get_technology(<name>)``::

    cfg = aimc.presets.isaac()
    report = aimc.estimate_cost(aimc.convert_to_analog(model, cfg), x, technology="isaac")
"""

from __future__ import annotations

from typing import Any

import device_models
from aimc.config import ADCConfig, AnalogConfig, DACConfig, MappingConfig, TileConfig
from device_models.registry import Registry

PRESETS: Registry = Registry("preset")
"""The presets by name (each is also a technology name)."""

__all__ = ["isaac", "hermes", "rram22", "sram22", "names", "get", "PRESETS"]


@PRESETS.register("isaac")
def isaac(**overrides: Any) -> AnalogConfig:
    """ISAAC (Shafiee et al., ISCA 2016; technology ``"isaac"``).

    128x128 crossbars of 2-bit memristor cells; a 16-bit weight spread over 8 cells of one row
    (offset encoding: the weight is stored shifted to be non-negative, the offset removed
    digitally); 16-bit unsigned inputs (post-ReLU) streamed one bit per 100 ns cycle through
    1-bit DACs; one 8-bit ADC per crossbar shared by its 128 columns (Table I). The cells are
    ideal (the paper assumes 2-bit cells read exactly) with the default 25 uS range, which the
    technology's read-energy derivation assumes. ``overrides`` replace fields of the config.
    """
    cfg = AnalogConfig(
        device=device_models.Ideal(g_max=25.0),
        tile=TileConfig(rows=128, cols=128),
        dac=DACConfig(bits=16, signed=False, bit_serial=True),
        adc=ADCConfig(bits=8),
        mapping=MappingConfig(encoding="offset", weight_bits=16, slices=8),
        drift_compensation=False,
    )
    return _replace(cfg, overrides)


@PRESETS.register("hermes")
def hermes(**overrides: Any) -> AnalogConfig:
    """IBM HERMES (Le Gallo et al., Nature Electronics 2023; technology ``"hermes"``).

    64 cores of 256x256 unit cells of PCM in 14 nm; a weight is a differential conductance
    pair (the chip uses 2 devices per polarity, modelled here as one device column each, so a
    tile is 256 rows x 512 device columns holding 256 weights); 8-bit signed inputs coded as
    pulse durations (one input cycle, no bit slicing); one 8-bit CCO-based ADC per column pair.
    The device is the registered ``"pcm"`` model (IBM's statistical PCM model) with a 25 uS
    range. Drift compensation on, as on the chip.
    """
    cfg = AnalogConfig(
        device=device_models.get("pcm", g_max=25.0),
        tile=TileConfig(rows=256, cols=512),
        dac=DACConfig(bits=8, signed=True),
        adc=ADCConfig(bits=8),
        mapping=MappingConfig(encoding="differential"),
        drift_compensation=True,
    )
    return _replace(cfg, overrides)


def _neurosim22(device: Any, overrides: dict[str, Any]) -> AnalogConfig:
    """NeuroSim V1.4's 22 nm macro around ``device``: 128x128 arrays with 32 rows read in
    parallel, 8 one-bit cells per 8-bit weight (offset encoding, kernels filling rows densely),
    8-bit unsigned bit-serial inputs, a 5-bit multi-level sense-amp ADC."""
    cfg = AnalogConfig(
        device=device,
        tile=TileConfig(rows=128, cols=128, parallel_rows=32),
        dac=DACConfig(bits=8, signed=False, bit_serial=True),
        adc=ADCConfig(bits=5),
        mapping=MappingConfig(encoding="offset", weight_bits=8, slices=8, conv_alignment="dense"),
        drift_compensation=False,
    )
    return _replace(cfg, overrides)


@PRESETS.register("rram22")
def rram22(**overrides: Any) -> AnalogConfig:
    """DNN+NeuroSim V1.4's 22 nm RRAM configuration (its manual's Table VII RRAM row;
    technology ``"rram22"``).

    NeuroSim's default 1T1R RRAM (``Param.cpp``: Ron = 100 kOhm, so ``g_max`` = 10 µS, on/off
    17) as the registered ``"rram"`` model with that range; 128x128 arrays with 32 rows read
    in parallel; 1 bit per cell, so an 8-bit weight takes 8 columns (offset encoding: stored
    shifted to be non-negative, the offset removed digitally); 8-bit unsigned inputs streamed
    bit-serially; a 5-bit multi-level sense-amp ADC (NeuroSim's shipped ``levelOutput = 32``)
    shared by 8 columns. Kernels fill the array rows densely, as NeuroSim maps them.
    ``overrides`` replace fields, e.g. ``rram22(adc=ADCConfig(bits=4))``.
    """
    g_max = 1e6 / 100e3
    return _neurosim22(device_models.get("rram", g_max=g_max, g_min=g_max / 17), overrides)


@PRESETS.register("sram22")
def sram22(**overrides: Any) -> AnalogConfig:
    """DNN+NeuroSim V1.4's 22 nm SRAM configuration (its manual's Table VII SRAM row;
    technology ``"sram22"``): the binary ``"sram"`` cell (no drift, exact reads), otherwise as
    :func:`rram22`: 128x128 arrays, 32 parallel rows, 8 one-bit cells per 8-bit weight, 8-bit
    bit-serial inputs, a 5-bit multi-level sense-amp ADC shared by 8 columns."""
    return _neurosim22(device_models.get("sram"), overrides)


def names() -> list[str]:
    """Names of the presets (each is also a technology name)."""
    return PRESETS.names()


def get(name: str, **overrides: Any) -> AnalogConfig:
    """The preset ``name`` with field ``overrides``; ``KeyError`` lists the known names."""
    return PRESETS.lookup(name)(**overrides)


def _replace(cfg: AnalogConfig, overrides: dict[str, Any]) -> AnalogConfig:
    if not overrides:
        return cfg
    import dataclasses

    return dataclasses.replace(cfg, **overrides)
