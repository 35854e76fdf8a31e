"""Shared sequencing of the analog layers: programming, drift, calibration and the forward.

A layer owns its digital master weights (``weight``, ``bias``: real parameters) and, as buffers,
the programmed device state of its tiles, the weight scales, the DAC/ADC ranges, the drift time
and the seed. Subclasses only say how their input becomes tile rows (``_tiles_forward``) and how
their weight becomes a ``[groups, rows, cols]`` matrix (``weight_matrix``). The converters,
read-out and drift compensation live in :mod:`aimc.nn.periphery`; seeds in :mod:`aimc.nn.seeds`.
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
from aimc.nn.periphery import Periphery
from aimc.nn.seeds import N_RNG_CHUNKS, mix_seed, name_seed
from aimc.tile.geometry import TileGeometry
from aimc.training import init_training_state, perturb_train_tiles

__all__ = ["AnalogLayerBase", "mix_seed", "name_seed"]

log = logging.getLogger(__name__)

_DEFER_PROGRAM = contextvars.ContextVar("aimc_defer_program", default=False)
# TileGeometry fields saved in the ``layout`` buffer: a state_dict must match them to load
_LAYOUT_FIELDS = (
    "rows",
    "cols",
    "slices",
    "cols_per_weight",
    "groups",
    "in_rows",
    "out_cols",
    "row_block",
)


@contextlib.contextmanager
def deferred_programming():
    """Construct analog layers without programming them (``from_digital`` programs once the
    real weights are in)."""
    token = _DEFER_PROGRAM.set(True)
    try:
        yield
    finally:
        _DEFER_PROGRAM.reset(token)


def _slice_sums(wn: Tensor, encoding: str, weight_bits: Optional[int], slices: int) -> Tensor:
    """``slice_weights(wn, ...)[0].sum((0, -1))`` without the ``[S, ...]`` stack: the digit
    sums of the quantized weights, in integers (the cost model's per-row conductance sums)."""
    u = wn.abs() if encoding == "differential" else (wn + 1.0) * 0.5
    if weight_bits is None:
        return u.sum(-1)
    mag_bits = weight_bits - 1 if encoding == "differential" else weight_bits
    q_max = 2**mag_bits - 1
    q = torch.round(u * q_max).to(torch.int64)
    if slices == 1:
        return q.sum(-1).to(wn.dtype) / q_max
    b = math.ceil(mag_bits / slices)
    if mag_bits <= 16:  # one lookup of each level's digit sum
        levels = torch.arange(q_max + 1, device=q.device)
        lut = sum((levels >> (b * k)) & (2**b - 1) for k in range(slices))
        return lut[q].sum(-1).to(wn.dtype) / (2**b - 1)
    total = torch.zeros(q.shape[:-1], dtype=torch.int64, device=q.device)
    for k in range(slices):
        total += ((q >> (b * k)) & (2**b - 1)).sum(-1)
    return total.to(wn.dtype) / (2**b - 1)


def _f64_bits(values: list[float]) -> Tensor:
    return torch.tensor(values, dtype=torch.float64).view(torch.int64)


@torch.no_grad()
def _copy_parameters(src: nn.Module, dst: nn.Module) -> None:
    dst.weight.copy_(src.weight)
    if src.bias is not None:
        dst.bias.copy_(src.bias)


class AnalogLayerBase(Periphery, nn.Module):
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
        layout = [getattr(g, name) for name in _LAYOUT_FIELDS]
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
        cls,
        module: nn.Module,
        config: Optional[AnalogConfig] = None,
        seed: Optional[int] = None,
        program: bool = True,
    ):
        """An analog layer with ``module``'s hyper-parameters and weights, programmed with a
        device draw from ``seed`` (default: ``config.seed``); ``program=False`` defers the
        programming to the first analog forward."""
        if not isinstance(module, cls._FLOAT_MODULE):
            raise TypeError(
                f"{cls.__name__}.from_digital expects an {cls._FLOAT_MODULE.__name__}, "
                f"got {type(module).__name__}"
            )
        w = module.weight
        with deferred_programming():  # program once, with the real weights
            layer = cls(*cls._ctor_args(module), config, device=w.device, dtype=w.dtype)
        _copy_parameters(module, layer)
        if program:
            layer.program(seed)
        elif seed is not None:
            layer.program_seed.fill_(seed)
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

    def _tiles_forward(self, xq: Tensor, w: Tensor, scale: Tensor, pw: Optional[Tensor]) -> Tensor:
        """Normalized outputs of tiles ``w`` (weight scales ``scale``) for normalized inputs
        ``xq``; ``pw``: shift-add weights of bit-serial input planes, or ``None``."""
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
        return [self._generator("read", i) for i in range(N_RNG_CHUNKS)]

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
    def row_activity(self, x: Tensor) -> Tensor:
        """Sum over the MVMs of ``x`` of ``|normalized input|`` per row: ``[groups, in_rows]``."""
        return self._rows_of(self.normalized_input(x)).abs().sum(0)

    @torch.no_grad()
    def row_conductance_sums(self) -> Tensor:
        """Sum over each row's devices (all columns, pairs, slices) of the target G (µS) of
        the current weights: ``[groups, in_rows]``. Needs no programming (cost model)."""
        dev, g, m = self.config.device, self.geometry, self.config.mapping
        wt = AF.to_tile_layout(self.weight_matrix(self.weight.detach()), g.row_block)
        wn = wt / AF.weight_scales(wt, m.weight_scaling, g.weights_per_col_tile)
        v_sum = _slice_sums(wn, m.encoding, m.weight_bits, m.slices)  # [Gr, n_rt, R]
        pairs = 2 if self._differential else 1
        per_row = pairs * float(dev.g_min) * m.slices * wn.shape[-1] + self._g_norm * v_sum
        return per_row.reshape(self.geometry.groups, -1)[:, : self.geometry.in_rows]

    def _apply(self, fn, *args, **kwargs):
        # .to() / .double() / .cuda(): cached reads and generators live on the old device/dtype
        out = super()._apply(fn, *args, **kwargs)
        self._forget_derived()
        return out

    def _forget_derived(self) -> None:
        """Drop what is derived from the buffers (reads, generators, cached scalars)."""
        self._cache.clear()
        self._gens.clear()
        self._scalars.clear()

    # ------------------------------------------------------------------ state dict
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        lay = state_dict.get(prefix + "layout")
        if lay is not None and not torch.equal(lay.cpu(), self.layout.cpu()):
            got = dict(zip(_LAYOUT_FIELDS, lay.tolist()))
            want = dict(zip(_LAYOUT_FIELDS, self.layout.tolist()))
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
        self._forget_derived()
        self._programmed_at = None

    def _analog_repr(self) -> str:
        c = self.config
        dac = "ideal" if c.dac.bits is None else f"{c.dac.bits}b"
        adc = "ideal" if c.adc.bits is None else f"{c.adc.bits}b"
        return (
            f"tiles={self.geometry.grid}, tile={c.tile.rows}x{c.tile.cols}, "
            f"device={c.device.describe()}, dac={dac}, adc={adc}"
        )
