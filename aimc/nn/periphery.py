"""The periphery of an analog layer's tiles: DAC, ADC, digital accumulation, drift compensation.

``Periphery`` is mixed into :class:`aimc.nn.base.AnalogLayerBase` (one level, no stack): it holds
the converter and read-out steps of the forward, which use the layer's buffers (``dac_range``,
``adc_range``, ``weight_scale``), its config and its generators.
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import torch
from torch import Tensor

from aimc import functional as AF
from aimc.nn.seeds import N_RNG_CHUNKS, mix_seed
from aimc.training import input_range
from device_models.converters import adc_readout, bit_planes, quantize_dac

__all__ = ["Periphery"]

log = logging.getLogger("aimc.nn.base")

_N_REF = 32  # reference vectors of the drift-compensation read


class Periphery:
    """DAC, per-tile ADC, shift-add and row-tile accumulation, drift compensation."""

    def _adc_needs_range(self) -> bool:
        return self.config.adc.bits is not None or self.config.adc.noise > 0

    def _dac_needs_range(self) -> bool:
        return self.config.dac.bits is not None or self._adc_needs_range()

    # ------------------------------------------------------------------ converters
    def _dac(self, x: Tensor) -> tuple[Tensor, Tensor | float, Optional[Tensor]]:
        """Normalize/quantize inputs. Returns ``(xq, range, plane_weights)``; bit-serial inputs
        come back as ``[P * B, ...]`` planes with their shift-add weights."""
        dac = self.config.dac
        if not self._dac_needs_range():
            return x, 1.0, None
        if self._calib == "dac" and dac.range_mode == "calibrated":  # recording statistics only
            self._observe("dac", AF.percentile_abs(x, dac.percentile))
            return x, 1.0, None
        r, r_b = self._dac_range(x, auto_calibrate=True)
        if dac.bits is None:
            return x / r_b, r, None
        lo = -dac.levels if dac.signed else 0
        if x.requires_grad or getattr(r_b, "requires_grad", False):  # clamp, then round_ste
            xq = quantize_dac(x, r_b, dac.levels, dac.signed)
        else:  # the same values, in place on one copy
            xq = (x * (dac.levels / r_b)).clamp_(lo, dac.levels).round_().div_(dac.levels)
        if not dac.bit_serial:
            return xq, r, None
        codes = torch.round(xq.detach() * dac.levels)
        planes = bit_planes(codes, dac.cycles)  # [P, B, ...]
        if xq.requires_grad:  # straight-through: gradient reaches xq via the top plane
            top = 2.0 ** (dac.cycles - 1) / dac.levels
            planes = planes.clone()
            planes[-1] = planes[-1] + (xq - xq.detach()) / top
        pw = torch.tensor(
            [2.0**j / dac.levels for j in range(dac.cycles)], dtype=x.dtype, device=x.device
        )
        return planes.flatten(0, 1), r, pw

    def _dac_range(self, x: Tensor, auto_calibrate: bool) -> tuple[Tensor | float, Tensor | float]:
        """The DAC full scale in input units, and the same broadcastable against ``x``: per
        sample (``"dynamic"``) or the calibrated range (times a learned gain). An uncalibrated
        layer sets it from ``x`` when ``auto_calibrate``, else just uses ``max |x|``."""
        dac = self.config.dac
        if dac.range_mode == "dynamic":
            r = x.detach().abs().flatten(1).amax(1) if x.dim() > 1 else x.detach().abs().amax()
            r = torch.where(r > 0, r, torch.ones_like(r))
            return r, (r.view(-1, *([1] * (x.dim() - 1))) if x.dim() > 1 else r)
        if self._dac_range_value <= 0:
            if not auto_calibrate:
                r = x.detach().abs().amax().clamp_min(1e-30)
                return r, r
            self.dac_range.fill_(max(AF.percentile_abs(x, dac.percentile), 1e-12))
            log.info("%s: DAC range auto-calibrated on the first batch", self.layer_name)
        r = input_range(self)
        if r is self.dac_range:  # a plain calibrated range: use the cached Python float
            r = self._dac_range_value
        return r, r

    def _observe(self, key: str, value: float) -> None:
        self._calib_stats[key] = max(self._calib_stats.get(key, 0.0), value)

    def _calibrate_adc(self, parts: list[Tensor], s_dim: int) -> None:
        """Record (``aimc.calibrate``) or set (first batch of an uncalibrated layer) the ADC
        full scale of each slice from the partial sums of all row tiles, ``parts``."""
        adc = self.config.adc
        if adc.range_mode != "calibrated" or not self._adc_needs_range():
            return
        if self._calib != "adc" and self._adc_range_min > 0:
            return
        vals = []
        for s in range(parts[0].shape[s_dim]):
            flat = [part.detach().select(s_dim, s).reshape(-1) for part in parts]
            vals.append(
                AF.percentile_abs(torch.cat(flat) if len(flat) > 1 else flat[0], adc.percentile)
            )
        if self._calib == "adc":
            for s, val in enumerate(vals):
                self._observe(f"adc{s}", val)
        else:
            self.adc_range.copy_(torch.tensor([max(v, 1e-12) for v in vals]))
            log.info("%s: ADC range auto-calibrated on the first batch", self.layer_name)

    def _adc_full_scale(self, p: Tensor, s_dim: int) -> Tensor | float:
        """ADC full scale per slice, shaped to broadcast along ``s_dim`` of ``p`` (a Python
        float when it is one number)."""
        adc, g = self.config.adc, self.geometry
        if adc.range_mode == "max":
            per_row = 1.0 if self._differential else 1.0 + self._g_offset
            return adc.range_fraction * g.row_block * per_row
        if g.slices == 1:
            return self._adc_range_min * adc.range_fraction
        fs = self.adc_range * adc.range_fraction
        shape = [1] * p.dim()
        shape[s_dim] = -1
        return fs.view(shape)

    def _tile_read(self, rows: Tensor, w: Tensor) -> tuple[Tensor, bool]:
        """Partial sums of ``rows`` ``[M, Gr, K]`` on the tiles ``w`` (:func:`AF.tile_matmul`),
        and whether they come back in ADC LSB units with the output noise already added.

        That fused read applies to inference reads with ADC output noise, an ADC of fixed bits
        and a full scale already known as one number: the noise is drawn first, in LSB units,
        and the matmul accumulates ``currents / LSB`` into it (one GEMM, no separate add and
        divide passes over the partial sums). Otherwise the currents come back as they are."""
        adc = self.config.adc
        fused = (
            adc.noise > 0
            and adc.bits is not None
            and self._calib is None
            and not (torch.is_grad_enabled() and (rows.requires_grad or w.requires_grad))
        )
        if fused and adc.range_mode == "calibrated":
            fused = self.geometry.slices == 1 and self._adc_range_min > 0
        if not fused:
            return AF.tile_matmul(rows, w), False
        fs = self._adc_full_scale(w, 0)  # one number here (``w`` only stands in for the shape)
        shape = (*w.shape[:3], rows.shape[0], w.shape[-1])
        gens = [self._generator("adc", i) for i in range(N_RNG_CHUNKS)]
        noise = AF.randn_chunked(shape, gens, w.device, w.dtype, sigma=adc.noise * adc.levels)
        return AF.tile_matmul(rows, w, add=noise, alpha=adc.levels / fs), True

    def _accumulate(
        self,
        p: Tensor,
        dims: dict[str, int],
        scale: Tensor,
        xsum: Optional[Tensor] = None,
        calibrated: bool = False,
        out: Optional[Tensor] = None,
        lsb_units: bool = False,
    ) -> Tensor:
        """ADC per tile column, then the digital shift-add over slices, rescale and the sum of
        row tiles. ``p`` holds partial sums with axes named by ``dims`` (``s``, ``g``, ``rt``,
        ``n``); ``xsum`` (offset encoding) is the sum of each row tile's inputs, shaped like
        ``p`` without the slice and column axes kept as size 1. ``calibrated``: the caller
        already ran :meth:`_calibrate_adc` on all row tiles. ``out``: a running sum to add the
        result to (in place when no gradient is needed). ``lsb_units``: ``p`` comes from the
        fused read of :meth:`_tile_read` (in LSB units, noise added)."""
        adc, nd = self.config.adc, p.dim()
        unit = None  # an LSB still to multiply in
        if not calibrated and not lsb_units:
            self._calibrate_adc([p], dims["s"])

        def place(t: Tensor, names: tuple[str, ...]) -> Tensor:
            shape = [1] * nd
            for name, size in zip(names, t.shape):
                shape[dims[name]] = size
            return t.reshape(shape)

        if lsb_units or (self._adc_needs_range() and self._calib != "adc"):
            fs = self._adc_full_scale(p, dims["s"])
            if adc.noise > 0 and not lsb_units:  # output noise, std relative to the full scale
                gens = [self._generator("adc", i) for i in range(N_RNG_CHUNKS)]
                noise = AF.randn_chunked(p.shape, gens, p.device, p.dtype)
                if isinstance(fs, float) and not p.requires_grad:  # one fused pass
                    p = p.add_(noise, alpha=fs * adc.noise)
                else:
                    p = p + noise * (fs * adc.noise)
            if adc.bits is not None and self._saturation is not None:
                # aimc.track_adc_saturation is counting reads that round beyond the full scale
                bound = adc.levels + 0.5 if lsb_units else fs * (1.0 + 0.5 / adc.levels)
                self._saturation[0] += int((p.detach().abs() > bound).sum())
                self._saturation[1] += p.numel()
            if adc.bits is not None and p.requires_grad:  # clamp, then round_ste
                p = adc_readout(p, fs, adc.levels)
            elif adc.bits is not None:  # the same values, in place; codes times the LSB
                lsb = fs / adc.levels
                p = p if lsb_units else p.div_(lsb)
                p = p.round_().clamp_(-adc.levels, adc.levels)
                if xsum is None:
                    unit = lsb  # folded into the (small) digital rescale below
                else:
                    p = p.mul_(lsb)
        m = self.config.mapping
        coef = AF.slice_coefficients(m.encoding, m.weight_bits, m.slices, p.dtype, p.device)
        coef = place(coef, ("s",))
        if unit is not None and p.shape[dims["s"]] > 1:
            coef, unit = coef * unit, None
        if p.shape[dims["s"]] == 1 and xsum is None:
            y = p.squeeze(dims["s"])
        else:
            if xsum is not None:
                p = p - self._g_offset * xsum
            y = (p * coef).sum(dims["s"])
            if xsum is not None:
                y = 2.0 * y - xsum.squeeze(dims["s"])
        rt = dims["rt"] - (1 if dims["rt"] > dims["s"] else 0)
        sc = scale.squeeze(2)  # [Gr, n_rt, N]
        shape = [1] * y.dim()
        for name, size in zip(("g", "rt", "n"), sc.shape):
            d = dims[name] - (1 if dims[name] > dims["s"] else 0)
            shape[d] = size
        sc = sc.reshape(shape)
        if unit is not None:
            sc = sc * (unit if isinstance(unit, float) else unit.reshape(()))
        if y.requires_grad:
            return (y * sc).sum(rt) if out is None else out + (y * sc).sum(rt)
        # sum of the row tiles' rescaled partial sums: one multiply-accumulate pass per tile
        start = 0
        if out is None:
            out, start = torch.mul(y.select(rt, 0), sc.select(rt, 0)), 1
        for i in range(start, y.shape[rt]):
            out.addcmul_(y.select(rt, i), sc.select(rt, i))
        return out

    # ------------------------------------------------------------------ drift compensation
    def _compensation(self, t: float) -> Optional[Tensor | float]:
        cfg = self.config
        if not cfg.drift_compensation or not cfg.device.drifts or self.training:
            return None
        key = ("comp", t, self._buffer_scalar("adc_range", lambda b: tuple(b.tolist())))
        if key not in self._cache:
            # The chip keeps the reference outputs read right after programming and fits the
            # gain that maps today's reads onto them: f = <ref0, ref0> / <ref0, ref_t>. Unlike a
            # ratio of sums of |outputs|, zero-mean read and relaxation noise in ref_t does not
            # bias it (E|a + n| > |a| made that ratio too small).
            xr = self._reference_inputs()
            ref0 = self._reference_read(xr, 0.0)
            ref_t = self._reference_read(xr, t)
            if cfg.drift_compensation_mode == "global":
                den = float((ref0 * ref_t).sum())
                self._cache[key] = float((ref0 * ref0).sum()) / den if den > 0 else 1.0
            else:
                num, den = (ref0 * ref0).sum(1), (ref0 * ref_t).sum(1)  # [Gr, N]
                self._cache[key] = torch.where(
                    den > 0, num / den.clamp_min(1e-30), torch.ones_like(num)
                )
        return self._cache[key]

    def _reference_inputs(self) -> Tensor:
        g = self.geometry
        gen = torch.Generator(device="cpu").manual_seed(mix_seed(int(self.program_seed[0]), 7))
        signs = torch.randint(0, 2, (_N_REF, g.groups, g.in_rows), generator=gen) * 2.0 - 1.0
        signs = signs.to(self.weight.device, self.weight.dtype)
        if not self._adc_needs_range():
            return signs
        # Scale the reference so its largest ideal partial sum sits at half the ADC full scale:
        # the read then neither saturates nor drowns in the LSB.
        mean, _ = self._read_mean_std(0.0)
        peak = AF.tile_matmul(signs, mean).abs().amax().clamp_min(1e-12)
        fs = self._adc_full_scale(mean, 0)
        fs = fs if isinstance(fs, float) else float(fs.min())
        alpha = min(1.0, 0.5 * fs / float(peak))
        levels = self.config.dac.levels
        if levels:
            alpha = max(1.0, math.floor(alpha * levels)) / levels
        return signs * alpha

    @torch.no_grad()
    def _reference_read(self, xr: Tensor, t: float) -> Tensor:
        """The read-out of reference inputs ``xr`` ``[M, groups, in_rows]`` at time ``t``."""
        w = self._read_tiles(t)
        p = AF.tile_matmul(xr, w)
        xsum = None
        if not self._differential:
            xsum = AF.tile_matmul(xr, torch.ones_like(w[:1, ..., :1]))
        return self._accumulate(p, {"s": 0, "g": 1, "rt": 2, "n": 4}, self.weight_scale, xsum)

    # ------------------------------------------------------------------ cost-model hook
    @torch.no_grad()
    def normalized_input(self, x: Tensor) -> Tensor:
        """The DAC's normalized, quantized input (values in ``[-1, 1]``), before bit planes."""
        dac = self.config.dac
        if not self._dac_needs_range():
            return x
        _, r_b = self._dac_range(x, auto_calibrate=False)
        if dac.bits is None:
            return x / r_b
        return quantize_dac(x, r_b, dac.levels, dac.signed)
