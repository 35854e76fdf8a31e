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
from device_models.base import check_bool

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
_ALIGNMENTS = ("channel", "dense")
_READ_NOISE = ("forward", "drift")


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
        parallel_rows: word lines driven at once (NeuroSim's "parallel read"), 1..rows, or
            ``None`` for all rows. An MVM then takes ``ceil(rows / parallel_rows)`` reads per
            column, each digitized by the ADC; the cost model counts those reads.
    """

    rows: int = 256
    cols: int = 256
    parallel_rows: Optional[int] = None

    def __post_init__(self) -> None:
        _check_int("TileConfig", "rows", self.rows, 1, 65536, "; try rows=128 or rows=256")
        _check_int("TileConfig", "cols", self.cols, 1, 65536, "; try cols=128 or cols=256")
        if self.parallel_rows is not None:
            _check_int(
                "TileConfig",
                "parallel_rows",
                self.parallel_rows,
                1,
                self.rows,
                f" (at most rows={self.rows}); or None to drive all rows at once",
            )

    def reads(self, rows_used: Optional[int] = None) -> int:
        """Reads per column to sum ``rows_used`` rows (default: all ``rows``) of one tile."""
        n = self.rows if rows_used is None else int(rows_used)
        return 1 if self.parallel_rows is None else max(1, math.ceil(n / self.parallel_rows))


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
        conv_alignment: how a conv's unrolled kernel rows fill a tile: ``"channel"`` keeps
            whole input channels (``kh*kw`` rows each) in a tile, leaving ``rows mod kh*kw``
            rows empty, so each row tile runs as a conv without unfolding the input;
            ``"dense"`` fills every row (a channel may straddle two tiles).
    """

    weight_scaling: str = "column"
    encoding: str = "differential"
    weight_bits: Optional[int] = None
    slices: int = 1
    conv_alignment: str = "channel"

    def __post_init__(self) -> None:
        _check_choice("MappingConfig", "weight_scaling", self.weight_scaling, _SCALINGS)
        _check_choice("MappingConfig", "conv_alignment", self.conv_alignment, _ALIGNMENTS)
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
    """What the train-mode forward injects (hardware-aware training), and post-step clipping.

    All defaults off: training is exactly plain torch training. With ``hardware_aware`` the
    train forward runs the tiled analog path on the current weights (DAC/ADC quantization and
    clipping with straight-through gradients, ADC output noise) and adds ``weight_noise`` to the
    normalized tile weights as a perturbation that the gradient passes through unchanged.

    Attributes:
        hardware_aware: ``False``: training forwards are the plain digital op (exactly torch);
            ``True``: they run the tiled analog path (DAC/ADC quantization and clipping with
            straight-through gradients) on the current weights.
        weight_noise: noise added to the weights in each train forward, fresh each batch (needs
            ``hardware_aware``): ``"none"``; ``"gaussian"``, additive ``N(0, weight_noise_std²)``
            on the normalized weights (units of the mapping group's max ``|w|``: the per-column
            max under ``MappingConfig.weight_scaling="column"``); ``"device"``, the weights are
            mapped to conductance targets as ``program`` maps them, programmed with the layer's
            device model (programming noise), read at ``noise_t_s`` (drift, then read noise)
            and drift-compensated as the eval forward is; the difference to the ideal weights,
            times ``device_noise_scale``, is the perturbation.
        weight_noise_std: std of ``"gaussian"`` weight noise in normalized weight units
            (dimensionless, a fraction of the group's max ``|w|``), in [0, 10]; ignored by the
            other kinds.
        device_noise_scale: multiplier of the ``"device"`` perturbation (dimensionless, in
            [0, 100]); > 1 trains for a margin over the device's own noise.
        noise_t_s: read time in seconds after programming at which ``"device"`` noise is drawn
            (drift and read noise at that age), in [0, 1e10].
        clip_sigma: after each optimizer step, :func:`aimc.training.clip_weights` clamps every
            analog layer's weights to ``±clip_sigma`` times their standard deviation (per
            layer, dimensionless, > 0); ``None`` turns clipping off.
        learn_input_range: give each analog layer a learned DAC range, the parameter
            ``dac_range_gain`` (dimensionless, starts at 1): the input full scale becomes
            ``dac_range * dac_range_gain``, in train and eval forwards alike. Its gradient
            comes through the straight-through DAC (LSQ/PACT style: saturated inputs pull the
            range up, the rounding error inside it pulls it down). Needs ``hardware_aware``;
            applies to ``DACConfig.range_mode="calibrated"`` layers with a DAC range.
    """

    hardware_aware: bool = False
    weight_noise: str = "none"
    weight_noise_std: float = 0.0
    device_noise_scale: float = 1.0
    noise_t_s: float = 3600.0
    clip_sigma: Optional[float] = None
    learn_input_range: bool = False

    _WEIGHT_NOISES = ("none", "gaussian", "device")  # not a field: no annotation

    def __post_init__(self) -> None:
        for name in ("hardware_aware", "learn_input_range"):
            check_bool("TrainingConfig", name, getattr(self, name))
        _check_choice("TrainingConfig", "weight_noise", self.weight_noise, self._WEIGHT_NOISES)
        self._check_number("weight_noise_std", 0.0, 10.0)
        self._check_number("device_noise_scale", 0.0, 100.0)
        self._check_number("noise_t_s", 0.0, 1e10)
        if self.clip_sigma is not None:
            self._check_number("clip_sigma", 0.0, 1e6)
            if self.clip_sigma == 0:
                raise ValueError(
                    "TrainingConfig.clip_sigma must be > 0 (a multiple of the weights' std) or "
                    "None (no clipping), got 0; try clip_sigma=2.5"
                )
        if self.weight_noise == "gaussian" and self.weight_noise_std == 0:
            raise ValueError(
                "TrainingConfig.weight_noise_std must be > 0 with weight_noise='gaussian', got 0; "
                "try weight_noise_std=0.02, or weight_noise='none'"
            )
        if not self.hardware_aware:
            for name, off in (("weight_noise", "none"), ("learn_input_range", False)):
                if getattr(self, name) != off:
                    raise ValueError(
                        f"TrainingConfig.{name}={getattr(self, name)!r} needs "
                        "hardware_aware=True (it acts in the tiled train forward); set "
                        f"hardware_aware=True or {name}={off!r}"
                    )

    def _check_number(self, name: str, lo: float, hi: float) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(
                f"TrainingConfig.{name} must be a number in [{lo:g}, {hi:g}], got {value!r}"
            )
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(
                f"TrainingConfig.{name} must be a number in [{lo:g}, {hi:g}], got {value!r}"
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
        read_noise: when device read noise is drawn: ``"drift"`` (default), once per
            programming and drift time, then reused by every forward at that time. PCM's read
            noise is 1/f noise: its variance (Joshi et al. 2020) is what accumulates from the
            frequencies 1/t down to 1/(2 t_read), dominated by the slow ones, so reads moments
            apart are almost the same; one draw per drift time is also aihwkit's convention
            (``drift_analog_weights``) and costs nothing per forward. ``"forward"``: a fresh,
            independent read in every eval forward (white read noise; one normal draw per
            device and forward, about 1.5x the matmul time on 2 CPU cores).
        seed: seed of every random draw (programming, read and output noise) of the layers.
    """

    device: Any = "pcm"
    tile: TileConfig = field(default_factory=TileConfig)
    dac: DACConfig = field(default_factory=DACConfig)
    adc: ADCConfig = field(default_factory=ADCConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    drift_compensation: bool = True
    drift_compensation_mode: str = "global"
    training: TrainingConfig = field(default_factory=TrainingConfig)
    read_noise: str = "drift"
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
        check_bool("AnalogConfig", "drift_compensation", self.drift_compensation)
        _check_choice(
            "AnalogConfig", "drift_compensation_mode", self.drift_compensation_mode, _COMPENSATIONS
        )
        _check_choice("AnalogConfig", "read_noise", self.read_noise, _READ_NOISE)
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
