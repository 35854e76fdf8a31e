"""``AnalogLinear``: ``nn.Linear`` computed on tiled crossbars."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as torch_module

from aimc import functional as AF
from aimc.config import AnalogConfig
from aimc.nn.base import AnalogLayerBase
from aimc.tile.accumulate import ReadoutWeights
from aimc.tile.dac import Drive
from aimc.tile.geometry import TileGeometry
from aimc.tile.readout import (
    TABLE_MIN_ROWS,
    Convert,
    TableRead,
    lsb_operands,
    plane_base,
    read_rows,
    summarizes,
    tile_rows,
)

__all__ = ["AnalogLinear", "StepReader"]


class AnalogLinear(AnalogLayerBase, nn.Linear):
    """``y = x W^T + b`` with ``W`` programmed on crossbar tiles.

    The torch signature followed by ``config``. ``weight`` and ``bias`` stay the real
    parameters (the digital master copy); the programmed conductances, weight scales, DAC/ADC
    ranges, drift time and seed are buffers. Eval forwards read the tiles (drift, read noise,
    DAC, per-tile ADC, digital accumulation, drift compensation); train forwards are the plain
    digital op unless ``config.training.hardware_aware``.

    The forward is ``accumulate(adc(crossbar(dac(x))))`` (see :class:`AnalogLayerBase`).

    Args:
        in_features: size of each input sample (tile rows).
        out_features: size of each output sample (weight columns).
        bias: add a digital bias.
        config: the hardware; default ``AnalogConfig()``.
        device, dtype: as for ``nn.Linear``.

    Shape:
        - Input: ``(*, in_features)``; Output: ``(*, out_features)``.

    Examples:
        >>> import aimc
        >>> layer = AnalogLinear(8, 3, config=aimc.AnalogConfig.ideal())
        >>> layer.eval()(torch.ones(2, 8)).shape
        torch.Size([2, 3])
    """

    __constants__ = ["in_features", "out_features"]
    _FLOAT_MODULE = nn.Linear

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        config: Optional[AnalogConfig] = None,
        *,
        device=None,
        dtype=None,
    ) -> None:
        for name, val in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"AnalogLinear.{name} must be an int >= 1, got {val!r}")
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        cfg = self._resolve_config(config)
        geometry = TileGeometry.for_config(cfg, 1, in_features, out_features)
        self._init_analog(cfg, geometry)

    # -- conversion (``from_digital``/``to_digital`` live in the base class)
    @staticmethod
    def _ctor_args(module: nn.Linear) -> tuple:
        return (module.in_features, module.out_features, module.bias is not None)

    # -- the analog parts
    def weight_matrix(self, weight: Optional[Tensor] = None) -> Tensor:
        w = self.weight if weight is None else weight
        return w.t().unsqueeze(0)

    def _digital_forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.layer_name} expects a Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self.layer_name}: input must have shape (*, in_features={self.in_features}), "
                f"got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        lead = x.shape[:-1]
        y = super().forward(x.reshape(-1, self.in_features))
        return y.reshape(*lead, self.out_features)

    def _tiles_forward(self, xq: Tensor, w: Tensor, scale: Tensor) -> Tensor:
        rows = xq.unsqueeze(1)  # [M, groups=1, in_features]
        w, scale, rows = self.crossbar.split_reads(w, scale, rows)
        gens = self._adc_generators()
        p, in_lsb = self.adc.read(rows, w, gens)
        xsum = None
        if not self.crossbar.differential:
            xsum = AF.tile_matmul(rows, torch.ones_like(w[:1, ..., :1]))
        dims = {"s": 0, "g": 1, "rt": 2, "n": 4}
        return self._read_out(p, dims, scale, xsum, in_lsb=in_lsb, gens=gens)[0]

    def _tiles_batched(self, drive: Drive, w: Tensor, convert: Convert, lsbs: list[float]):
        rows = drive.x.unsqueeze(1)  # [cycles * M, groups=1, in_features]
        scale = self.crossbar.weight_scale
        ws, _, rows = self.crossbar.split_reads(w, scale, rows)
        rw = self._readout_weights(lsbs, ws.shape[2] // w.shape[2])
        base = None
        if not summarizes(convert) and rows.shape[0] >= TABLE_MIN_ROWS:
            base = plane_base(rows, drive.plane_weights is not None)
        if base is not None:
            return self._table_read(rows, ws, convert, rw, lsbs, base)
        rows, tile_lsbs = lsb_operands(rows, ws, lsbs, rw.xsum is not None)
        return read_rows(rows, ws, convert, rw, lsbs=tile_lsbs)[0]

    @torch.no_grad()
    def _table_read(
        self,
        rows: Tensor,
        ws: Tensor,
        convert: Convert,
        rw: ReadoutWeights,
        lsbs: list[float],
        base: int,
    ) -> Tensor:
        """Bit-plane rows ``[cycles * M, 1, K]`` (each tile's rows padded to whole reads) on
        tiles ``ws`` ``[S, 1, reads, rows per read, N]`` through lookup tables
        (:class:`~aimc.tile.readout.TableRead`), a chunk of MVMs at a time: ``[M, N]``."""
        r = ws.shape[3]
        cycles = rw.cycle.numel()
        k = rows.shape[-1]
        table = TableRead(ws, lsbs, rw, base, [r] * ws.shape[2])
        m = rows.shape[0] // cycles
        planes = rows.view(cycles, m, k)
        codes = None
        if table.takes_codes(r, cycles):  # indices from the codes: a cycles-th of the planes
            codes = table.codes(planes)  # [M, K]
        y = torch.empty(1, m, ws.shape[4], dtype=rows.dtype, device=rows.device)
        step = table.mvms_per_read(cycles)
        for m0 in range(0, m, step):
            mk = min(m, m0 + step) - m0
            ix = torch.empty(
                table.tiles, cycles, mk, table.n_groups, dtype=torch.int64, device=rows.device
            )
            if codes is not None:
                table.index_codes(codes[m0 : m0 + mk].unsqueeze(-1), cycles, ix)
            else:
                chunk = planes[:, m0 : m0 + mk].reshape(cycles * mk, k, 1)
                x = tile_rows(chunk, 1, r, zero=True, width=table.width)
                ix.copy_(table.index(x).view(ix.shape))
            table.read(
                ix.view(table.tiles, cycles * mk, table.n_groups), convert, y[:, m0 : m0 + mk]
            )
        return y[0]

    def _place_columns(self, comp: Tensor, y: Tensor) -> Tensor:
        return comp.reshape(-1)

    def _add_bias(self, y: Tensor) -> Tensor:
        if self.bias is None:
            return y
        if y.requires_grad or (torch.is_grad_enabled() and self.bias.requires_grad):
            return y + self.bias
        return y.add_(self.bias)

    def _rescale_bias(self, y: Tensor, x_range, comp, accumulate) -> Tensor:
        b = self.bias
        if (
            b is not None
            and isinstance(x_range, float)
            and (comp is None or isinstance(comp, float))
            and not y.requires_grad
            and not (torch.is_grad_enabled() and b.requires_grad)
        ):  # one number times y, plus the bias: one pass
            return torch.add(b, y, alpha=x_range if comp is None else x_range * comp, out=y)
        return super()._rescale_bias(y, x_range, comp, accumulate)

    def mvm_count(self, x: Tensor) -> int:
        self._check_input(x)
        return x.numel() // self.in_features

    def _rows_of(self, xn: Tensor) -> Tensor:
        return xn.reshape(-1, 1, self.in_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )

    def step_reader(self) -> StepReader:
        """A callable equal to calling this layer on ``(N, in_features)`` inputs, made for many
        calls within one forward of an enclosing layer (a recurrent layer's hidden-to-hidden
        reads, one per time step); see :class:`StepReader`."""
        return StepReader(self)


def _hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` runs anything besides its forward (hooks, a stand-in)."""
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or torch_module._global_forward_hooks
        or torch_module._global_forward_pre_hooks
        or "forward" in vars(module)
    )


class StepReader:
    """Repeated calls of one :class:`AnalogLinear` within one forward of an enclosing layer,
    with the per-forward work done once.

    The first call is an ordinary forward: it checks the input, reprograms weights changed
    since programming, sets unset converter ranges and measures the drift compensation. When
    the later calls can only repeat that work (eval under ``no_grad``, converter ranges set, no
    calibration observer, no hooks on the layer and no stand-in forward), they run the read
    alone: a new forward count (so seeded read and ADC noise draw what a plain call draws),
    the crossbar read at the layer's read time, DAC, tiles, ADC, accumulation, the drift
    compensation of the first call and the bias, without checking the weights and the input
    again. Otherwise every call is a plain forward. Either way the outputs equal plain calls
    exactly. Made for one forward of the enclosing layer; should anything the lean reads rely
    on change in between (an in-place edit of the weight or bias, reprogramming, a new read
    time or converter range, train mode, autograd, a hook), the next call is a plain forward
    again and decides anew.

    Examples:
        >>> import aimc
        >>> layer = AnalogLinear(8, 3, config=aimc.AnalogConfig()).eval()
        >>> read = layer.step_reader()
        >>> with torch.no_grad():
        ...     h = torch.ones(2, 8)
        ...     first, second = read(h), read(h)
        >>> torch.equal(first, second)
        True
    """

    __slots__ = ("layer", "_lean", "_t", "_comp", "_watched", "_versions")

    def __init__(self, layer: AnalogLinear) -> None:
        self.layer = layer
        self._lean: Optional[bool] = None  # decided after a plain call
        self._t = 0.0
        self._comp = None
        self._watched: tuple[Tensor, ...] = ()
        self._versions: list[int] = []

    def _watch(self) -> tuple[Tensor, ...]:
        """The tensors whose in-place changes end the lean reads: the weight and bias, and the
        crossbar's, DAC's and ADC's buffers of programming, read time, seed and ranges."""
        layer, crossbar = self.layer, self.layer.crossbar
        out = [layer.weight, crossbar.fingerprint, crossbar.t_bits, crossbar.seed]
        out += [
            layer.bias,
            getattr(layer.dac, "range", None),
            getattr(layer.dac, "range_gain", None),
        ]
        out.append(getattr(layer.adc, "full_scale", None))
        return tuple(t for t in out if t is not None)

    def _unchanged(self) -> bool:
        layer = self.layer
        if layer.training or torch.is_grad_enabled() or _hooked(layer):
            return False
        watched = self._watched
        return watched[0] is layer.weight and [t._version for t in watched] == self._versions

    def _decide(self) -> None:
        layer = self.layer
        self._lean = not (
            layer.training
            or torch.is_grad_enabled()
            or _hooked(layer)
            or layer.observing
            or layer.uncalibrated
            or torch.jit.is_tracing()
        )
        if self._lean:
            self._watched = self._watch()
            if any(t.is_inference() for t in self._watched):  # no version counters to watch
                self._lean = False
                return
            self._versions = [t._version for t in self._watched]
            self._t = layer.crossbar.t_s
            self._comp = layer._compensation(self._t)

    def __call__(self, x: Tensor) -> Tensor:
        if self._lean and not self._unchanged():
            self._lean = None  # something changed: a plain call, then decide again
        if not self._lean:
            y = self.layer(x)
            if self._lean is None:
                self._decide()
            return y
        layer, crossbar = self.layer, self.layer.crossbar
        crossbar.begin_draw()
        w = crossbar.read(self._t)
        drive = layer.dac(x)
        y = layer._read_tiles(drive, w, crossbar.weight_scale)
        comp = self._comp
        if isinstance(comp, Tensor):
            comp = layer._place_columns(comp, y)
        return layer._rescale_bias(y, drive.range, comp, layer.accumulate)
