"""aimc: analog in-memory-computing emulation for PyTorch."""
from __future__ import annotations

from aimc.config import ADCConfig, AnalogConfig, DACConfig, MappingConfig, TileConfig, TrainingConfig

__all__ = ["AnalogConfig", "TileConfig", "MappingConfig", "TrainingConfig", "DACConfig", "ADCConfig"]
