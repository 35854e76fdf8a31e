"""Configuration dataclasses of the analog simulation (they double as Hydra structured configs).

Every config validates itself in ``__post_init__`` so that a bad YAML value fails exactly as a bad
Python argument does, with a message naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import device_models
from device_models import ADCConfig, DACConfig, DeviceModel

__all__ = [
    "TileConfig",
    "MappingConfig",
    "TrainingConfig",
    "AnalogConfig",
    "DACConfig",
    "ADCConfig",
]

_SCALINGS = ("layer", "tile", "column")
_ENCODINGS = ("differential", "offset")
_COMPENSATIONS = ("global", "column")


def _check_int(owner: str, name: str, value: Any, lo: int, hi: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{name} must be an int in {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{owner}.{name} must be an int in {lo}..{hi}, got {value}{hint}")


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{owner}.{name} must be one of {choices}, got {value!r}")


@dataclass
class TileConfig:
    """One physical crossbar (tile) of ``rows`` word lines × ``cols`` bit lines.

    Attributes:
        rows: word lines (inputs) per tile, 1..65536. Row-tile partial sums are digitized by
            the ADC separately, then added digitally.
        cols: bit lines (device columns) per tile, 1..65536. A weight column takes
            ``MappingConfig.cols_per_weight`` device columns.
    """

    rows: int = 256
    cols: int = 256

    def __post_init__(self) -> None:
        _check_int("TileConfig", "rows", self.rows, 1, 65536, "; try rows=128 or rows=256")
        _check_int("TileConfig", "cols", self.cols, 1, 65536, "; try cols=128 or cols=256")


@dataclass
class MappingConfig:
    """How weights become conductances.

    Attributes:
        weight_scaling: the group whose max ``|w|`` maps to ``g_max``: ``"layer"``, ``"tile"``
            (each tile's block of weights) or ``"column"`` (each weight column of each row tile;
            the digital periphery rescales per column after the ADC).
        encoding: ``"differential"``: ``w > 0`` on G+ and ``w < 0`` on G- of a column pair,
            read as ``I+ - I-`` by one ADC; ``"offset"``: one column holding ``w`` shifted to
            be non-negative, the offset's share ``g_ref * sum(x)`` subtracted digitally (ISAAC).
        weight_bits: signed weight resolution before programming (write-verify targets), 2..32,
            or ``None`` for continuous targets. Required when ``slices > 1``.
        slices: devices (columns) a weight is bit-sliced over, 1..32; slice ``s`` holds bits
            ``[s*b, (s+1)*b)`` of the weight magnitude, each read by the ADC and shift-added.
    """

    weight_scaling: str = "column"
    encoding: str = "differential"
    weight_bits: Optional[int] = None
    slices: int = 1

    def __post_init__(self) -> None:
        _check_choice("MappingConfig", "weight_scaling", self.weight_scaling, _SCALINGS)
        _check_choice("MappingConfig", "encoding", self.encoding, _ENCODINGS)
        if self.weight_bits is not None:
            _check_int("MappingConfig", "weight_bits", self.weight_bits, 2, 32)
        _check_int("MappingConfig", "slices", self.slices, 1, 32)
        if self.slices > 1:
            if self.weight_bits is None:
                raise ValueError("MappingConfig.slices > 1 needs MappingConfig.weight_bits")
            if self.slices > self.magnitude_bits:
                raise ValueError(
                    f"MappingConfig.slices={self.slices} exceeds the {self.magnitude_bits} "
                    f"magnitude bits of weight_bits={self.weight_bits}"
                )

    @property
    def magnitude_bits(self) -> Optional[int]:
        """Bits of the value stored on devices: ``weight_bits - 1`` differential (the sign picks
        the column), ``weight_bits`` offset-encoded."""
        if self.weight_bits is None:
            return None
        return self.weight_bits - 1 if self.encoding == "differential" else self.weight_bits

    @property
    def bits_per_slice(self) -> Optional[int]:
        """Bits each slice device holds (``ceil(magnitude_bits / slices)``)."""
        if self.weight_bits is None:
            return None
        return math.ceil(self.magnitude_bits / self.slices)

    @property
    def cols_per_weight(self) -> int:
        """Device columns per weight column: 2 per slice differential, 1 per slice offset."""
        return self.slices * (2 if self.encoding == "differential" else 1)


@dataclass
class TrainingConfig:
    """What the train-mode forward injects (hardware-aware training).

    Attributes:
        hardware_aware: ``False``: training forwards are the plain digital op (exactly torch);
            ``True``: they run the tiled analog path (DAC/ADC quantization and clipping with
            straight-through gradients) on the current weights.
    """

    hardware_aware: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.hardware_aware, bool):
            raise TypeError(
                f"TrainingConfig.hardware_aware must be a bool, got {self.hardware_aware!r}"
            )


@dataclass
class AnalogConfig:
    """The one description of the analog hardware that drives accuracy and cost.

    Attributes:
        device: a ``device_models.DeviceModel`` or a registered name (``device_models.names()``).
        tile: crossbar geometry.
        dac: input converters.
        adc: output converters.
        mapping: weight-to-conductance mapping.
        drift_compensation: rescale outputs by a factor measured with a reference input read at
            programming and at read time, through the same noisy path (as chips do).
        drift_compensation_mode: ``"global"`` (one factor per layer) or ``"column"``.
        training: what train-mode forwards inject.
        seed: seed of every random draw (programming, read and output noise) of the layers.
    """

    device: Any = "ideal"
    tile: TileConfig = field(default_factory=TileConfig)
    dac: DACConfig = field(default_factory=DACConfig)
    adc: ADCConfig = field(default_factory=ADCConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    drift_compensation: bool = True
    drift_compensation_mode: str = "global"
    training: TrainingConfig = field(default_factory=TrainingConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.device, str):
            self.device = device_models.get(self.device)
        if not isinstance(self.device, DeviceModel):
            raise TypeError(
                "AnalogConfig.device must be a device_models.DeviceModel or one of "
                f"{device_models.names()}, got {type(self.device).__name__}"
            )
        for name, cls in (
            ("tile", TileConfig),
            ("dac", DACConfig),
            ("adc", ADCConfig),
            ("mapping", MappingConfig),
            ("training", TrainingConfig),
        ):
            value = getattr(self, name)
            if isinstance(value, dict):
                value = cls(**value)
                setattr(self, name, value)
            if not isinstance(value, cls):
                raise TypeError(f"AnalogConfig.{name} must be a {cls.__name__}, got {value!r}")
        if not isinstance(self.drift_compensation, bool):
            raise TypeError(
                f"AnalogConfig.drift_compensation must be a bool, got {self.drift_compensation!r}"
            )
        _check_choice(
            "AnalogConfig", "drift_compensation_mode", self.drift_compensation_mode, _COMPENSATIONS
        )
        _check_int("AnalogConfig", "seed", self.seed, 0, 2**63 - 1)
        cols_per_weight = self.mapping.cols_per_weight
        if cols_per_weight > self.tile.cols:
            raise ValueError(
                f"TileConfig.cols={self.tile.cols} cannot hold one weight, which takes "
                f"{cols_per_weight} columns with MappingConfig(encoding={self.mapping.encoding!r}, "
                f"slices={self.mapping.slices})"
            )

    @classmethod
    def ideal(cls, **overrides: Any) -> AnalogConfig:
        """An ideal device with no quantization and no noise: equals the digital layer."""
        base = cls(
            device=device_models.Ideal(),
            dac=DACConfig(bits=None),
            adc=ADCConfig(bits=None),
            drift_compensation=False,
        )
        return dataclasses.replace(base, **overrides) if overrides else base

    @property
    def weights_per_tile_col(self) -> int:
        """Weight columns one tile holds (``tile.cols // mapping.cols_per_weight``)."""
        return self.tile.cols // self.mapping.cols_per_weight
