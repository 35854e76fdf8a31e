"""Shared sequencing of the analog layers: programming, drift, calibration and the forward.

A layer owns its digital master weights (``weight``, ``bias``: real parameters) and, as buffers,
the programmed device state of its tiles, the weight scales, the DAC/ADC ranges, the drift time
and the seed. Subclasses only say how their input becomes tile rows (``_tiles_forward``) and how
their weight becomes a ``[groups, rows, cols]`` matrix (``weight_matrix``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import zlib
from typing import Any, Optional

import torch
from torch import Tensor, nn

from aimc import functional as AF
from aimc.config import AnalogConfig
from aimc.tile.geometry import TileGeometry
from aimc.training import init_training_state, input_range, perturb_train_tiles
from device_models.converters import adc_readout, bit_planes, quantize_dac

__all__ = ["AnalogLayerBase", "mix_seed"]

log = logging.getLogger(__name__)

_N_RNG_CHUNKS = 4  # fixed, so results never depend on the thread count
_DEFER_PROGRAM = contextvars.ContextVar("aimc_defer_program", default=False)


@contextlib.contextmanager
def deferred_programming():
    """Construct analog layers without programming them (``from_digital`` programs once the
    real weights are in)."""
    token = _DEFER_PROGRAM.set(True)
    try:
        yield
    finally:
        _DEFER_PROGRAM.reset(token)


_N_REF = 32  # reference vectors of the drift-compensation read


def mix_seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed (splitmix64 finalizer); stable across runs."""
    z = 0x9E3779B97F4A7C15
    for p in parts:
        z = (z ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
    return z & 0x7FFFFFFFFFFFFFFF


def name_seed(seed: int, name: str) -> int:
    """The seed of the layer called ``name`` in a model programmed with ``seed``."""
    return mix_seed(seed, zlib.crc32(name.encode()))


def _f64_bits(values: list[float]) -> Tensor:
    return torch.tensor(values, dtype=torch.float64).view(torch.int64)


@torch.no_grad()
def _copy_parameters(src: nn.Module, dst: nn.Module) -> None:
    dst.weight.copy_(src.weight)
    if src.bias is not None:
        dst.bias.copy_(src.bias)


class AnalogLayerBase(nn.Module):
    """Base of ``AnalogLinear``, ``AnalogConv1d`` and ``AnalogConv2d`` (not used directly)."""

    config: AnalogConfig
    geometry: TileGeometry

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _resolve_config(config: Optional[AnalogConfig]) -> AnalogConfig:
        if config is None:
            return AnalogConfig()
        if not isinstance(config, AnalogConfig):
            raise TypeError(f"config must be an aimc.AnalogConfig, got {type(config).__name__}")
        return config

    def _init_analog(self, config: AnalogConfig, geometry: TileGeometry) -> None:
        self.config = config
        self.geometry = geometry
        self.layer_name = type(self).__name__
        dev, dt = self.weight.device, self.weight.dtype
        g = geometry
        self.register_buffer(
            "weight_scale", torch.ones(g.groups, g.n_row_tiles, 1, g.out_cols, device=dev, dtype=dt)
        )
        self.register_buffer("dac_range", torch.zeros((), device=dev, dtype=dt))
        self.register_buffer("adc_range", torch.zeros(g.slices, device=dev, dtype=dt))
        self.register_buffer("t_bits", _f64_bits([0.0]).to(dev))
        self.register_buffer(
            "program_seed", torch.tensor([config.seed], dtype=torch.int64, device=dev)
        )
        self.register_buffer("weight_fingerprint", torch.zeros(3, dtype=torch.int64, device=dev))
        layout = [
            g.rows,
            g.cols,
            g.slices,
            g.cols_per_weight,
            g.groups,
            g.in_rows,
            g.out_cols,
            g.row_block,
        ]
        self.register_buffer("layout", torch.tensor(layout, dtype=torch.int64, device=dev))
        self._state_keys: tuple[str, ...] = ()
        self._calib: Optional[str] = None  # None | "dac" | "adc" while aimc.calibrate runs
        self._calib_stats: dict[str, float] = {}
        self._programmed_at: Any = None
        self._cache: dict[str, Any] = {}
        self._gens: dict[str, Any] = {}
        self._scalars: dict[Any, Any] = {}
        self._saturation: Optional[list[int]] = None  # [saturated, all] ADC reads
        self._train_compensation: Any = None  # drift factor of a train forward's device read
        if not _DEFER_PROGRAM.get():
            self.program()
        init_training_state(self)  # e.g. the learned DAC range gain

    # ------------------------------------------------------------------ conversion
    _FLOAT_MODULE: type[nn.Module]

    @staticmethod
    def _ctor_args(module: nn.Module) -> tuple:
        """The positional constructor arguments (torch order) describing ``module``."""
        raise NotImplementedError

    @classmethod
    def from_digital(
        cls, module: nn.Module, config: Optional[AnalogConfig] = None, seed: Optional[int] = None
    ):
        """An analog layer with ``module``'s hyper-parameters and weights, programmed with a
        device draw from ``seed`` (default: ``config.seed``)."""
        if not isinstance(module, cls._FLOAT_MODULE):
            raise TypeError(
                f"{cls.__name__}.from_digital expects an {cls._FLOAT_MODULE.__name__}, "
                f"got {type(module).__name__}"
            )
        w = module.weight
        with deferred_programming():  # program once, with the real weights
            layer = cls(*cls._ctor_args(module), config, device=w.device, dtype=w.dtype)
        _copy_parameters(module, layer)
        layer.program(seed)
        return layer

    @classmethod
    def from_float(
        cls, module: nn.Module, config: Optional[AnalogConfig] = None, seed: Optional[int] = None
    ):
        """Alias of :meth:`from_digital` (the torch.ao name)."""
        return cls.from_digital(module, config, seed)

    def to_digital(self) -> nn.Module:
        """The plain torch layer with this layer's hyper-parameters and digital master weights."""
        w = self.weight
        module = self._FLOAT_MODULE(*self._ctor_args(self), device=w.device, dtype=w.dtype)
        _copy_parameters(self, module)
        return module

    def to_float(self) -> nn.Module:
        """Alias of :meth:`to_digital` (the torch.ao name)."""
        return self.to_digital()

    # ------------------------------------------------------------------ abstract parts
    def weight_matrix(self, weight: Optional[Tensor] = None) -> Tensor:
        """The weight as ``[groups, in_rows, out_cols]`` (rows are inputs)."""
        raise NotImplementedError

    def _digital_forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _check_input(self, x: Tensor) -> None:
        raise NotImplementedError

    def _tiles_forward(self, xq: Tensor, w: Tensor) -> Tensor:
        """Normalized outputs of the tiles for normalized (quantized) inputs ``xq``."""
        raise NotImplementedError

    def mvm_count(self, x: Tensor) -> int:
        """Matrix-vector products (input vectors per group) one forward of ``x`` runs."""
        raise NotImplementedError

    def _rows_of(self, xn: Tensor) -> Tensor:
        """Per-MVM tile-row inputs ``[M, groups, in_rows]`` of normalized inputs ``xn``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ small facts
    @property
    def t_s(self) -> float:
        """Time since programming (s) at which the layer is read."""
        return self._buffer_scalar("t_bits", lambda b: float(b.cpu().view(torch.float64)[0]))

    def _buffer_scalar(self, name: str, read) -> float:
        """``read(buffer)`` as a Python float, recomputed only when the buffer was replaced or
        modified in place (its ``_version``): no device sync on every forward."""
        buf = getattr(self, name)
        key = (name, read.__code__, buf.data_ptr(), buf._version)
        hit = self._scalars.get((name, read.__code__))
        if hit is not None and hit[0] == key:
            return hit[1]
        value = read(buf)
        self._scalars[(name, read.__code__)] = (key, value)
        return value

    @property
    def _dac_range_value(self) -> float:
        return self._buffer_scalar("dac_range", lambda b: float(b))

    @property
    def _adc_range_min(self) -> float:
        return self._buffer_scalar("adc_range", lambda b: float(b.min()))

    @property
    def programmed(self) -> bool:
        return bool(self._state_keys)

    @property
    def _g_norm(self) -> float:
        dev = self.config.device
        return float(dev.g_max - dev.g_min)

    @property
    def _g_offset(self) -> float:
        """``g_min / (g_max - g_min)``: the normalized current of an 'off' device."""
        dev = self.config.device
        return float(dev.g_min) / self._g_norm

    @property
    def _differential(self) -> bool:
        return self.config.mapping.encoding == "differential"

    def _coef(self, like: Tensor) -> Tensor:
        m = self.config.mapping
        if m.weight_bits is None or m.slices == 1:
            return torch.ones(1, dtype=like.dtype, device=like.device)
        b, q_max = m.bits_per_slice, float(2**m.magnitude_bits - 1)
        vals = [(2.0**b - 1) * 2.0 ** (b * s) / q_max for s in range(m.slices)]
        return torch.tensor(vals, dtype=like.dtype, device=like.device)

    def _adc_needs_range(self) -> bool:
        return self.config.adc.bits is not None or self.config.adc.noise > 0

    def _dac_needs_range(self) -> bool:
        return self.config.dac.bits is not None or self._adc_needs_range()

    def _generator(self, kind: str, index: int = 0) -> torch.Generator:
        key = f"{kind}{index}"
        dev = self.weight.device
        gen = self._gens.get(key)
        if gen is None or gen.device != dev:
            gen = torch.Generator(device=dev)
            gen.manual_seed(mix_seed(int(self.program_seed[0]), zlib.crc32(key.encode())))
            self._gens[key] = gen
        return gen

    def __getstate__(self) -> dict[str, Any]:
        # copies and pickles drop generators and caches: a copy restarts its random sequences
        # from ``program_seed`` and recomputes its reads
        state = self.__dict__.copy()
        state["_gens"], state["_cache"], state["_scalars"] = {}, {}, {}
        return state

    def _read_generators(self) -> list[torch.Generator]:
        return [self._generator("read", i) for i in range(_N_RNG_CHUNKS)]

    # ------------------------------------------------------------------ mapping and programming
    def _normalized_tiles(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(v, sign, scale)``: sliced device values, weight sign and scales of ``weight``."""
        g, m = self.geometry, self.config.mapping
        wt = AF.to_tile_layout(self.weight_matrix(weight), g.row_block)
        scale = AF.weight_scales(wt, m.weight_scaling, g.weights_per_col_tile)
        wn = wt / scale
        v, _ = AF.slice_weights(wn, m.encoding, m.weight_bits, m.slices)
        return v, torch.sign(wn.detach()), scale

    @torch.no_grad()
    def program(self, seed: Optional[int] = None) -> None:
        """Program the current weights onto the tiles (a new device draw), and read at t = 0.

        Args:
            seed: seed of this programming's draws (and of later read noise); default: the
                layer's current seed.
        """
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"program seed must be an int >= 0, got {seed!r}")
            self.program_seed.fill_(seed)
        self._gens.clear()
        if not bool(torch.isfinite(self.weight).all()):
            raise ValueError(f"{self.layer_name}.weight contains NaN or inf; cannot program it")
        dev = self.config.device
        v, sign, scale = self._normalized_tiles(self.weight.detach())
        gmin, dg = float(dev.g_min), self._g_norm
        if self._differential:
            targets = torch.stack([gmin + dg * v * (sign > 0), gmin + dg * v * (sign < 0)])
        else:
            targets = (gmin + dg * v).unsqueeze(0)
        state = dev.program(targets, generator=self._generator("program"))
        for key in self._state_keys:
            if key not in state:
                delattr(self, f"dev_{key}")
        for key, value in state.items():
            self.register_buffer(f"dev_{key}", value)
        self._state_keys = tuple(state)
        self.weight_scale.copy_(scale)
        self.t_bits.copy_(_f64_bits([0.0]))
        self._record_fingerprint()
        self._cache.clear()

    def _fingerprint(self) -> Tensor:
        w = self.weight.detach().double().flatten()
        ramp = torch.linspace(-1.0, 1.0, w.numel(), dtype=torch.float64, device=w.device)
        return torch.stack([w.sum(), (w * w).sum(), (w * ramp).sum()]).view(torch.int64)

    def _record_fingerprint(self) -> None:
        self.weight_fingerprint.copy_(self._fingerprint())
        self._programmed_at = (self.weight.data_ptr(), self.weight._version)

    def _ensure_programmed(self) -> None:
        at = (self.weight.data_ptr(), self.weight._version)
        if self.programmed and at == self._programmed_at:
            return
        if self.programmed and torch.equal(self._fingerprint(), self.weight_fingerprint):
            self._programmed_at = at
            return
        t = self.t_s
        log.debug("%s: weights changed since programming; reprogramming", self.layer_name)
        self.program()
        if t:
            self.drift_to(t)

    @torch.no_grad()
    def drift_to(self, t_s: float) -> None:
        """Read the layer ``t_s`` seconds after programming from now on."""
        if isinstance(t_s, bool) or not isinstance(t_s, (int, float)):
            raise TypeError(f"drift time t must be a number of seconds, got {t_s!r}")
        if not math.isfinite(t_s) or t_s < 0:
            raise ValueError(f"drift time t must be a finite number of seconds >= 0, got {t_s}")
        self.t_bits.copy_(_f64_bits([float(t_s)]).to(self.t_bits.device))
        self._cache.clear()

    def device_state(self) -> dict[str, Tensor]:
        """The programmed per-device state (``"g"``: conductances in µS, ...), tile layout
        ``[pair, S, groups, row tiles, rows, cols]``."""
        return {k: getattr(self, f"dev_{k}") for k in self._state_keys}

    # ------------------------------------------------------------------ reading the tiles
    def _read_mean_std(self, t: float) -> tuple[Tensor, Optional[Tensor]]:
        key = ("mean", t)
        if key not in self._cache:
            dev, state = self.config.device, self.device_state()
            g = dev.conductance(state, t)
            std = dev.read_noise_std(state, t)
            if self._differential:
                mean = (g[0] - g[1]) / self._g_norm
                if std is not None:
                    std = std.expand_as(g)
                    std = torch.sqrt(std[0] ** 2 + std[1] ** 2) / self._g_norm
            else:
                mean = g[0] / self._g_norm
                if std is not None:
                    std = std.expand_as(g)[0] / self._g_norm
            if std is not None and not bool((std > 0).any()):
                std = None
            self._cache[key] = (mean.contiguous(), std)
        return self._cache[key]

    def _read_tiles(self, t: float) -> Tensor:
        """One noisy read of the normalized tile weights at time ``t`` (per forward, or once per
        drift time when ``config.read_noise == "drift"``)."""
        mean, std = self._read_mean_std(t)
        if std is None:
            return mean
        key = ("read", t)
        if self.config.read_noise == "drift" and key in self._cache:
            return self._cache[key]
        w = AF.randn_chunked(
            mean.shape, self._read_generators(), mean.device, mean.dtype, std=std, mean=mean
        )
        if self.config.read_noise == "drift":
            self._cache[key] = w
        return w

    def _train_tiles(self) -> tuple[Tensor, Tensor]:
        v, sign, scale = self._normalized_tiles(self.weight)
        w = v * sign if self._differential else v + self._g_offset
        return perturb_train_tiles(self, w), scale

    # ------------------------------------------------------------------ converters
    def _dac(self, x: Tensor) -> tuple[Tensor, Tensor | float, Optional[Tensor]]:
        """Normalize/quantize inputs. Returns ``(xq, range, plane_weights)``; bit-serial inputs
        come back as ``[P * B, ...]`` planes with their shift-add weights."""
        dac = self.config.dac
        if not self._dac_needs_range():
            return x, 1.0, None
        if dac.range_mode == "dynamic":
            r = x.detach().abs().flatten(1).amax(1) if x.dim() > 1 else x.detach().abs().amax()
            r = torch.where(r > 0, r, torch.ones_like(r))
            r_b = r.view(-1, *([1] * (x.dim() - 1))) if x.dim() > 1 else r
        else:
            if self._calib == "dac":  # recording input statistics only
                self._observe("dac", AF.percentile_abs(x, dac.percentile))
                return x, 1.0, None
            if self._dac_range_value <= 0:
                self.dac_range.fill_(max(AF.percentile_abs(x, dac.percentile), 1e-12))
                log.info("%s: DAC range auto-calibrated on the first batch", self.layer_name)
            r = r_b = input_range(self)
            if r is self.dac_range:  # a plain calibrated range: use the cached Python float
                r = r_b = self._dac_range_value
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

    def _accumulate(
        self,
        p: Tensor,
        dims: dict[str, int],
        scale: Tensor,
        xsum: Optional[Tensor] = None,
        calibrated: bool = False,
        out: Optional[Tensor] = None,
    ) -> Tensor:
        """ADC per tile column, then the digital shift-add over slices, rescale and the sum of
        row tiles. ``p`` holds partial sums with axes named by ``dims`` (``s``, ``g``, ``rt``,
        ``n``); ``xsum`` (offset encoding) is the sum of each row tile's inputs, shaped like
        ``p`` without the slice and column axes kept as size 1. ``calibrated``: the caller
        already ran :meth:`_calibrate_adc` on all row tiles. ``out``: a running sum to add the
        result to (in place when no gradient is needed)."""
        adc, nd = self.config.adc, p.dim()
        unit = None  # an LSB still to multiply in
        if not calibrated:
            self._calibrate_adc([p], dims["s"])

        def place(t: Tensor, names: tuple[str, ...]) -> Tensor:
            shape = [1] * nd
            for name, size in zip(names, t.shape):
                shape[dims[name]] = size
            return t.reshape(shape)

        if self._adc_needs_range() and self._calib != "adc":
            fs = self._adc_full_scale(p, dims["s"])
            if adc.noise > 0:  # additive output noise, std relative to the full scale
                gens = [self._generator("adc", i) for i in range(_N_RNG_CHUNKS)]
                noise = AF.randn_chunked(p.shape, gens, p.device, p.dtype)
                if isinstance(fs, float) and not p.requires_grad:  # one fused pass
                    p = p.add_(noise, alpha=fs * adc.noise)
                else:
                    p = p + noise * (fs * adc.noise)
            if adc.bits is not None and self._saturation is not None:
                # aimc.track_adc_saturation is counting reads that round beyond the full scale
                over = p.detach().abs() > fs * (1.0 + 0.5 / adc.levels)
                self._saturation[0] += int(over.sum())
                self._saturation[1] += p.numel()
            if adc.bits is not None and p.requires_grad:  # clamp, then round_ste
                p = adc_readout(p, fs, adc.levels)
            elif adc.bits is not None:  # the same values, in place; codes times the LSB
                lsb = fs / adc.levels
                p = p.div_(lsb).round_().clamp_(-adc.levels, adc.levels)
                if xsum is None:
                    unit = lsb  # folded into the (small) digital rescale below
                else:
                    p = p.mul_(lsb)
        coef = place(self._coef(p), ("s",))
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
            ref0 = self._reference_read(0.0)
            ref_t = self._reference_read(t)
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
    def _reference_read(self, t: float) -> Tensor:
        xr = self._reference_inputs()
        w = self._read_tiles(t)
        p = AF.tile_matmul(xr, w)
        xsum = None
        if not self._differential:
            xsum = AF.tile_matmul(xr, torch.ones_like(w[:1, ..., :1]))
        return self._accumulate(p, {"s": 0, "g": 1, "rt": 2, "n": 4}, self.weight_scale, xsum)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        """Forward of a batched input (subclasses reshape other ranks around it)."""
        hw_aware = self.config.training.hardware_aware
        if self.training and not hw_aware and self._calib is None:
            return self._digital_forward(x)
        # a sum is one cheap pass; only a non-finite sum needs the elementwise check
        if not bool(torch.isfinite(x.detach().sum())) and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{self.layer_name}: input contains NaN or inf")
        if self._calib == "dac":
            self._dac(x)
            return self._digital_forward(x)
        if self.training:
            self._train_compensation = None
            w, scale = self._train_tiles()
            comp = self._train_compensation  # set by device weight noise that drifts
        else:
            with torch.no_grad():
                self._ensure_programmed()
                t = self.t_s
                w = self._read_tiles(t)
                comp = self._compensation(t)
            scale = self.weight_scale
        xq, r, pw = self._dac(x)
        y = self._tiles_forward(xq, w, scale, pw)
        if isinstance(r, Tensor) and r.dim() == 1:
            r = r.view(-1, *([1] * (y.dim() - 1)))
        if isinstance(comp, Tensor):
            r = r * self._place_columns(comp, y)
        elif comp is not None:
            r = r * comp
        y = y * r if y.requires_grad else y.mul_(r)
        return self._add_bias(y)

    def _place_columns(self, comp: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def _add_bias(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ cost-model hooks
    @torch.no_grad()
    def normalized_input(self, x: Tensor) -> Tensor:
        """The DAC's normalized, quantized input (values in ``[-1, 1]``), before bit planes."""
        dac = self.config.dac
        if not self._dac_needs_range():
            return x
        if dac.range_mode == "dynamic":
            r = x.abs().flatten(1).amax(1).clamp_min(1e-30).view(-1, *([1] * (x.dim() - 1)))
        else:
            r = input_range(self) if self._dac_range_value > 0 else x.abs().amax().clamp_min(1e-30)
        if dac.bits is None:
            return x / r
        return quantize_dac(x, r, dac.levels, dac.signed)

    @torch.no_grad()
    def row_activity(self, x: Tensor) -> Tensor:
        """Sum over the MVMs of ``x`` of ``|normalized input|`` per row: ``[groups, in_rows]``."""
        return self._rows_of(self.normalized_input(x)).abs().sum(0)

    @torch.no_grad()
    def row_conductance_sums(self) -> Tensor:
        """Sum over each row's devices (all columns, pairs, slices) of the programmed G (µS):
        ``[groups, in_rows]``."""
        self._ensure_programmed()
        g = self.dev_g  # [pair, S, Gr, n_rt, R, N]
        per_row = g.sum(dim=(0, 1, 5))  # [Gr, n_rt, R]
        return per_row.reshape(self.geometry.groups, -1)[:, : self.geometry.in_rows]

    def _apply(self, fn, *args, **kwargs):
        # .to() / .double() / .cuda(): cached reads and generators live on the old device/dtype
        out = super()._apply(fn, *args, **kwargs)
        self._cache.clear()
        self._gens.clear()
        self._scalars.clear()
        return out

    # ------------------------------------------------------------------ state dict
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        lay = state_dict.get(prefix + "layout")
        if lay is not None and not torch.equal(lay.cpu(), self.layout.cpu()):
            names = [
                "rows",
                "cols",
                "slices",
                "cols_per_weight",
                "groups",
                "in_rows",
                "out_cols",
                "row_block",
            ]
            got = dict(zip(names, lay.tolist()))
            want = dict(zip(names, self.layout.tolist()))
            raise ValueError(
                f"state_dict for {prefix.rstrip('.') or self.layer_name} comes from a different "
                f"tile layout: it has {got}, this layer has {want}"
            )
        keys = tuple(
            k[len(prefix) + 4 :]
            for k in state_dict
            if k.startswith(prefix + "dev_") and "." not in k[len(prefix) :]
        )
        if keys:
            for key in self._state_keys:
                if key not in keys:
                    delattr(self, f"dev_{key}")
            for key in keys:
                src = state_dict[prefix + "dev_" + key]
                cur = getattr(self, f"dev_{key}", None)
                if cur is None or cur.shape != src.shape or cur.dtype != src.dtype:
                    self.register_buffer(
                        f"dev_{key}", torch.empty_like(src, device=self.weight.device)
                    )
            self._state_keys = keys
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._cache.clear()
        self._gens.clear()
        self._scalars.clear()
        self._programmed_at = None

    def _analog_repr(self) -> str:
        c = self.config
        dac = "ideal" if c.dac.bits is None else f"{c.dac.bits}b"
        adc = "ideal" if c.adc.bits is None else f"{c.adc.bits}b"
        return (
            f"tiles={self.geometry.grid}, tile={c.tile.rows}x{c.tile.cols}, "
            f"device={c.device.describe()}, dac={dac}, adc={adc}"
        )
