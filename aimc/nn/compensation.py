"""Drift compensation of a layer: the reference reads that measure its gain.

Right after programming and at read time t the layer reads the same fixed reference inputs
(``N_REF`` random sign vectors from its seed, scaled to half the ADC full scale) through its
own tiles, ADC and accumulation; :func:`~aimc.tile.compensation.drift_gain` maps the read at t
onto the read at programming. A hardware-aware train forward applies the same rule to the
expected tiles of its device draw (:meth:`DriftCompensation.train_drift_gain`).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from aimc import functional as AF
from aimc.tile.adc import IdentityADC
from aimc.tile.compensation import drift_gain, reference_amplitude, reference_signs

__all__ = ["DriftCompensation"]


class DriftCompensation:
    """The drift-compensation gain of an analog layer (a part of
    :class:`~aimc.nn.base.AnalogLayerBase`; uses its ``config``, ``geometry``, ``weight``,
    stages and ``_read_out``)."""

    def _compensation(self, t: float) -> Optional[Tensor | float]:
        """The drift-compensation gain at ``t`` (kept until reprogramming or a new range)."""
        cfg = self.config
        if not cfg.drift_compensation or not cfg.device.drifts or self.training:
            return None
        key = ("comp", t, self.adc.range_key)
        return self.crossbar.cached(key, lambda: self._measure_drift_gain(t))

    def _measure_drift_gain(self, t: float) -> Tensor | float:
        xr = self._reference_inputs()
        with self.crossbar.draw_scope(0):  # reference reads: the same draws whenever redone
            ref0 = self._reference_read(xr, 0.0)
        with self.crossbar.draw_scope(1):
            ref_t = self._reference_read(xr, t)
        return drift_gain(ref0, ref_t, self.config.drift_compensation_mode)

    @torch.no_grad()
    def train_drift_gain(self, w0: Tensor, wt: Tensor, scale: Tensor) -> Tensor | float:
        """The drift-compensation gain of a hardware-aware training read: the eval forward's
        rule (:func:`~aimc.tile.compensation.drift_gain`) on the ideal read-outs of the same
        reference inputs through the expected tiles at programming (``w0``) and at the read
        time (``wt``), with weight scales ``scale``."""
        g = self.geometry
        xr = reference_signs(int(self.crossbar.seed[0]), g.groups, g.in_rows, w0)
        xsum = None
        if not self.crossbar.differential:
            xsum = AF.tile_matmul(xr, torch.ones_like(w0[:1, ..., :1]))
        dims = {"s": 0, "g": 1, "rt": 2, "n": 4}
        ref0, ref_t = (
            self.accumulate(AF.tile_matmul(xr, w), None, dims, scale, xsum) for w in (w0, wt)
        )
        return drift_gain(ref0, ref_t, self.config.drift_compensation_mode)

    def _reference_inputs(self) -> Tensor:
        g = self.geometry
        signs = reference_signs(int(self.crossbar.seed[0]), g.groups, g.in_rows, self.weight)
        if isinstance(self.adc, IdentityADC):
            return signs
        mean, _ = self.crossbar.read_mean_std(0.0)
        mean, _, rows = self.crossbar.split_reads(mean, self.crossbar.weight_scale, signs)
        peak = AF.tile_matmul(rows, mean).abs().amax().clamp_min(1e-12)
        fs = self.adc.scale(mean, 0)
        fs = fs if isinstance(fs, float) else float(fs.min())
        return signs * reference_amplitude(float(peak), fs, self.config.dac.levels)

    @torch.no_grad()
    def _reference_read(self, xr: Tensor, t: float) -> Tensor:
        """The read-out ``[groups, M, cols]`` of reference inputs ``xr`` at time ``t``."""
        w, scale, xr = self.crossbar.split_reads(
            self.crossbar.read(t), self.crossbar.weight_scale, xr
        )
        p = AF.tile_matmul(xr, w)
        xsum = None
        if not self.crossbar.differential:
            xsum = AF.tile_matmul(xr, torch.ones_like(w[:1, ..., :1]))
        dims = {"s": 0, "g": 1, "rt": 2, "n": 4}  # observed: references never set a range
        return self._read_out(p, dims, scale, xsum, observed=True)
