"""The accumulation stage: the digital side after the ADCs.

Shift-add of weight slices and of bit-serial input cycles, the offset-encoding correction,
the rescale by the weight scales, the sum of the row tiles' partial sums, and the final rescale
by the DAC range and the drift-compensation factor. Stateless: the layer passes what it reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from aimc.functional import slice_coefficients
from aimc.tile.stage import Stage

__all__ = ["Accumulate", "ReadoutWeights"]


class ReadoutWeights(NamedTuple):
    """The accumulation stage as weights of ADC codes (:meth:`Accumulate.readout_weights`):
    ``cycle`` ``[cycles]``, ``slice`` ``[S]``, ``xsum`` ``[cycles]`` (offset encoding, else
    ``None``), the column scales ``scale`` ``[Gr, reads, N]`` and their product
    ``factor = slice * scale`` ``[Gr, reads, 1, S, N]`` (made once with them)."""

    cycle: Tensor
    slice: Tensor
    xsum: Optional[Tensor]
    scale: Tensor
    factor: Optional[Tensor] = None


class Accumulate(Stage):
    """Digital accumulation of one layer's ADC outputs.

    Args:
        encoding, weight_bits, slices: the weight mapping (``MappingConfig``): how slices
            shift-add and whether an offset-encoded column sum must be removed.
        g_offset: ``g_min / (g_max - g_min)``, the normalized current of an 'off' device.
    """

    def __init__(self, encoding: str, weight_bits: Optional[int], slices: int, g_offset: float):
        super().__init__()
        self.encoding, self.weight_bits, self.slices = encoding, weight_bits, slices
        self.g_offset = g_offset
        self._coef: dict = {}  # shift-add weights per (dtype, device)
        self._weights: dict = {}  # the batched read-out's weights (one entry)

    def forward(
        self,
        p: Tensor,
        lsb: Optional[Tensor | float],
        dims: dict[str, int],
        scale: Tensor,
        xsum: Optional[Tensor] = None,
        out: Optional[Tensor] = None,
    ) -> Tensor:
        """Shift-add over slices, rescale and sum of row tiles.

        ``p`` holds ADC outputs with axes named by ``dims`` (``s``, ``g``, ``rt``, ``n``);
        ``lsb`` an LSB still to multiply in (or ``None``); ``scale`` the weight scales
        ``[Gr, n_rt, 1, N]``; ``xsum`` (offset encoding) the sum of each row tile's inputs,
        shaped like ``p`` with the slice and column axes of size 1. ``out``: a running sum to
        add the result to (in place when no gradient is needed).
        """
        nd, s_dim = p.dim(), dims["s"]
        key = (p.dtype, p.device)
        coef = self._coef.get(key)
        if coef is None:  # made once per dtype and device: no host-to-device copy per forward
            coef = slice_coefficients(self.encoding, self.weight_bits, self.slices, p.dtype)
            coef = self._coef.setdefault(key, coef.to(p.device))
        shape = [1] * nd
        shape[s_dim] = coef.numel()
        coef = coef.reshape(shape)
        if lsb is not None and p.shape[s_dim] > 1:
            coef, lsb = coef * lsb, None
        if p.shape[s_dim] == 1 and xsum is None:
            y = p.squeeze(s_dim)
        else:
            if xsum is not None:
                p = p - self.g_offset * xsum
            y = (p * coef).sum(s_dim)
            if xsum is not None:
                y = 2.0 * y - xsum.squeeze(s_dim)
        rt = dims["rt"] - (1 if dims["rt"] > s_dim else 0)
        sc = scale.squeeze(2)  # [Gr, n_rt, N]
        shape = [1] * y.dim()
        for name, size in zip(("g", "rt", "n"), sc.shape):
            shape[dims[name] - (1 if dims[name] > s_dim else 0)] = size
        sc = sc.reshape(shape)
        if lsb is not None:
            sc = sc * (lsb if isinstance(lsb, float) else lsb.reshape(()))
        if y.requires_grad:
            return (y * sc).sum(rt) if out is None else out + (y * sc).sum(rt)
        # sum of the row tiles' rescaled partial sums: one multiply-accumulate pass per tile
        start = 0
        if out is None:
            out, start = torch.mul(y.select(rt, 0), sc.select(rt, 0)), 1
        for i in range(start, y.shape[rt]):
            out.addcmul_(y.select(rt, i), sc.select(rt, i))
        return out

    def readout_weights(
        self,
        lsbs: Sequence[float],
        cycle_weights: Sequence[float],
        scale: Tensor,
        reads: int = 1,
    ) -> ReadoutWeights:
        """What this stage does to ADC codes, as weights for the batched read-out
        (:mod:`aimc.tile.readout`): the output is ``sum cycle[j] slice[s] scale[r, n] q`` over
        cycles ``j``, reads ``r`` and slices ``s`` of the codes ``q``, plus, for offset
        encoding, ``sum xsum[j] scale[r, n] (input sum of read r in cycle j)``, which removes
        the offset. ``cycle = cycle_weights``; ``slice[s] = coef[s] * lsbs[s]`` (times 2 for
        offset encoding); ``xsum[j] = -cycle[j] (2 g_offset sum(coef) + 1)``. ``scale``: the
        weight scales ``[Gr, n_rt, 1, N]``, each row tile's repeated for its ``reads``
        partial-row reads. Kept while scales, LSBs and cycles stay the same (no host-to-device
        copies per forward)."""
        key = (scale.data_ptr(), scale._version, scale.dtype, tuple(lsbs), tuple(cycle_weights))
        key += (reads, scale.device)
        hit = self._weights.get(key)
        if hit is not None:
            return hit
        offset = self.encoding != "differential"
        coef = slice_coefficients(self.encoding, self.weight_bits, self.slices, torch.float64)
        lsb = torch.tensor(list(lsbs), dtype=torch.float64).expand(coef.numel())
        cyc = torch.tensor(list(cycle_weights), dtype=torch.float64)
        per_slice = coef * lsb * (2.0 if offset else 1.0)
        xsum = cyc * -(2.0 * self.g_offset * float(coef.sum()) + 1.0) if offset else None
        sc = scale.detach().squeeze(2)  # [Gr, n_rt, N]
        if reads > 1:
            sc = sc.repeat_interleave(reads, dim=1)
        dev, dt = scale.device, scale.dtype
        per_slice, sc = per_slice.to(dev, dt), sc.contiguous()
        gr, n_rt, n = sc.shape
        factor = per_slice.view(1, 1, 1, -1, 1) * sc.view(gr, n_rt, 1, 1, n)
        xsum = None if xsum is None else xsum.to(dev, dt)
        out = ReadoutWeights(cyc.to(dev, dt), per_slice, xsum, sc, factor)
        self._weights.clear()
        self._weights[key] = out
        return out

    def forget(self) -> None:
        super().forget()
        self._weights.clear()

    def _derived(self) -> tuple[str, ...]:
        return ("_scalars", "_weights")

    @staticmethod
    def planes(y: Tensor, plane_weights: Optional[Tensor]) -> Tensor:
        """Shift-add the bit-serial input cycles stacked along the batch axis of ``y``."""
        if plane_weights is None:
            return y
        pw = plane_weights.view(-1, *([1] * y.dim()))
        return (y.view(plane_weights.numel(), -1, *y.shape[1:]) * pw).sum(0)

    @staticmethod
    def rescale(y: Tensor, x_range: Tensor | float, compensation) -> Tensor:
        """``y`` times the DAC range (per sample when it is a vector) and the drift
        compensation factor (a number, or per column already shaped against ``y``)."""
        r = x_range
        if isinstance(r, Tensor) and r.dim() == 1:
            r = r.view(-1, *([1] * (y.dim() - 1)))
        if compensation is not None:
            r = r * compensation
        return y * r if y.requires_grad else y.mul_(r)

    def extra_repr(self) -> str:
        return f"encoding={self.encoding}, slices={self.slices}"
