"""device_models: the physical parts an analog tile is built from.

Memory-cell models (conductances in µS, times in seconds after programming) and the DAC/ADC
quantization models. Usable on its own::

    import device_models
    dev = device_models.get("ideal")
    state = dev.program(g_target, generator=gen)
    g_t = dev.conductance(state, t=3600.0)
    g_r = dev.read(state, t=3600.0, generator=gen)
"""

from __future__ import annotations

from device_models.base import DeviceModel
from device_models.converters import ADCConfig, DACConfig, adc_readout, bit_planes, quantize_dac
from device_models.ideal import Ideal
from device_models.pcm import PCM
from device_models.registry import create_device, get, list_devices, names, register_device
from device_models.rram import RRAM
from device_models.sram import SRAM
from device_models.tabulated import Tabulated

__all__ = [
    "DeviceModel",
    "Ideal",
    "PCM",
    "RRAM",
    "SRAM",
    "Tabulated",
    "DACConfig",
    "ADCConfig",
    "quantize_dac",
    "adc_readout",
    "bit_planes",
    "get",
    "names",
    "list_devices",
    "create_device",
    "register_device",
]
