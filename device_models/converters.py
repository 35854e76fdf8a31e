"""DAC and ADC quantization models: configs and pure tensor functions.

Inputs reach a tile through a DAC and column currents leave it through an ADC. Both are uniform,
mid-tread quantizers with saturation. All functions work on *normalized* values: the DAC maps an
input ``x`` with range ``r`` to ``x / r`` in ``[-1, 1]`` (``[0, 1]`` unsigned); the ADC maps a
column current ``i`` with full scale ``fs`` onto integer codes. Gradients pass straight through
(identity inside the range, zero where the value saturates), so quantized forwards can be trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from device_models.base import check_bool

__all__ = [
    "DACConfig",
    "ADCConfig",
    "quantize_dac",
    "quantize_dac_",
    "adc_readout",
    "adc_codes",
    "adc_codes_",
    "bit_planes",
    "round_ste",
]

_DAC_RANGE_MODES = ("calibrated", "dynamic")
_ADC_RANGE_MODES = ("calibrated", "max")


def _check_bits(owner: str, bits: Optional[int]) -> None:
    if bits is None:
        return
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"{owner}.bits must be an int in 1..24 or None (ideal), got {bits!r}")
    if not 1 <= bits <= 24:
        raise ValueError(f"{owner}.bits must be in 1..24 or None (ideal), got {bits}")


def _check_fraction(owner: str, field: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{owner}.{field} must be a finite number, got {value!r}")
    if not lo < value <= hi:
        raise ValueError(f"{owner}.{field} must be in ({lo}, {hi}], got {value}")


@dataclass
class DACConfig:
    """Input digital-to-analog conversion of one tile row.

    Attributes:
        bits: resolution in bits, 1..24; ``None`` drives rows with the exact input (ideal DAC).
            Signed inputs use ``2**(bits-1) - 1`` levels per polarity (sign-magnitude pulses),
            so they need ``bits >= 2``; ``bits=1`` is an unsigned (on/off) DAC.
        signed: whether negative inputs are driven (bipolar pulses). ``False`` clips them to 0,
            as in accelerators that only see post-ReLU activations (ISAAC).
        range_mode: how the input full scale (in input units) is set: ``"calibrated"``, the
            ``percentile`` of ``|x|`` over calibration batches (``aimc.calibrate``, or the first
            batch a layer sees), then fixed as a chip's would be; ``"dynamic"``, the max ``|x|`` of
            each sample (per-sample scaling in the digital periphery).
        percentile: percentile (0, 100] of ``|x|`` used by ``"calibrated"``; 100 is the max.
        bit_serial: stream the input one bit per cycle through a 1-bit DAC (one ADC read per
            cycle, shift-add after the ADC), as ISAAC does; ``bits`` magnitude cycles unsigned,
            ``bits - 1`` signed. Requires ``bits``.
    """

    bits: Optional[int] = 8
    signed: bool = True
    range_mode: str = "calibrated"
    percentile: float = 100.0
    bit_serial: bool = False

    def __post_init__(self) -> None:
        _check_bits("DACConfig", self.bits)
        check_bool("DACConfig", "signed", self.signed)
        check_bool("DACConfig", "bit_serial", self.bit_serial)
        if self.signed and self.bits == 1:
            raise ValueError(
                "DACConfig.bits=1 with signed=True leaves no magnitude level (a signed DAC "
                "spends one bit on the sign); use bits >= 2 for signed inputs, signed=False for "
                "a 1-bit unsigned (on/off) DAC, or bit_serial=True with bits >= 2 to stream "
                "the input one bit per cycle"
            )
        if self.range_mode not in _DAC_RANGE_MODES:
            raise ValueError(
                f"DACConfig.range_mode must be one of {_DAC_RANGE_MODES}, got {self.range_mode!r}"
            )
        _check_fraction("DACConfig", "percentile", self.percentile, 0.0, 100.0)
        if self.bit_serial and self.bits is None:
            raise ValueError("DACConfig.bit_serial=True needs DACConfig.bits (got None)")

    @property
    def levels(self) -> Optional[int]:
        """Largest integer code magnitude, or ``None`` for an ideal DAC."""
        if self.bits is None:
            return None
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def cycles(self) -> int:
        """Input cycles per MVM: magnitude bits when bit-serial, else 1."""
        if not self.bit_serial:
            return 1
        return self.bits - 1 if self.signed else self.bits


@dataclass
class ADCConfig:
    """Column-current analog-to-digital conversion, one read per tile column and input cycle.

    Attributes:
        bits: resolution in bits, 1..24; ``None`` is an ideal ADC (no quantization or clipping).
        range_mode: how the full scale is set: ``"calibrated"``, the ``percentile`` of ``|I|``
            over calibration batches times ``range_fraction``; ``"max"``, ``range_fraction`` times
            the largest current a tile column can carry (all rows at full input on ``g_max``).
        range_fraction: multiplier of the full scale, (0, 1e6]. Below 1 trades clipping of rare
            large sums for a finer LSB.
        percentile: percentile (0, 100] of ``|I|`` used by ``"calibrated"``.
        noise: standard deviation of additive output noise, relative to the full scale (the
            convention of aihwkit's ``out_noise``); 0 turns it off.
    """

    bits: Optional[int] = 8
    range_mode: str = "calibrated"
    range_fraction: float = 1.0
    percentile: float = 100.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        _check_bits("ADCConfig", self.bits)
        if self.range_mode not in _ADC_RANGE_MODES:
            raise ValueError(
                f"ADCConfig.range_mode must be one of {_ADC_RANGE_MODES}, got {self.range_mode!r}"
            )
        _check_fraction("ADCConfig", "range_fraction", self.range_fraction, 0.0, 1e6)
        _check_fraction("ADCConfig", "percentile", self.percentile, 0.0, 100.0)
        if isinstance(self.noise, bool) or not isinstance(self.noise, (int, float)):
            raise TypeError(f"ADCConfig.noise must be a number >= 0, got {self.noise!r}")
        if not math.isfinite(self.noise) or self.noise < 0:
            raise ValueError(f"ADCConfig.noise must be a finite number >= 0, got {self.noise}")

    @property
    def levels(self) -> Optional[int]:
        """Largest code magnitude of the signed ADC, or ``None`` when ideal."""
        return None if self.bits is None else max(2 ** (self.bits - 1) - 1, 1)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return grad


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` whose gradient is the identity (straight-through estimator)."""
    if not x.requires_grad:
        return torch.round(x)
    return _RoundSTE.apply(x)


def quantize_dac(x: Tensor, x_range: Tensor | float, levels: Optional[int], signed: bool = True):
    """Normalize ``x`` by its range and quantize it to ``levels`` codes per polarity.

    Returns values in ``[-1, 1]`` (``[0, 1]`` unsigned) on the grid ``k / levels``; with
    ``levels=None`` only the normalization and clipping apply. Saturated values get zero gradient.

    Examples:
        >>> quantize_dac(torch.tensor([-2.0, 0.26, 0.8, 3.0]), 2.0, levels=2)
        tensor([-1.0000,  0.0000,  0.5000,  1.0000])
        >>> quantize_dac(torch.tensor([-1.0, 0.3]), 1.0, levels=3, signed=False)
        tensor([0.0000, 0.3333])
    """
    lo = -1.0 if signed else 0.0
    if levels is not None and not (x.requires_grad or getattr(x_range, "requires_grad", False)):
        return quantize_dac_(x, levels / x_range, levels, signed)  # the same values, fused
    xn = torch.clamp(x / x_range, lo, 1.0)
    if levels is None:
        return xn
    return round_ste(xn * levels) / levels


def quantize_dac_(x: Tensor, gain: Tensor | float, levels: int, signed: bool = True) -> Tensor:
    """:func:`quantize_dac` without a gradient, in the fewest passes: ``x * gain`` (``gain =
    levels / range``) clamped to the codes ``[-levels, levels]`` (``[0, levels]`` unsigned),
    rounded half to even and divided by ``levels``, in place in one new tensor (``x`` stays as
    it is). Bitwise what :func:`quantize_dac` gives for the same ``levels / range``.

    Clamping before rounding equals rounding before clamping (the bounds are integers), so the
    order is free; ``torch.fake_quantize_per_tensor_affine`` would round and clamp in one
    kernel, but it rescales by a float reciprocal (other values) and its CPU kernel is scalar
    and writes a mask too (tens of times slower than these vectorized in-place passes).

    Examples:
        >>> quantize_dac_(torch.tensor([-2.0, 0.26, 0.8, 3.0]), 2 / 2.0, levels=2)
        tensor([-1.0000,  0.0000,  0.5000,  1.0000])
    """
    lo = -levels if signed else 0
    return torch.mul(x, gain).clamp_(lo, levels).round_().div_(levels)


def adc_codes_(p: Tensor, levels: int) -> Tensor:
    """The codes ``clamp(round(p), -levels, levels)`` of partial sums ``p`` already in LSB
    units, in place in ``p`` (no gradient): two vectorized passes, bitwise
    ``torch.fake_quantize_per_tensor_affine(p, 1.0, 0, -levels, levels)`` (round half to even,
    then clamp), which takes one scalar pass and a mask and is tens of times slower on a CPU.

    Examples:
        >>> adc_codes_(torch.tensor([0.5, 1.5, -7.2]), levels=3)
        tensor([ 0.,  2., -3.])
    """
    return p.round_().clamp_(-levels, levels)


def adc_readout(
    current: Tensor,
    full_scale: Tensor | float,
    levels: Optional[int],
    noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Digitize column currents with a signed ADC of ``levels`` codes per polarity.

    The value returned is in current units: ``round(i / lsb) * lsb`` with ``lsb = fs / levels``,
    clipped to ``[-fs, fs]``. ``noise`` adds Gaussian output noise of std ``noise * fs`` before
    quantization. With ``levels=None`` (ideal ADC) the current passes unchanged (plus noise).
    The error of an unsaturated value is at most ``lsb / 2``.

    Examples:
        >>> adc_readout(torch.tensor([0.24, 0.26, -3.0]), 1.0, levels=2)
        tensor([ 0.0000,  0.5000, -1.0000])
    """
    if noise > 0:
        std = noise * full_scale
        current = current + std * torch.randn(
            current.shape, generator=generator, device=current.device, dtype=current.dtype
        )
    if levels is None:
        return current
    lsb = full_scale / levels
    return adc_codes(current / lsb, lsb, levels, in_lsb=True) * lsb


def adc_codes(current: Tensor, lsb: Tensor | float, levels: int, in_lsb: bool = False) -> Tensor:
    """The integer codes ``clamp(round(i / lsb), -levels, levels)`` of a signed ADC.

    ``in_lsb``: ``current`` is already in LSB units. Gradients pass straight through inside the
    range; without a gradient the codes are computed in place in ``current`` (a fresh tensor
    the caller owns).

    Examples:
        >>> adc_codes(torch.tensor([0.24, 0.26, -3.0]), 0.5, levels=1)
        tensor([ 0.,  1., -1.])
    """
    if current.requires_grad:
        return torch.clamp(round_ste(current if in_lsb else current / lsb), -levels, levels)
    return adc_codes_(current if in_lsb else current.div_(lsb), levels)


def bit_planes(codes: Tensor, n_bits: int) -> Tensor:
    """Split integer-valued magnitudes ``codes`` (>= 0 or signed) into ``n_bits`` signed bit planes.

    Returns a tensor of shape ``(n_bits, *codes.shape)`` with entries in ``{-1, 0, 1}`` such that
    ``sum_j 2**j * planes[j] == codes``. The sign rides on every plane (bipolar pulses).

    Examples:
        >>> bit_planes(torch.tensor([5.0, -3.0]), 3)
        tensor([[ 1., -1.],
                [ 0., -1.],
                [ 1.,  0.]])
    """
    if n_bits > 62:
        raise ValueError(f"bit_planes: n_bits must be <= 62, got {n_bits}")
    # integer shifts: two passes for all planes (codes are exact integers in float)
    mag = codes.abs().to(torch.int64)
    shifts = torch.arange(n_bits, device=codes.device).view(-1, *([1] * codes.dim()))
    planes = ((mag.unsqueeze(0) >> shifts) & 1).to(codes.dtype)
    if bool(codes.numel()) and codes.is_cpu and not bool((codes < 0).any()):
        return planes  # unsigned inputs (the common case): no sign to apply
    return planes.mul_(torch.sign(codes)).add_(0.0)
