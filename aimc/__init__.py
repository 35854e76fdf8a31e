"""aimc: analog in-memory-computing emulation for PyTorch.

One description of the hardware (:class:`AnalogConfig`) drives the accuracy simulation (drop-in
analog layers on tiled crossbars) and the cost estimate.
"""

from __future__ import annotations

from aimc import cost, functional, presets, sampling, training
from aimc.config import (
    ADCConfig,
    AnalogConfig,
    DACConfig,
    MappingConfig,
    TileConfig,
    TrainingConfig,
)
from aimc.convert import (
    analog_layers,
    calibrate,
    conversion_report,
    convert_to_analog,
    drift,
    program,
    track_adc_saturation,
)
from aimc.cost import (
    CostReport,
    MappingReport,
    PeakReport,
    Technology,
    estimate_cost,
    get_technology,
    list_technologies,
    load_technology,
    map_model,
    peak_performance,
    technology_names,
)
from aimc.mappings import DEFAULT_ANALOG_MODULE_MAPPING, get_default_analog_module_mapping
from aimc.nn import (
    AnalogConv1d,
    AnalogConv2d,
    AnalogConv3d,
    AnalogConvTranspose1d,
    AnalogConvTranspose2d,
    AnalogConvTranspose3d,
    AnalogGRU,
    AnalogGRUCell,
    AnalogLinear,
    AnalogLSTM,
    AnalogLSTMCell,
    AnalogMultiheadAttention,
    AnalogRNN,
    AnalogRNNCell,
)
from aimc.sensitivity import LayerSensitivity, SensitivityReport, sensitivity
from aimc.tile import TileGeometry
from aimc.training import clip_weights, fine_tune, hold_noise, hold_noise_per_forward

__all__ = [
    "AnalogConfig",
    "TileConfig",
    "MappingConfig",
    "TrainingConfig",
    "DACConfig",
    "ADCConfig",
    "AnalogLinear",
    "AnalogConv1d",
    "AnalogConv2d",
    "AnalogConv3d",
    "AnalogConvTranspose1d",
    "AnalogConvTranspose2d",
    "AnalogConvTranspose3d",
    "AnalogMultiheadAttention",
    "AnalogLSTM",
    "AnalogGRU",
    "AnalogRNN",
    "AnalogLSTMCell",
    "AnalogGRUCell",
    "AnalogRNNCell",
    "TileGeometry",
    "convert_to_analog",
    "analog_layers",
    "program",
    "drift",
    "calibrate",
    "conversion_report",
    "track_adc_saturation",
    "DEFAULT_ANALOG_MODULE_MAPPING",
    "get_default_analog_module_mapping",
    "functional",
    "cost",
    "presets",
    "sampling",
    "training",
    "clip_weights",
    "fine_tune",
    "hold_noise",
    "hold_noise_per_forward",
    "estimate_cost",
    "map_model",
    "peak_performance",
    "Technology",
    "get_technology",
    "technology_names",
    "list_technologies",
    "load_technology",
    "sensitivity",
    "SensitivityReport",
    "LayerSensitivity",
    "CostReport",
    "MappingReport",
    "PeakReport",
]
