"""The crossbar stage: a layer's weights as programmed device conductances, read at a time t.

``Crossbar`` owns the programmed per-device state (``dev_<key>`` buffers, tile layout
``[pair, S, groups, row tiles, rows, cols]``), the weight scales, the read time, the seed of
every random draw of the layer and the fingerprint of the weights it was programmed from. It
programs (:meth:`Crossbar.program`), reads the normalized tile weights at a time t
(:meth:`Crossbar.read`, drift and read noise) and draws the weights a hardware-aware train
forward sees (:meth:`Crossbar.train_read`, in :mod:`aimc.tile.train_noise`).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from aimc import functional as AF
from aimc.tile.checkpoint import LAYOUT_FIELDS, check_layout, device_state_keys
from aimc.tile.fingerprint import edit_fingerprint, weight_fingerprint
from aimc.tile.geometry import TileGeometry
from aimc.tile.seeds import DrawStreams
from aimc.tile.stage import Stage
from aimc.tile.train_noise import TrainNoise

__all__ = ["Crossbar", "conductance_targets", "weight_fingerprint"]


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


class Crossbar(DrawStreams, TrainNoise, Stage):
    """The tiles of one layer: programming, device state, reads at time t (and, from
    :class:`~aimc.tile.train_noise.TrainNoise`, the weights of a hardware-aware train forward).

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
        self._edit_fp: Optional[Tensor] = None  # edit_fingerprint of the weights on the tiles
        self._cache: dict[Any, Any] = {}
        self._gens: dict[str, torch.Generator] = {}

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
        self._edit_fp = edit_fingerprint(weight)
        self._draws, self._draw_key = 0, (0,)
        self._cache.clear()

    def holds(self, weight: Tensor) -> bool:
        """Whether the tiles hold ``weight`` as it is now (else it must be reprogrammed).

        One pass over the weights (:func:`~aimc.tile.fingerprint.edit_fingerprint`, no copy of
        them kept): every edit of one element (one ulp included) and every exchange of two
        unequal elements is noticed, in place or through ``.data`` (which bumps no version
        counter). A reload or a move first checks the persistent fingerprint."""
        if not self.programmed:
            return False
        ref = self._edit_fp
        if ref is not None and ref.device == weight.device:
            return torch.equal(ref, edit_fingerprint(weight))
        if torch.equal(weight_fingerprint(weight), self.fingerprint.to(weight.device)):
            self._edit_fp = edit_fingerprint(weight)
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
        self._edit_fp = None

    def _derived(self) -> tuple[str, ...]:
        return ("_scalars", "_cache", "_gens")

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        self.draws.fill_(self._draws)
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        check_layout(state_dict, prefix, self.layout, self.layer_name)
        device = self.config.device
        keys = device_state_keys(
            state_dict, prefix, device, self.weight_scale.dtype, self.layer_name
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
