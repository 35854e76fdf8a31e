"""Cost model: tile mapping, and energy, latency and area of analog networks and chips.

The architecture comes from the :class:`~aimc.config.AnalogConfig` that the accuracy simulation
uses; a :class:`Technology` says what each component costs. Entry points:

* :func:`map_model`: tiles per layer, utilization, placement on cores and chips;
* :func:`estimate_cost`: a network's energy, latency and area from one forward of an example
  input with activity counters on, plus a digital INT8 baseline;
* :func:`peak_performance`: a chip's power, area and throughput at full activity;
* :func:`get_technology` / :func:`technology_names`: the presets (``isaac``, ``hermes``,
  ``rram22``) by name.
"""

from __future__ import annotations

from aimc.cost import technologies  # noqa: F401  (registers the technology presets on import)
from aimc.cost.adc import adc_area_um2, adc_energy_pj
from aimc.cost.counts import COMPONENTS, Counts
from aimc.cost.estimate import CostReport, CostTotal, DigitalBaseline, LayerCost, estimate_cost
from aimc.cost.mapper import LayerMapping, MappingReport, map_model
from aimc.cost.peak import PeakReport, peak_performance
from aimc.cost.technology import (
    Technology,
    get_technology,
    list_technologies,
    load_technology,
    register_technology,
    technology_names,
)

__all__ = [
    "Technology",
    "get_technology",
    "technology_names",
    "list_technologies",
    "load_technology",
    "register_technology",
    "map_model",
    "MappingReport",
    "LayerMapping",
    "estimate_cost",
    "CostReport",
    "CostTotal",
    "LayerCost",
    "DigitalBaseline",
    "peak_performance",
    "PeakReport",
    "Counts",
    "COMPONENTS",
    "adc_energy_pj",
    "adc_area_um2",
]
