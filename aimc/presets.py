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

__all__ = ["isaac", "hermes", "rram22", "names"]


def _device(name: str, **params: Any) -> Any:
    """The registered device ``name`` with ``params``, or an ideal device with its range."""
    try:
        return device_models.get(name, **params)
    except (KeyError, TypeError, ValueError):
        keep = {k: v for k, v in params.items() if k in ("g_max", "g_min")}
        return device_models.Ideal(**keep)


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


def hermes(**overrides: Any) -> AnalogConfig:
    """IBM HERMES (Le Gallo et al., Nature Electronics 2023; technology ``"hermes"``).

    64 cores of 256x256 unit cells of PCM in 14 nm; a weight is a differential conductance
    pair (the chip uses 2 devices per polarity, modelled here as one device column each, so a
    tile is 256 rows x 512 device columns holding 256 weights); 8-bit signed inputs coded as
    pulse durations (one input cycle, no bit slicing); one 8-bit CCO-based ADC per column pair.
    The device is the registered ``"pcm"`` model (IBM's statistical PCM model) when available,
    otherwise an ideal cell with the same 25 uS range. Drift compensation on, as on the chip.
    """
    cfg = AnalogConfig(
        device=_device("pcm", g_max=25.0),
        tile=TileConfig(rows=256, cols=512),
        dac=DACConfig(bits=8, signed=True),
        adc=ADCConfig(bits=8),
        mapping=MappingConfig(encoding="differential"),
        drift_compensation=True,
    )
    return _replace(cfg, overrides)


def rram22(**overrides: Any) -> AnalogConfig:
    """A generic 22 nm 1T1R RRAM macro for sweeps (technology ``"rram22"``).

    Device after NeuroSim's device table (DNN+NeuroSim V1.4 manual, Table VI): 22 nm Intel
    RRAM, Ron = 6 kOhm (g_max = 166.7 uS), on/off = 17 (g_min = 9.8 uS); the registered
    ``"rram"`` model with that range when available, otherwise an ideal cell. NeuroSim-like
    macro: 128x128 arrays, 8-bit weights on 4 differential slices of 2-bit cells (16 weights per
    tile), 8-bit unsigned inputs streamed bit-serially, 6-bit ADCs shared by 8 columns.
    """
    g_max = 1e6 / 6e3
    cfg = AnalogConfig(
        device=_device("rram", g_max=g_max, g_min=g_max / 17),
        tile=TileConfig(rows=128, cols=128),
        dac=DACConfig(bits=8, signed=False, bit_serial=True),
        adc=ADCConfig(bits=6),
        mapping=MappingConfig(encoding="differential", weight_bits=8, slices=4),
        drift_compensation=False,
    )
    return _replace(cfg, overrides)


def names() -> list[str]:
    """Names of the presets (each is also a technology name)."""
    return ["hermes", "isaac", "rram22"]


def _replace(cfg: AnalogConfig, overrides: dict[str, Any]) -> AnalogConfig:
    if not overrides:
        return cfg
    import dataclasses

    return dataclasses.replace(cfg, **overrides)
