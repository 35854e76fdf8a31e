"""The crossbar stage: a layer's weights as programmed device conductances, read at a time t.

``Crossbar`` owns the programmed per-device state (``dev_<key>`` buffers, tile layout
``[pair, S, groups, row tiles, rows, cols]``), the weight scales, the read time, the seed of
every random draw of the layer and the fingerprint of the weights it was programmed from. It
programs (:meth:`Crossbar.program`), reads the normalized tile weights at a time t
(:meth:`Crossbar.read`, drift and read noise) and draws the weights a hardware-aware train
forward sees (:meth:`Crossbar.train_read`).
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Iterator
from typing import Any, Optional

import torch
from torch import Tensor

from aimc import functional as AF
from aimc.tile.geometry import TileGeometry
from aimc.tile.seeds import N_RNG_CHUNKS, mix_seed
from aimc.tile.stage import Stage

__all__ = ["Crossbar", "conductance_targets", "weight_fingerprint"]

# TileGeometry fields saved in the ``layout`` buffer: a state_dict must match them to load
LAYOUT_FIELDS = ("rows", "cols", "slices", "cols_per_weight", "groups", "in_rows", "out_cols")
LAYOUT_FIELDS += ("row_block",)
_TRAIN_KEY = zlib.crc32(b"train-noise")


def _f64_bits(value: float) -> Tensor:
    return torch.tensor([value], dtype=torch.float64).view(torch.int64)


def conductance_targets(v: Tensor, sign: Optional[Tensor], g_min: float, g_max: float) -> Tensor:
    """Target conductances (µS) ``[pair, *v.shape]`` of device values ``v`` in ``[0, 1]``.

    Differential pairs (``sign`` given): the positive part on G+, the negative on G-, the other
    device at ``g_min``. Offset encoding (``sign=None``): one device, ``g_min + v (g_max - g_min)``.

    Examples:
        >>> conductance_targets(torch.tensor([0.5]), torch.tensor([-1.0]), 1.0, 3.0).tolist()
        [[1.0], [2.0]]
    """
    dg = float(g_max - g_min)
    if sign is None:
        return (g_min + dg * v).unsqueeze(0)
    dv = dg * v  # built in place: big layers hold no extra copies
    targets = torch.empty((2, *v.shape), dtype=v.dtype, device=v.device)
    torch.mul(dv, sign > 0, out=targets[0]).add_(g_min)
    torch.mul(dv, sign < 0, out=targets[1]).add_(g_min)
    return targets


class Crossbar(Stage):
    """The tiles of one layer: programming, device state, reads at time t.

    Args:
        config: the layer's ``AnalogConfig`` (device, mapping, read noise, training, seed).
        geometry: the tile grid.
    """

    def __init__(self, config, geometry: TileGeometry, *, device=None, dtype=None) -> None:
        super().__init__()
        self.config, self.geometry = config, geometry
        g = geometry
        shape = (g.groups, g.n_row_tiles, 1, g.out_cols)
        self.register_buffer("weight_scale", torch.ones(shape, device=device, dtype=dtype))
        self.register_buffer("t_bits", _f64_bits(0.0).to(device))
        self.register_buffer("seed", torch.tensor([config.seed], dtype=torch.int64, device=device))
        self.register_buffer("fingerprint", torch.zeros(3, dtype=torch.int64, device=device))
        layout = torch.tensor([getattr(g, f) for f in LAYOUT_FIELDS], dtype=torch.int64)
        self.register_buffer("layout", layout.to(device))
        # eval forwards since programming: with the seed and the read time it fixes every
        # read- and output-noise draw, so copies and reloads continue the same sequence
        self.register_buffer("draws", torch.zeros((), dtype=torch.int64, device=device))
        self._draws = 0  # the Python mirror of ``draws`` (no device sync per forward)
        self._draw_key: tuple[int, ...] = (0,)
        self._state_keys: tuple[str, ...] = ()
        self._programmed_weight: Optional[Tensor] = None  # the weights on the tiles
        self._cache: dict[Any, Any] = {}
        self._gens: dict[str, torch.Generator] = {}
        self._train_draws = 0  # train-noise draws so far (keeps reseeded draws fresh)
        self._train_gen: Optional[torch.Generator] = None

    # ------------------------------------------------------------------ facts
    @property
    def g_norm(self) -> float:
        """``g_max - g_min`` (µS): the conductance of one normalized unit."""
        dev = self.config.device
        return float(dev.g_max - dev.g_min)

    @property
    def g_offset(self) -> float:
        """``g_min / (g_max - g_min)``: the normalized current of an 'off' device."""
        return float(self.config.device.g_min) / self.g_norm

    @property
    def differential(self) -> bool:
        return self.config.mapping.encoding == "differential"

    @property
    def t_s(self) -> float:
        """Time since programming (s) at which the tiles are read."""
        return self.scalar("t_bits", lambda b: float(b.cpu().view(torch.float64)[0]))

    @property
    def programmed(self) -> bool:
        return bool(self._state_keys)

    def device_state(self) -> dict[str, Tensor]:
        """The programmed per-device state (``"g"``: conductances in µS, ...)."""
        return {k: getattr(self, f"dev_{k}") for k in self._state_keys}

    # ------------------------------------------------------------------ random streams
    def generator(self, kind: str, index: int = 0) -> torch.Generator:
        """The generator of draws ``kind`` (``"program"``, ``"read"``, ``"adc"``, ``"train"``),
        seeded from ``seed``; programming restarts every stream. ``"read"`` and ``"adc"``
        streams also start afresh at every eval forward (:meth:`begin_draw`), seeded from the
        forward's draw number, so a copy or a reloaded state draws the same numbers."""
        key = f"{kind}{index}"
        dev = self.weight_scale.device
        gen = self._gens.get(key)
        if gen is None or gen.device != dev:
            gen = torch.Generator(device=dev)
            parts = self._draw_key if kind in ("read", "adc") else ()
            gen.manual_seed(mix_seed(int(self.seed[0]), zlib.crc32(key.encode()), *parts))
            self._gens[key] = gen
        return gen

    def begin_draw(self) -> None:
        """Start the ``"read"``/``"adc"`` streams of the next eval forward (seeded by its
        number since programming)."""
        self._set_draw_key((self._draws,))
        self._draws += 1

    def _set_draw_key(self, key: tuple[int, ...]) -> None:
        self._draw_key = key
        for name in [k for k in self._gens if k.startswith(("read", "adc"))]:
            del self._gens[name]

    @contextlib.contextmanager
    def draw_scope(self, *key: int) -> Iterator[None]:
        """Inside the block, ``"read"``/``"adc"`` streams are seeded by ``key`` (a reference
        read or a per-time read: the same numbers whenever it is redone); the forward's own
        streams restart after it."""
        saved = self._draw_key
        self._set_draw_key((1 << 40, *key))
        try:
            yield
        finally:
            self._set_draw_key(saved)

    def generators(self, kind: str) -> list[torch.Generator]:
        """The ``N_RNG_CHUNKS`` generators of one chunked draw (``randn_chunked``)."""
        return [self.generator(kind, i) for i in range(N_RNG_CHUNKS)]

    # ------------------------------------------------------------------ programming
    def normalized_tiles(self, matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(v, sign, scale)`` of a weight matrix ``[groups, in_rows, out_cols]``: sliced device
        values ``[S, Gr, n_rt, R, N]``, weight sign and weight scales ``[Gr, n_rt, 1, N]``."""
        g, m = self.geometry, self.config.mapping
        wt = AF.to_tile_layout(matrix, g.row_block)
        scale = AF.weight_scales(wt, m.weight_scaling, g.weights_per_col_tile)
        wn = wt / scale
        v, _ = AF.slice_weights(wn, m.encoding, m.weight_bits, m.slices)
        return v, torch.sign(wn.detach()), scale

    @staticmethod
    def _live(matrix: Tensor, scale: Tensor, mapping, geometry) -> Tensor:
        """``scale`` with 0 for all-zero scaling groups (a pruned column reads exactly 0, not
        the programming noise of its devices rescaled by a stand-in scale of 1)."""
        wt = AF.to_tile_layout(matrix.detach(), geometry.row_block)
        amax = AF.weight_scales(wt, mapping.weight_scaling, geometry.weights_per_col_tile, zero=0.0)
        return torch.where(amax > 0, scale, torch.zeros_like(scale))

    def _targets(self, v: Tensor, sign: Optional[Tensor]) -> Tensor:
        dev = self.config.device
        return conductance_targets(v, sign, float(dev.g_min), float(dev.g_max))

    @torch.no_grad()
    def program(self, weight: Tensor, matrix: Tensor, seed: Optional[int] = None) -> None:
        """Program ``matrix`` (the layer's ``weight`` as ``[groups, in_rows, out_cols]``) with a
        new device draw from ``seed`` (default: the current one), and read at t = 0."""
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"program seed must be an int >= 0, got {seed!r}")
            self.seed.fill_(seed)
        self._gens.clear()
        v, sign, scale = self.normalized_tiles(matrix)
        targets = self._targets(v, sign if self.differential else None)
        state = self.config.device.program(targets, generator=self.generator("program"))
        for key in self._state_keys:
            if key not in state:
                delattr(self, f"dev_{key}")
        for key, value in state.items():
            self.register_buffer(f"dev_{key}", value)
        self._state_keys = tuple(state)
        self.weight_scale.copy_(self._live(matrix, scale, self.config.mapping, self.geometry))
        self.t_bits.copy_(_f64_bits(0.0))
        self.fingerprint.copy_(weight_fingerprint(weight))
        self._programmed_weight = weight.detach().clone()
        self._draws, self._draw_key = 0, (0,)
        self._cache.clear()

    def holds(self, weight: Tensor) -> bool:
        """Whether the tiles hold ``weight`` as it is now (else it must be reprogrammed).

        Compared element by element with the weights programmed (one pass, and a copy of the
        weights kept beside the device state), so every edit counts, in place or through
        ``.data`` (which bumps no version counter), a permutation included. A copy or a
        reloaded layer first checks the persistent fingerprint."""
        if not self.programmed:
            return False
        ref, w = self._programmed_weight, weight.detach()
        if ref is not None and ref.shape == w.shape and ref.dtype == w.dtype:
            if ref.device == w.device:
                return torch.equal(ref, w)
        if torch.equal(weight_fingerprint(w), self.fingerprint.to(w.device)):
            self._programmed_weight = w.clone()
            return True
        return False

    @torch.no_grad()
    def drift_to(self, t_s: float) -> None:
        """Read the tiles ``t_s`` seconds after programming from now on."""
        if isinstance(t_s, bool) or not isinstance(t_s, (int, float)):
            raise TypeError(f"drift time t must be a number of seconds, got {t_s!r}")
        if not math.isfinite(t_s) or t_s < 0:
            raise ValueError(f"drift time t must be a finite number of seconds >= 0, got {t_s}")
        self.t_bits.copy_(_f64_bits(float(t_s)).to(self.t_bits.device))
        self._cache.clear()

    # ------------------------------------------------------------------ reads
    def cached(self, key: Any, make) -> Any:
        """``make()``, kept until the tiles are reprogrammed, drifted or reloaded. What is
        made inside ``torch.inference_mode`` is kept apart (inference tensors cannot serve an
        autograd forward); draws are seeded, so both hold the same numbers."""
        key = (key, torch.is_inference_mode_enabled())
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def forget_reads(self) -> None:
        """Drop kept reads and derived values: the next read draws anew."""
        self._cache.clear()

    def _normalized(self, g: Tensor) -> Tensor:
        return (g[0] - g[1]) / self.g_norm if self.differential else g[0] / self.g_norm

    def _kept(self, key: Any) -> Any:
        return self._cache.get((key, torch.is_inference_mode_enabled()))

    def _keep(self, key: Any, value: Any) -> None:
        self._cache[(key, torch.is_inference_mode_enabled())] = value  # as :meth:`cached`

    def read_mean_std(self, t: float) -> tuple[Tensor, Optional[Tensor]]:
        """Expected normalized tile weights at ``t`` and the std of one read (``None``: exact;
        a 0-d tensor when the device's read noise is one number for every device). Kept, for
        the current drift time only, when every forward draws a fresh read."""
        out = self._kept(("mean", t))
        if out is not None:
            return out
        dev, state = self.config.device, self.device_state()
        g = dev.conductance(state, t)
        std = dev.read_noise_std(state, t)
        mean = self._normalized(g)
        if std is not None and std.numel() == 1:  # one number: never expanded per device
            std = std.reshape(()) * (math.sqrt(2.0) if self.differential else 1.0) / self.g_norm
        elif std is not None:
            std = std.expand_as(g)
            if self.differential:
                std = torch.sqrt(std[0] ** 2 + std[1] ** 2) / self.g_norm
            else:
                std = std[0] / self.g_norm
        if std is not None and not bool((std > 0).any()):
            std = None
        out = (mean.contiguous(), std)
        if self.config.read_noise == "forward" and t == self.t_s:
            self._keep(("mean", t), out)
        return out

    def read(self, t: float) -> Tensor:
        """One noisy read of the normalized tile weights ``[S, Gr, n_rt, R, N]`` at ``t`` (per
        forward, or once per drift time when ``config.read_noise == "drift"``). Only the read
        at the current drift time is kept: one tensor of tile weights (the read at ``t = 0``
        that drift compensation needs is made and dropped; its draw is seeded by ``t``, so
        making it again gives the same numbers)."""
        w = self._kept(("read", t))
        if w is not None:
            return w
        mean, std = self.read_mean_std(t)
        drift = self.config.read_noise == "drift"
        if std is None:
            w = mean
        elif drift:  # one draw per drift time: seeded by t alone
            with self.draw_scope(int(_f64_bits(t)[0])):
                gens = self.generators("read")
                w = AF.randn_chunked(mean.shape, gens, mean.device, mean.dtype, std=std, mean=mean)
        else:
            gens = self.generators("read")
            w = AF.randn_chunked(mean.shape, gens, mean.device, mean.dtype, std=std, mean=mean)
        if t == self.t_s and (std is None or drift):
            self._keep(("read", t), w)
        return w

    def split_reads(self, w: Tensor, scale: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Partial-row reads (``TileConfig.parallel_rows``): the tiles ``w``, their scales and
        the tile-row inputs ``rows`` ``[M, Gr, K]`` laid out so that every read of
        ``parallel_rows`` rows is a row tile of its own (digitized by the ADC, then added
        digitally with its tile's scale). Unchanged when all rows are read at once."""
        pr, r = self.config.tile.parallel_rows, w.shape[3]
        if pr is None or pr >= r:
            return w, scale, rows
        reads = math.ceil(r / pr)
        return (
            AF.split_reads(w, pr),
            scale.repeat_interleave(reads, dim=1),
            AF.pad_reads(rows, r, pr),
        )

    # ------------------------------------------------------------------ hardware-aware training
    def train_read(self, matrix: Tensor, drift_gain=None) -> tuple[Tensor, Tensor, Any]:
        """``(w, scale, compensation)``: the normalized tile weights a train forward computes
        with (the current weights plus ``TrainingConfig.weight_noise``, gradient straight
        through), their scales and the drift-compensation factor to apply after the ADC.

        ``drift_gain(w0, wt, scale)``: the layer's compensation rule for tiles read at
        programming and at the read time (needed by device noise that drifts)."""
        v, sign, scale = self.normalized_tiles(matrix)
        w = v * sign if self.differential else v + self.g_offset
        gain = None if drift_gain is None else (lambda w0, wt: drift_gain(w0, wt, scale))
        w, comp = self.weight_noise(w, gain)
        return w, scale, comp

    def _train_generator(self) -> torch.Generator:
        """The ``"train"`` generator. Programming restarts the streams; when that happened
        after earlier draws, reseed from the draw count so noise stays fresh, not a replay."""
        gen = self.generator("train")
        if self._train_draws and gen is not self._train_gen:
            gen.manual_seed(mix_seed(int(self.seed[0]), _TRAIN_KEY, self._train_draws))
        self._train_gen = gen
        self._train_draws += 1
        return gen

    def weight_noise(self, w: Tensor, drift_gain=None) -> tuple[Tensor, Any]:
        """Normalized tile weights ``w`` plus ``TrainingConfig.weight_noise`` drawn fresh, and
        the drift-compensation factor (``None``, a float or per column ``[Gr, N]``).

        The noise is a detached perturbation: ``d(output) / d(w)`` is the identity. With
        device noise that drifts, the tiles hold the drifted (smaller) weights, as the chip's
        do, and the factor ``drift_gain(w0, wt)`` (see :meth:`device_read`) is applied after
        the ADC."""
        tc = self.config.training
        if tc.weight_noise == "none":
            return w, None
        gen = self._train_generator()
        factor = None
        with torch.no_grad():
            if tc.weight_noise == "gaussian":
                delta = torch.randn(w.shape, generator=gen, device=w.device, dtype=w.dtype)
                delta.mul_(tc.weight_noise_std)
            else:
                w_read, comp = self.device_read(w.detach(), tc.noise_t_s, gen, drift_gain)
                factor = _per_column(comp, w)
                delta = w_read * factor - w.detach() if factor is not None else w_read - w.detach()
                if tc.device_noise_scale != 1.0:
                    delta.mul_(tc.device_noise_scale)
        if factor is None:
            return w + delta, None
        return (w + delta) / factor, comp

    @torch.no_grad()
    def device_read(
        self, w: Tensor, t_s: float, generator: Optional[torch.Generator] = None, drift_gain=None
    ) -> tuple[Tensor, Any]:
        """One device draw of normalized tile weights ``w`` read at ``t_s`` (uncompensated),
        and the drift-compensation factor at ``t_s`` (``None`` when the layer does not
        compensate): ``drift_gain(w0, wt)`` of the expected tiles at programming and at
        ``t_s``, the rule the eval forward applies to its reference reads. ``w`` is mapped
        to conductances as :meth:`program` maps weights."""
        dev, cfg = self.config.device, self.config
        if self.differential:
            targets = self._targets(w.abs(), torch.sign(w))
        else:  # offset: w = v + g_offset, so g = g_norm * w
            targets = (self.g_norm * w).unsqueeze(0)
        state = dev.program(targets.clamp_min(0.0), generator=generator)
        g_t = dev.conductance(state, t_s)
        std = dev.read_noise_std(state, t_s)
        g_read = g_t
        if std is not None:
            noise = torch.randn(g_t.shape, generator=generator, device=g_t.device, dtype=g_t.dtype)
            g_read = g_t + std * noise
        w_read = self._normalized(g_read)
        if not (cfg.drift_compensation and dev.drifts and t_s > 0):
            return w_read, None
        if drift_gain is None:
            raise ValueError(
                f"{self.layer_name}: a drift-compensated device read needs the layer's "
                "drift_gain rule (AnalogLayerBase.train_drift_gain)"
            )
        w0 = self._normalized(dev.conductance(state, 0.0))
        return w_read, drift_gain(w0, self._normalized(g_t))

    # ------------------------------------------------------------------ cost-model view
    @torch.no_grad()
    def row_conductance_sums(self, matrix: Tensor) -> Tensor:
        """Sum over each row's devices (all columns, pairs, slices) of the target G (µS) of a
        weight matrix ``[groups, in_rows, out_cols]``: ``[groups, in_rows]`` (no device stack)."""
        g, m, dev = self.geometry, self.config.mapping, self.config.device
        wt = AF.to_tile_layout(matrix, g.row_block)
        wn = wt / AF.weight_scales(wt, m.weight_scaling, g.weights_per_col_tile)
        v_sum = AF.slice_sums(wn, m.encoding, m.weight_bits, m.slices)  # [Gr, n_rt, R]
        pairs = 2 if self.differential else 1
        per_row = pairs * float(dev.g_min) * m.slices * wn.shape[-1] + self.g_norm * v_sum
        return per_row.reshape(g.groups, -1)[:, : g.in_rows]

    # ------------------------------------------------------------------ state
    def forget(self) -> None:
        super().forget()
        self._cache.clear()
        self._gens.clear()
        self._programmed_weight = None

    def _derived(self) -> tuple[str, ...]:
        return ("_scalars", "_cache", "_gens")

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_programmed_weight"] = None  # copies check the fingerprint once instead
        return state

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        self.draws.fill_(self._draws)
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        lay = state_dict.get(prefix + "layout")
        if lay is not None and not torch.equal(lay.cpu(), self.layout.cpu()):
            got = dict(zip(LAYOUT_FIELDS, lay.tolist()))
            want = dict(zip(LAYOUT_FIELDS, self.layout.tolist()))
            raise ValueError(
                f"state_dict for {self.layer_name} comes from a different tile layout: "
                f"it has {got}, this layer has {want}"
            )
        keys = tuple(
            k[len(prefix) + 4 :]
            for k in state_dict
            if k.startswith(prefix + "dev_") and "." not in k[len(prefix) :]
        )
        device = self.config.device
        if keys and set(keys) != set(device.state_keys()):
            raise ValueError(
                f"state_dict for {self.layer_name} holds the device state {sorted(keys)} of "
                f"another device model; this layer's device {device.describe()} keeps "
                f"{sorted(device.state_keys())}. Convert the model with the device it was "
                "saved with (or load only its digital weights: the state_dict without the "
                "'dev_' entries)"
            )
        if keys:
            for key in keys:
                want = device.state_dtypes().get(key) or self.weight_scale.dtype
                got = state_dict[prefix + "dev_" + key].dtype
                if got != want and got.is_floating_point and want.itemsize < got.itemsize:
                    # a checkpoint from before the state was kept in compact precision
                    src = state_dict[prefix + "dev_" + key]
                    state_dict[prefix + "dev_" + key] = src.to(want)
                elif got != want:
                    raise ValueError(
                        f"state_dict for {self.layer_name}: device state {key!r} is {got}, "
                        f"this layer's device {device.describe()} keeps {want}"
                    )
        state_dict.setdefault(prefix + "draws", torch.zeros((), dtype=torch.int64))
        if keys:
            for key in self._state_keys:
                if key not in keys:
                    delattr(self, f"dev_{key}")
            for key in keys:
                src = state_dict[prefix + "dev_" + key]
                cur = getattr(self, f"dev_{key}", None)
                if cur is None or cur.shape != src.shape or cur.dtype != src.dtype:
                    dev = self.weight_scale.device
                    self.register_buffer(f"dev_{key}", torch.empty_like(src, device=dev))
            self._state_keys = keys
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self.forget()
        self._draws = int(self.draws)

    def extra_repr(self) -> str:
        g, c = self.geometry, self.config
        return f"tiles={g.grid}, tile={c.tile.rows}x{c.tile.cols}, device={c.device.describe()}"


def _per_column(comp: Any, w: Tensor) -> Any:
    """A compensation factor (a float, or per column ``[groups, cols]``) shaped against tile
    weights ``w`` ``[S, groups, row tiles, rows, cols]``."""
    if comp is None or not isinstance(comp, Tensor):
        return comp
    return comp.view(1, comp.shape[0], 1, 1, comp.shape[1])


def weight_fingerprint(weight: Tensor) -> Tensor:
    """Three float64 sums of ``weight`` (as int64 bits): the sum, the sum of squares and a sum
    weighted by fixed pseudo-random normal coefficients, so that a permutation or an edit that
    keeps the first two changes the third (equal only for equal weights, but for exact
    cancellations of probability zero)."""
    w = weight.detach().double().flatten()
    gen = torch.Generator(device="cpu").manual_seed(0x5EED)
    coeff = torch.randn(w.numel(), generator=gen, dtype=torch.float64).to(w.device)
    return torch.stack([w.sum(), (w * w).sum(), (w * coeff).sum()]).view(torch.int64)
