"""The analog pipeline of a layer, one stage per module, in data-flow order.

``x → DAC → Crossbar → ADC → Accumulate → y``: :mod:`~aimc.tile.dac` (input range, quantization,
bit planes), :mod:`~aimc.tile.crossbar` (programmed devices, reads at time t),
:mod:`~aimc.tile.adc` (full scale, output noise, quantization, the fused noisy read),
:mod:`~aimc.tile.accumulate` (shift-add, row-tile sums, rescale). Beside them:
:mod:`~aimc.tile.train_noise` (the crossbar's hardware-aware training weights),
:mod:`~aimc.tile.seeds` (the seeded random streams), :mod:`~aimc.tile.fingerprint` (whether the
tiles still hold the layer's weights), :mod:`~aimc.tile.checkpoint` (what a state_dict must
match to load), :mod:`~aimc.tile.compensation` (the drift-compensation rule) and
:mod:`~aimc.tile.geometry` (the tile grid); :mod:`~aimc.tile.readout` runs tiles, ADC and
accumulation of an inference forward as a few large batched operations (bit planes, slices and
row tiles as batch dimensions). ``IdentityDAC``/``IdentityADC`` stand in for converters that
are off.
"""

from __future__ import annotations

from aimc.tile.accumulate import Accumulate
from aimc.tile.adc import ADC, IdentityADC, adc_digitize
from aimc.tile.compensation import drift_gain
from aimc.tile.crossbar import Crossbar, conductance_targets
from aimc.tile.dac import DAC, Drive, IdentityDAC, dac_drive
from aimc.tile.geometry import TileGeometry
from aimc.tile.stage import Stage

__all__ = [
    "TileGeometry",
    "Stage",
    "DAC",
    "IdentityDAC",
    "Drive",
    "dac_drive",
    "Crossbar",
    "conductance_targets",
    "ADC",
    "IdentityADC",
    "adc_digitize",
    "Accumulate",
    "drift_gain",
]
