"""The ADC stage: column currents become codes, one conversion per tile column and read.

``ADC`` owns the full scale of each weight slice (the ``full_scale`` buffer, in normalized
current units), the output noise, the calibration observer and the saturation counter.
``IdentityADC`` stands in for an ideal, noiseless ADC. :meth:`ADC.fused_read` is the fast path
of a noisy inference read: the noise is drawn first, in LSB units, and the tile matmul
accumulates ``currents / LSB`` into it (one GEMM, no separate add and divide passes).
:meth:`ADC.convert_` is the conversion of the batched read-out (:mod:`aimc.tile.readout`):
partial sums already in LSB units, all of a chunk in one pass; :meth:`ADC.summarize` and
:meth:`ADC.observe_summaries` calibrate the full scale from per-chunk summaries.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from aimc.functional import percentile_abs, randn_chunked, tile_matmul
from aimc.tile.geometry import TileGeometry
from aimc.tile.stage import IdentityConverter, Stage
from device_models.converters import ADCConfig, adc_codes, adc_codes_, adc_readout

__all__ = ["ADC", "IdentityADC", "adc_digitize"]

log = logging.getLogger("aimc.tile")

#: partial sums per slice that one chunk's summary keeps for a percentile full scale
SUMMARY_SAMPLES = 1 << 16


def adc_digitize(
    p: Tensor, full_scale: Tensor | float, levels: int, *, in_lsb: bool = False, defer_lsb=False
) -> tuple[Tensor, Optional[Tensor | float]]:
    """Quantize partial sums ``p`` with a signed ADC of ``levels`` codes per polarity.

    Returns ``(values, lsb)``: with a gradient, the read-out ``codes * lsb`` (straight-through)
    and ``None``; without one, the codes computed in place in ``p`` (``in_lsb``: ``p`` is in
    LSB units already), multiplied by the LSB unless ``defer_lsb``, in which case the LSB comes
    back for the caller to fold into a smaller tensor."""
    if p.requires_grad:
        return adc_readout(p, full_scale, levels), None
    lsb = full_scale / levels
    codes = adc_codes(p, lsb, levels, in_lsb=in_lsb)
    if defer_lsb:
        return codes, lsb
    return codes.mul_(lsb), None


class ADC(Stage):
    """Per-column ADC of a layer's tiles (:class:`~device_models.converters.ADCConfig`).

    Args:
        config: bits, range mode, range fraction, percentile, output noise.
        geometry: the layer's tile grid (slices, rows per tile).
        max_row_current: the largest normalized current one row adds to a column (1 for
            differential pairs, ``1 + g_min / (g_max - g_min)`` offset-encoded).
    """

    def __init__(
        self,
        config: ADCConfig,
        geometry: TileGeometry,
        *,
        max_row_current: float = 1.0,
        parallel_rows: Optional[int] = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.config = config
        # rows one read sums (TileConfig.parallel_rows): what a max-current full scale covers
        rows = (
            geometry.row_block if parallel_rows is None else min(parallel_rows, geometry.row_block)
        )
        self.slices, self.row_block = geometry.slices, rows
        self.max_row_current = max_row_current
        self.register_buffer("full_scale", torch.zeros(geometry.slices, device=device, dtype=dtype))
        self._observing = False
        self._observed: list[Optional[float]] = [None] * geometry.slices
        self._counts: list[list[int]] = []  # one [saturated, all] per open counter

    # -- calibration observer (torch.ao's enable_observer pattern)
    @property
    def observing(self) -> bool:
        """Whether forwards record partial-sum statistics (ideal conversion meanwhile)."""
        return self._observing

    def enable_observer(self) -> None:
        self._observing, self._observed = True, [None] * self.slices

    def disable_observer(self) -> None:
        self._observing = False

    def load_observed(self) -> None:
        """Set ``full_scale`` to what the observer recorded for every slice (else keep it)."""
        if all(v is not None for v in self._observed):
            self.full_scale.copy_(torch.tensor([max(v, 1e-12) for v in self._observed]))

    @property
    def uncalibrated(self) -> bool:
        """A calibrated full scale not set yet."""
        return self.config.range_mode == "calibrated" and self._min_full_scale() <= 0

    def _min_full_scale(self) -> float:
        return self.scalar("full_scale", lambda b: float(b.min()))

    def _sets_range(self) -> bool:
        """Whether partial sums now set the full scale: the observer is on, or a calibrated
        full scale is not set yet (first batch)."""
        if self.config.range_mode != "calibrated":
            return False
        return self._observing or self._min_full_scale() <= 0

    def observe(self, parts: Sequence[Tensor], s_dim: int) -> None:
        """Record (while observing) or set (an uncalibrated ADC, first batch) the full scale of
        each slice from the partial sums of all row tiles, ``parts``."""
        if not self._sets_range():
            return
        vals = []
        for s in range(parts[0].shape[s_dim]):
            flat = [part.detach().select(s_dim, s).reshape(-1) for part in parts]
            x = torch.cat(flat) if len(flat) > 1 else flat[0]
            vals.append(percentile_abs(x, self.config.percentile))
        self._record(vals)

    def summarize(self, p: Tensor, s_dim: int) -> Tensor:
        """What the full scale needs of one chunk of partial sums ``p`` (slices along
        ``s_dim``): ``[S, 1]`` the largest ``|p|`` per slice, or, for a percentile below 100,
        ``[S, k]`` a strided subsample of ``|p|`` (at most :data:`SUMMARY_SAMPLES` per slice)."""
        flat = p.detach().movedim(s_dim, 0).reshape(p.shape[s_dim], -1)
        if self.config.percentile >= 100.0:
            return flat.abs().amax(dim=1, keepdim=True)
        step = -(-flat.shape[1] // SUMMARY_SAMPLES)
        return flat[:, ::step].abs()

    def observe_summaries(self, summaries: Sequence[Tensor]) -> None:
        """:meth:`observe` from the chunk summaries of one forward (:meth:`summarize`)."""
        if not self._sets_range() or not summaries:
            return
        per_slice = torch.cat(list(summaries), dim=1)
        self._record([percentile_abs(row, self.config.percentile) for row in per_slice])

    def _record(self, vals: list[float]) -> None:
        if self._observing:
            old = self._observed
            self._observed = [v if o is None else max(o, v) for o, v in zip(old, vals)]
        elif all(v > 0 for v in vals):  # an all-zero first batch sets nothing
            self.full_scale.copy_(torch.tensor(vals))
            warnings.warn(
                f"{self.layer_name}: no ADC full scale was calibrated; it is set from this "
                "first eval batch and kept (a small or atypical batch makes a poor range). "
                "Call aimc.calibrate(model, batches) with representative data first",
                UserWarning,
                stacklevel=3,
            )

    @property
    def range_key(self) -> tuple[float, ...]:
        """The full scales as a tuple (a cache key of what depends on them)."""
        return self.scalar("full_scale", lambda b: tuple(b.tolist()))

    # -- saturation counter
    @property
    def counting(self) -> bool:
        return bool(self._counts)

    def enable_counter(self) -> None:
        """Count conversions that round beyond the full scale (eval forwards). Counters nest:
        each enable opens one, and every conversion counts in all that are open."""
        self._counts.append([0, 0])

    def disable_counter(self) -> tuple[int, int]:
        """Close the innermost counter; returns its ``(saturated, all)`` conversions."""
        counts = self._counts.pop() if self._counts else [0, 0]
        return counts[0], counts[1]

    # -- the conversion
    def scale(self, p: Tensor, s_dim: int) -> Tensor | float:
        """Full scale per slice, shaped to broadcast along ``s_dim`` of ``p`` (a Python float
        when it is one number)."""
        c = self.config
        if c.range_mode == "max":
            return c.range_fraction * self.row_block * self.max_row_current
        if self.slices == 1:
            return self._min_full_scale() * c.range_fraction
        shape = [1] * p.dim()
        shape[s_dim] = -1
        return (self.full_scale * c.range_fraction).view(shape)

    # -- the batched read-out (:mod:`aimc.tile.readout`)
    def batch_lsbs(self) -> Optional[list[float]]:
        """The LSB of each slice (Python numbers) when the batched read-out can convert in one
        pass, else ``None``: output noise (drawn in the general path's layout), the observer
        on, or a calibrated full scale not set yet."""
        c = self.config
        if c.noise > 0 or c.bits is None or self._observing:
            return None
        if c.range_mode == "max":
            return [self.scale(self.full_scale, 0) / c.levels] * self.slices
        full_scales = self.range_key
        if min(full_scales) <= 0:
            return None
        return [v * c.range_fraction / c.levels for v in full_scales]

    def calibrates_batched(self) -> bool:
        """Whether this forward sets or records the full scale and the batched read-out can do
        it from chunk summaries (no output noise, quantized)."""
        c = self.config
        return c.noise <= 0 and c.bits is not None and self._sets_range()

    def convert_(self, p: Tensor) -> Tensor:
        """Partial sums ``p`` already in LSB units (the batched read-out divides the tiles by
        the LSBs of :meth:`batch_lsbs` instead of every partial sum) to ADC codes, in place.
        Counts saturated conversions when a counter is open."""
        levels = self.config.levels
        if self._counts:
            self._count(int((p.abs() > levels + 0.5).sum()), p.numel())
        return adc_codes_(p, levels)

    def _count(self, saturated: int, total: int) -> None:
        for counts in self._counts:
            counts[0] += saturated
            counts[1] += total

    def can_fuse(self, rows: Tensor, w: Tensor) -> bool:
        """Whether :meth:`fused_read` applies: an inference read with output noise, fixed bits
        and a full scale that is one known number."""
        c = self.config
        if c.noise <= 0 or c.bits is None or self._observing:
            return False
        if torch.is_grad_enabled() and (rows.requires_grad or w.requires_grad):
            return False
        if c.range_mode == "calibrated":
            return self.slices == 1 and self._min_full_scale() > 0
        return True

    def fused_read(self, rows: Tensor, w: Tensor, generators: Sequence[torch.Generator]):
        """Partial sums of ``rows`` ``[M, Gr, K]`` on tiles ``w`` in LSB units, noise added."""
        c = self.config
        fs = self.scale(w, 0)  # one number here (``w`` only stands in for the shape)
        shape = (*w.shape[:3], rows.shape[0], w.shape[-1])
        noise = randn_chunked(shape, generators, w.device, w.dtype, sigma=c.noise * c.levels)
        return tile_matmul(rows, w, add=noise, alpha=c.levels / fs)

    def read(self, rows: Tensor, w: Tensor, generators: Sequence[torch.Generator]):
        """``(partial sums, in_lsb)``: the fused read when it applies, else the tile currents."""
        if self.can_fuse(rows, w):
            return self.fused_read(rows, w, generators), True
        return tile_matmul(rows, w), False

    def forward(
        self,
        p: Tensor,
        s_dim: int,
        generators: Sequence[torch.Generator],
        *,
        in_lsb: bool = False,
        observed: bool = False,
        defer_lsb: bool = True,
    ) -> tuple[Tensor, Optional[Tensor | float]]:
        """Convert partial sums ``p`` (slices along ``s_dim``). Returns ``(values, lsb)``, see
        :func:`adc_digitize`. ``observed``: the caller already ran :meth:`observe` on all row
        tiles; ``in_lsb``: ``p`` comes from :meth:`fused_read`."""
        c = self.config
        if not observed and not in_lsb:
            self.observe([p], s_dim)
        if self._observing and not in_lsb:  # ideal conversion while calibrating
            return p, None
        fs = self.scale(p, s_dim)
        if c.noise > 0 and not in_lsb:  # output noise, std relative to the full scale
            noise = randn_chunked(p.shape, generators, p.device, p.dtype)
            if isinstance(fs, float) and not p.requires_grad:  # one fused pass
                p = p.add_(noise, alpha=fs * c.noise)
            else:
                p = p + noise * (fs * c.noise)
        if c.bits is None:
            return p, None
        if self._counts:
            bound = c.levels + 0.5 if in_lsb else fs * (1.0 + 0.5 / c.levels)
            self._count(int((p.detach().abs() > bound).sum()), p.numel())
        return adc_digitize(p, fs, c.levels, in_lsb=in_lsb, defer_lsb=defer_lsb)

    def extra_repr(self) -> str:
        c = self.config
        bits = "ideal" if c.bits is None else c.bits
        noise = f", noise={c.noise:g}" if c.noise else ""
        return f"bits={bits}, range_mode={c.range_mode}{noise}"


class IdentityADC(IdentityConverter):
    """An ideal, noiseless ADC: partial sums pass unchanged."""

    counting = False
    range_key = ()

    def enable_counter(self) -> None:
        pass

    def disable_counter(self) -> tuple[int, int]:
        return 0, 0

    def read(self, rows: Tensor, w: Tensor, generators: Sequence[torch.Generator]):
        return tile_matmul(rows, w), False

    def batch_lsbs(self) -> list[float]:
        return [1.0]

    def calibrates_batched(self) -> bool:
        return False

    def convert_(self, p: Tensor) -> Tensor:
        return p

    def forward(self, p: Tensor, s_dim: int, generators, **_: object):
        return p, None
