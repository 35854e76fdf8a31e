"""The DAC stage: inputs become normalized, quantized row drives (bit planes when bit-serial).

``DAC`` owns the input full scale (the ``range`` buffer, in input units), its calibration
observer and, with ``TrainingConfig.learn_input_range``, the learned gain ``range_gain``.
``IdentityDAC`` stands in when the layer needs no input range at all (ideal DAC and ADC).
"""

from __future__ import annotations

import logging
import warnings
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from aimc.functional import percentile_abs
from aimc.tile.stage import IdentityConverter, Stage
from device_models.converters import DACConfig, bit_planes, quantize_dac

__all__ = ["DAC", "IdentityDAC", "Drive", "dac_drive"]

log = logging.getLogger("aimc.tile")

_MIN_GAIN = 0.01  # floor of the learned range gain (a range cannot shrink to zero)


class Drive(NamedTuple):
    """What the DAC hands the crossbar: normalized inputs ``x`` (bit planes flattened into the
    batch when bit-serial), the full scale ``range`` (input units; one number, a scalar tensor,
    or one per sample) and the shift-add weights of the planes (``None`` unless bit-serial)."""

    x: Tensor
    range: Tensor | float
    plane_weights: Optional[Tensor]


def dac_drive(x: Tensor, x_range: Tensor | float, config: DACConfig) -> Drive:
    """Normalize ``x`` by ``x_range``, quantize it to ``config.bits`` and split it into bit
    planes when ``config.bit_serial`` (straight-through gradients; in place without them)."""
    if config.bits is None:
        return Drive(x / x_range, x_range, None)
    xq = quantize_dac(x, x_range, config.levels, config.signed)
    if not config.bit_serial:
        return Drive(xq, x_range, None)
    codes = torch.round(xq.detach() * config.levels)
    planes = bit_planes(codes, config.cycles)  # [P, B, ...]
    if xq.requires_grad:  # straight-through: the gradient reaches xq via the top plane
        top = 2.0 ** (config.cycles - 1) / config.levels
        planes = planes.clone()
        planes[-1] = planes[-1] + (xq - xq.detach()) / top
    # made on the input's device (a tensor from a Python list would sync a GPU every forward)
    pw = torch.arange(config.cycles, dtype=x.dtype, device=x.device).exp2_().div_(config.levels)
    return Drive(planes.flatten(0, 1), x_range, pw)


class DAC(Stage):
    """Input DAC of a layer's tile rows (:class:`~device_models.converters.DACConfig`).

    Args:
        config: bits, signedness, range mode, percentile, bit-serial streaming.
        learn_range: add the learned range gain ``range_gain`` (a parameter, starting at 1).
    """

    def __init__(
        self, config: DACConfig, *, learn_range: bool = False, device=None, dtype=None
    ) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("range", torch.zeros((), device=device, dtype=dtype))
        gain = nn.Parameter(torch.ones((), device=device, dtype=dtype)) if learn_range else None
        self.register_parameter("range_gain", gain)
        self._observing = False
        self._observed: Optional[float] = None

    # -- calibration observer (torch.ao's enable_observer pattern)
    @property
    def observing(self) -> bool:
        """Whether forwards record input statistics instead of converting."""
        return self._observing

    def enable_observer(self) -> None:
        """Record the ``percentile`` of ``|x|`` of each forward (max over forwards)."""
        self._observing, self._observed = True, None

    def disable_observer(self) -> None:
        self._observing = False

    def load_observed(self) -> None:
        """Set ``range`` to what the observer recorded (kept when it recorded nothing).

        Raises:
            ValueError: every calibration input was zero (no range can come from it).
        """
        if self._observed is not None:
            if not self._observed > 0:
                raise ValueError(
                    f"{self.layer_name}: the calibration inputs it saw are all zero, so no DAC "
                    "input range can be set from them; calibrate with batches of real data"
                )
            self.range.fill_(self._observed)

    @property
    def uncalibrated(self) -> bool:
        """A calibrated range not set yet."""
        return self.config.range_mode == "calibrated" and self.scalar("range", float) <= 0

    def observe(self, x: Tensor) -> None:
        if self.config.range_mode == "calibrated":
            value = percentile_abs(x, self.config.percentile)
            self._observed = value if self._observed is None else max(self._observed, value)

    # -- the conversion
    def full_scale(self, x: Tensor, auto_calibrate: bool = True):
        """``(r, r_b)``: the full scale in input units and the same broadcastable against ``x``:
        per sample (``"dynamic"``) or the calibrated range (times the learned gain). An
        uncalibrated DAC takes its range from ``x`` when ``auto_calibrate``, else uses
        ``max |x|`` for this call only."""
        if self.config.range_mode == "dynamic":
            r = x.detach().abs().flatten(1).amax(1) if x.dim() > 1 else x.detach().abs().amax()
            r = torch.where(r > 0, r, torch.ones_like(r))
            return r, (r.view(-1, *([1] * (x.dim() - 1))) if x.dim() > 1 else r)
        r = self.scalar("range", float)
        if r <= 0:
            value = percentile_abs(x, self.config.percentile) if auto_calibrate else 0.0
            if not value > 0:  # not asked to, or an all-zero batch: this call only
                r = x.detach().abs().amax().clamp_min(1e-30)
                return r, r
            self.range.fill_(value)
            r = self.scalar("range", float)
            warnings.warn(
                f"{self.layer_name}: no DAC input range was calibrated; it is set from this first "
                "eval batch and kept (a small or atypical batch makes a poor range). Call "
                "aimc.calibrate(model, batches) with representative data first",
                UserWarning,
                stacklevel=2,
            )
        if self.range_gain is not None:  # carries the range gradient (LSQ/PACT style)
            r = self.range * self.range_gain.clamp_min(_MIN_GAIN)
        return r, r

    def forward(self, x: Tensor) -> Drive:
        r, r_b = self.full_scale(x)
        drive = dac_drive(x, r_b, self.config)
        return drive._replace(range=r)

    def cycle_weights(self) -> list[float]:
        """The shift-add weight of each input cycle (the ``plane_weights`` of a bit-serial
        drive, as Python numbers); ``[1.0]`` for a single cycle."""
        c = self.config
        if c.bits is None or not c.bit_serial:
            return [1.0]
        return [2.0**j / c.levels for j in range(c.cycles)]

    @torch.no_grad()
    def normalize(self, x: Tensor) -> Tensor:
        """The normalized, quantized input (values in ``[-1, 1]``) without bit planes and
        without calibrating (the cost model's view of the row drives)."""
        _, r_b = self.full_scale(x, auto_calibrate=False)
        if self.config.bits is None:
            return x / r_b
        return quantize_dac(x, r_b, self.config.levels, self.config.signed)

    def extra_repr(self) -> str:
        c = self.config
        bits = "ideal" if c.bits is None else c.bits
        serial = ", bit_serial=True" if c.bit_serial else ""
        return f"bits={bits}, range_mode={c.range_mode}, signed={c.signed}{serial}"


class IdentityDAC(IdentityConverter):
    """No DAC: rows see the inputs as they are (an ideal DAC feeding an ideal ADC). While the
    observer is on, the layer still runs its digital op, as with a real DAC."""

    range_gain = None

    def forward(self, x: Tensor) -> Drive:
        return Drive(x, 1.0, None)

    def cycle_weights(self) -> list[float]:
        return [1.0]

    def normalize(self, x: Tensor) -> Tensor:
        return x
