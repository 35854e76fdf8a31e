"""``AnalogConv1d`` and ``AnalogConv2d``: convolutions computed on tiled crossbars.

A conv layer maps its unrolled kernel (``C_in/groups * kh * kw`` rows × ``C_out/groups``
columns per group) and runs one MVM per output pixel. Each group of a grouped or depthwise conv
takes its own tiles. When row-tile boundaries fall on input-channel boundaries (one row tile, or
``rows`` a multiple of ``kh * kw``), each row tile runs as one convolution (no unfold);
otherwise the input is unfolded into rows and the tiles run as one batched matmul.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc import functional as AF
from aimc.config import AnalogConfig
from aimc.nn.base import AnalogLayerBase
from aimc.tile.dac import Drive
from aimc.tile.geometry import TileGeometry
from aimc.tile.readout import (
    TABLE_MIN_ROWS,
    Convert,
    TableRead,
    lsb_operands,
    mvms_per_chunk,
    plane_base,
    read_tiles,
    summarizes,
    tile_matrices,
    tile_rows,
    valid_rows,
)

__all__ = ["AnalogConv1d", "AnalogConv2d"]

PAD_MODES = {  # torch's padding_mode -> F.pad's mode
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
}


class _AnalogConvNd(AnalogLayerBase):
    """Shared analog conv machinery; 1-d convs run as 2-d convs of height 1."""

    _spatial: int

    def _init_conv(self, config: Optional[AnalogConfig]) -> None:
        cfg = self._resolve_config(config)
        kernel = tuple(self.kernel_size)
        cin_g = self.in_channels // self.groups
        kk = 1
        for k in kernel:
            kk *= k
        k_rows = cin_g * kk
        row_block = min(cfg.tile.rows, k_rows)
        if cfg.mapping.conv_alignment == "channel" and kk <= cfg.tile.rows:
            row_block = min(cin_g, cfg.tile.rows // kk) * kk  # whole channels per row tile
        out_cols = self.out_channels // self.groups
        geometry = TileGeometry.for_config(cfg, self.groups, k_rows, out_cols, row_block)
        self._init_analog(cfg, geometry)

    # 2-d views of the conv hyper-parameters
    def _two(self, v, fill: int = 1) -> tuple[int, int]:
        """A 2-d version of a 1-d/2-d hyper-parameter (height ``fill`` for 1-d convs)."""
        v = tuple(v)
        return (fill, v[0]) if self._spatial == 1 else (v[0], v[1])

    @property
    def _kernel2(self) -> tuple[int, int]:
        return self._two(self.kernel_size)

    def weight_matrix(self, weight: Optional[Tensor] = None) -> Tensor:
        w = self.weight if weight is None else weight
        g = self.geometry
        return w.reshape(g.groups, g.out_cols, g.in_rows).transpose(1, 2)

    def _digital_forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight, self.bias)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.layer_name} expects a Tensor, got {type(x).__name__}")
        nd = self._spatial
        if x.dim() not in (nd + 1, nd + 2) or x.shape[-nd - 1] != self.in_channels:
            want = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
            raise ValueError(
                f"{self.layer_name}: input must have shape {want} or unbatched with "
                f"C=in_channels={self.in_channels}, got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        unbatched = x.dim() == self._spatial + 1
        if unbatched:
            x = x.unsqueeze(0)
        y = super().forward(x)
        return y.squeeze(0) if unbatched else y

    def _pad_input(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Pad ``x`` (any padding mode or string padding) so the tile conv needs none."""
        if self.padding_mode == "zeros" and not isinstance(self.padding, str):
            return x, self._two(self.padding, fill=0)
        pad = self._reversed_padding_repeated_twice
        if any(pad):
            mode = PAD_MODES[self.padding_mode]
            x = F.pad(x, pad, mode=mode) if mode != "constant" else F.pad(x, pad)
        return x, (0, 0)

    def _as_2d(self, x: Tensor) -> Tensor:
        return x.unsqueeze(2) if self._spatial == 1 else x

    def _tiles_forward(self, xq: Tensor, w: Tensor, scale: Tensor) -> Tensor:
        g = self.geometry
        xpad, pad2 = self._pad_input(xq)
        x2 = self._as_2d(xpad)
        kh, kw = self._kernel2
        stride, dil = self._two(self.stride), self._two(self.dilation)
        pr = self.config.tile.parallel_rows
        whole_reads = pr is None or pr >= g.row_block  # a read holds a whole row tile
        if whole_reads and g.row_block % (kh * kw) == 0:  # whole channels: a conv per row tile
            y = self._row_tile_convs(x2, w, scale, pad2, stride, dil)
        else:
            cols = F.unfold(x2, (kh, kw), dilation=dil, padding=pad2, stride=stride)
            pb, _, length = cols.shape
            h, wd = x2.shape[-2:]
            ho = (h + 2 * pad2[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
            wo = (wd + 2 * pad2[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
            rows = cols.view(pb, g.groups, g.in_rows, length).permute(0, 3, 1, 2)
            rows = rows.reshape(pb * length, g.groups, g.in_rows)
            w, scale, rows = self.crossbar.split_reads(w, scale, rows)
            gens = self._adc_generators()
            p, in_lsb = self.adc.read(rows, w, gens)
            xsum = None
            if not self.crossbar.differential:
                xsum = AF.tile_matmul(rows, torch.ones_like(w[:1, ..., :1]))
            dims = {"s": 0, "g": 1, "rt": 2, "n": 4}
            y = self._read_out(p, dims, scale, xsum, in_lsb=in_lsb, gens=gens)
            y = y.view(g.groups, pb, length, g.out_cols).permute(1, 0, 3, 2)
            y = y.reshape(pb, g.groups * g.out_cols, ho, wo)
        return y.squeeze(2) if self._spatial == 1 else y

    def _row_tile_convs(self, x2: Tensor, w: Tensor, scale: Tensor, pad2, stride, dil) -> Tensor:
        """Each row tile holds whole input channels, so its column currents are a conv of those
        channels with the tile's weights: no unfold, and each tile's partial sums are digitized
        and accumulated before the next tile's are made."""
        g = self.geometry
        kh, kw = self._kernel2
        n_rt, cin_g, s = g.n_row_tiles, self.in_channels // self.groups, w.shape[0]
        cpt = g.row_block // (kh * kw)
        pb, _, h, wd = x2.shape
        xg = x2.view(pb, g.groups, cin_g, h, wd)
        wt = w.view(s, g.groups, n_rt, cpt, kh, kw, g.out_cols)
        dims = {"s": 3, "g": 1, "rt": 2, "n": 4}
        parts, sums = [], []
        for rt in range(n_rt):
            c0, c1 = rt * cpt, min(cin_g, (rt + 1) * cpt)
            xr = xg[:, :, c0:c1].reshape(pb, g.groups * (c1 - c0), h, wd)
            wr = wt[:, :, rt, : c1 - c0].permute(1, 0, 5, 2, 3, 4)  # [Gr, S, N, c, kh, kw]
            wr = wr.reshape(g.groups * s * g.out_cols, c1 - c0, kh, kw)
            out = F.conv2d(xr, wr, None, stride, pad2, dil, g.groups)
            ho, wo = out.shape[-2:]
            parts.append(out.view(pb, g.groups, 1, s, g.out_cols, ho * wo))
            if not self.crossbar.differential:
                ones = torch.ones(g.groups, c1 - c0, kh, kw, dtype=xr.dtype, device=xr.device)
                xsum = F.conv2d(xr, ones, None, stride, pad2, dil, g.groups)
                sums.append(xsum.view(pb, g.groups, 1, 1, 1, ho * wo))
        self.adc.observe(parts, dims["s"])  # one full scale for all row tiles
        y = None
        for rt, p in enumerate(parts):
            xsum = sums[rt] if sums else None
            y = self._read_out(p, dims, scale[:, rt : rt + 1], xsum, observed=True, out=y)
        return y.reshape(pb, g.groups * g.out_cols, ho, wo)

    def _tiles_batched(self, drive: Drive, w: Tensor, convert: Convert, lsbs: list[float]):
        g = self.geometry
        (kh, kw), pr = self._kernel2, self.config.tile.parallel_rows
        # whole channels per row tile and one pass (no cycles, no slices): the general path's
        # one conv per row tile is faster than any batched form of it (a grouped conv over
        # all row tiles with its channels-last copies measured 1.3-1.5x slower, the unfolded
        # GEMM 4x); else unfolded rows through one GEMM per row tile
        single = len(lsbs) == 1 and w.shape[0] == 1 and self.dac.cycle_weights() == [1.0]
        whole = (pr is None or pr >= g.row_block) and g.row_block % (kh * kw) == 0
        if single and whole:
            return None
        xpad, pad2 = self._pad_input(drive.x)
        conv = (self._two(self.stride), pad2, self._two(self.dilation))
        planes = drive.plane_weights is not None
        y = self._unfolded_batched(self._as_2d(xpad), w, convert, lsbs, conv, planes)
        return y.squeeze(2) if self._spatial == 1 else y

    def _out_size(self, x2: Tensor, conv) -> tuple[int, int]:
        (kh, kw), (stride, pad2, dil) = self._kernel2, conv
        h, wd = x2.shape[-2:]
        ho = (h + 2 * pad2[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
        wo = (wd + 2 * pad2[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
        return ho, wo

    @torch.no_grad()
    def _unfolded_batched(
        self, x2: Tensor, w: Tensor, convert: Convert, lsbs: list[float], conv, planes: bool
    ) -> Tensor:
        """Tiles that cut through input channels, or partial-row reads, or several passes: the
        input unfolded into tile rows a chunk of MVMs at a time (whole samples, or output rows
        of one sample; the rows of the whole batch never exist at once), each chunk laid out
        per row tile (:func:`~aimc.tile.readout.tile_rows`) and read through
        :func:`~aimc.tile.readout.read_tiles`; bit planes (``planes``) on a CPU through
        lookup tables (:class:`~aimc.tile.readout.TableRead`) when there are enough of them."""
        g = self.geometry
        stride, pad2, dil = conv
        (kh, kw), pr, r = self._kernel2, self.config.tile.parallel_rows, w.shape[3]
        reads = 1 if pr is None or pr >= r else -(-r // pr)
        ws = AF.split_reads(w, pr) if reads > 1 else w
        rw = self._readout_weights(lsbs, reads)
        cycles = rw.cycle.numel()
        pb, c, h, wd = x2.shape
        b = pb // cycles
        ho, wo = self._out_size(x2, conv)
        length = ho * wo
        base = None  # bit planes read through lookup tables: their values (2 or 3)
        if not summarizes(convert) and pb * length >= TABLE_MIN_ROWS:
            base = plane_base(x2, planes)
        valid = valid_rows(g.in_rows, r, pr)
        if base is None:  # the smaller of the input (before unfolding) and the tiles / LSB
            x2, tile_lsbs = lsb_operands(x2, ws, lsbs, rw.xsum is not None)
            wt = tile_matrices(ws, tile_lsbs)  # [Gr * n_rt * reads, rows per read, S * N]
            table, width, tiles = None, wt.shape[1], wt.shape[0]
        else:  # the tables made from the tiles as stored
            table = TableRead(ws, lsbs, rw, base, valid)
            width, tiles = table.width, table.tiles
        if any(pad2):  # padded once: a chunk of output rows then unfolds without padding
            x2 = F.pad(x2, (pad2[1], pad2[1], pad2[0], pad2[0]))
        xs = x2.view(cycles, b, c, x2.shape[2], x2.shape[3])
        y = torch.empty(b, g.groups, g.out_cols, ho, wo, dtype=x2.dtype, device=x2.device)
        size = x2.element_size()
        mvms = mvms_per_chunk(
            cycles,
            cycles * tiles * width * size,
            cycles * g.groups * ws.shape[0] * g.out_cols * size,
        )
        if table is not None:  # larger chunks unfolded for their indices
            mvms = max(mvms, table.mvms_per_index(cycles, size))
        zero = rw.xsum is not None or table is not None
        buf = None
        xcodes = None  # unsigned bit planes: indices from the unfolded codes (a cycles-th)
        if table is not None and table.takes_codes(r, cycles):
            xcodes = table.codes(xs)  # [B, C, H, W]

        def unfolded(src: Tensor, b0: int, b1: int, o0: int, o1: int) -> Tensor:
            # ``src`` [..., B, C, H, W]: the input window of output rows o0..o1 of samples
            # b0..b1, unfolded (leading dimensions flattened into the samples)
            i0 = o0 * stride[0]
            i1 = (o1 - 1) * stride[0] + dil[0] * (kh - 1) + 1
            xc = src[..., b0:b1, :, i0:i1, :]
            xc = xc.reshape(-1, c, i1 - i0, xc.shape[-1])
            return F.unfold(xc, (kh, kw), dilation=dil, stride=stride)

        def unfold(b0: int, b1: int, o0: int, o1: int) -> Tensor:
            cols = unfolded(xs, b0, b1, o0, o1)
            return tile_rows(cols, g.groups, r, pr, zero=zero, width=width)

        def index(b0: int, b1: int, o0: int, o1: int, out: Tensor) -> None:
            if xcodes is None:
                out.copy_(table.index(unfold(b0, b1, o0, o1)).view(out.shape))
            else:
                table.index_codes(unfolded(xcodes, b0, b1, o0, o1), cycles, out)

        hold = mvms if table is None else table.mvms_per_read(cycles)
        for b0, b1, o0, o1 in _spans(0, b, 0, ho, wo, hold):
            mk = (b1 - b0) * (o1 - o0) * wo
            out = torch.empty(g.groups, mk, g.out_cols, dtype=x2.dtype, device=x2.device)
            if table is None:
                buf = read_tiles(unfold(b0, b1, o0, o1), wt, convert, rw, g.groups, out, buf, valid)
            else:  # the indices of the span, a chunk of MVMs at a time, then one read
                ix = torch.empty(
                    tiles, cycles, mk, table.n_groups, dtype=torch.int64, device=x2.device
                )
                m0 = 0
                for sub in _spans(b0, b1, o0, o1, wo, mvms):
                    ms = (sub[1] - sub[0]) * (sub[3] - sub[2]) * wo
                    index(*sub, ix[:, :, m0 : m0 + ms])
                    m0 += ms
                table.read(ix.view(tiles, cycles * mk, table.n_groups), convert, out)
            out = out.view(g.groups, b1 - b0, o1 - o0, wo, g.out_cols).permute(1, 0, 4, 2, 3)
            y[b0:b1, :, :, o0:o1] = out
        return y.view(b, g.groups * g.out_cols, ho, wo)

    def _place_columns(self, comp: Tensor, y: Tensor) -> Tensor:
        return comp.reshape(-1, *([1] * (y.dim() - 2)))

    def _add_bias(self, y: Tensor) -> Tensor:
        if self.bias is None:
            return y
        b = self.bias.view(-1, *([1] * (y.dim() - 2)))
        if y.requires_grad or (torch.is_grad_enabled() and self.bias.requires_grad):
            return y + b
        return y.add_(b)

    def _rows_of(self, xn: Tensor) -> Tensor:
        g = self.geometry
        if xn.dim() == self._spatial + 1:
            xn = xn.unsqueeze(0)
        xpad, pad2 = self._pad_input(xn)
        cols = F.unfold(
            self._as_2d(xpad),
            self._kernel2,
            dilation=self._two(self.dilation),
            padding=pad2,
            stride=self._two(self.stride),
        )
        pb, _, length = cols.shape
        rows = cols.view(pb, g.groups, g.in_rows, length).permute(0, 3, 1, 2)
        return rows.reshape(pb * length, g.groups, g.in_rows)

    def mvm_count(self, x: Tensor) -> int:
        self._check_input(x)
        with torch.no_grad():
            shape = self._digital_forward(x).shape
        batch = shape[0] if x.dim() == self._spatial + 2 else 1
        pixels = 1
        for d in shape[-self._spatial :]:
            pixels *= d
        return batch * pixels

    @staticmethod
    def _ctor_args(module: nn.Module) -> tuple:
        m = module
        return (
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            m.groups,
            m.bias is not None,
            m.padding_mode,
        )

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        config: Optional[AnalogConfig] = None,
        *,
        device=None,
        dtype=None,
    ) -> None:
        self._FLOAT_MODULE.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device=device,
            dtype=dtype,
        )
        self._init_conv(config)


class AnalogConv1d(_AnalogConvNd, nn.Conv1d):
    """``nn.Conv1d`` on tiled crossbars: the torch signature followed by ``config``.

    Shape:
        - Input: ``(N, C_in, L)`` or ``(C_in, L)``; Output: ``(N, C_out, L_out)``.
    """

    _FLOAT_MODULE = nn.Conv1d
    _spatial = 1


class AnalogConv2d(_AnalogConvNd, nn.Conv2d):
    """``nn.Conv2d`` on tiled crossbars: the torch signature followed by ``config``.

    Grouped and depthwise convs put each group on its own tiles.

    Shape:
        - Input: ``(N, C_in, H, W)`` or ``(C_in, H, W)``; Output: ``(N, C_out, H_out, W_out)``.
    """

    _FLOAT_MODULE = nn.Conv2d
    _spatial = 2


def _spans(b0: int, b1: int, o0: int, o1: int, wo: int, mvms: int):
    """``(b0, b1, o0, o1)`` chunks of about ``mvms`` MVMs (output positions) of samples
    ``b0..b1``, output rows ``o0..o1`` (of ``wo`` positions each), in output order: whole
    samples when one fits, else output rows of one sample."""
    length = (o1 - o0) * wo
    if mvms >= length:
        step = mvms // length
        for s0 in range(b0, b1, step):
            yield s0, min(b1, s0 + step), o0, o1
        return
    oyk = max(1, mvms // wo)
    for s0 in range(b0, b1):
        for r0 in range(o0, o1, oyk):
            yield s0, s0 + 1, r0, min(o1, r0 + oyk)
