"""``AnalogConv3d`` and ``AnalogConvTranspose1d/2d/3d``: kernels on tile layers, one per group.

Each group's kernel is a matrix on its own :class:`~aimc.nn.AnalogLinear` tile layer (``kernel``,
or ``kernel_g{k}`` for group ``k``) whose weight is a *view* of torch's ``weight`` parameter, so
the parameter stays the one digital master copy (its name, its gradients, its ``state_dict``
key) and every edit of it reaches the tiles.

- ``AnalogConv3d`` maps the unrolled kernel (``C_in/groups * kd * kh * kw`` rows ×
  ``C_out/groups`` columns) and runs one MVM per output voxel, as the 1-d/2-d convolutions do.
- ``AnalogConvTranspose1d/2d/3d`` map each input pixel's contributions: ``C_in/groups`` rows
  × ``C_out/groups * prod(kernel_size)`` columns, one MVM per *input* pixel (or voxel; no
  zero-stuffed inputs); the overlapping column outputs are added into the output digitally
  (col2im), as torch computes a transposed convolution. The bias is added digitally.

Padding modes, strides, dilation, groups, ``output_padding`` and ``output_size`` are torch's.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc.config import AnalogConfig
from aimc.nn.base import _DEFER_PROGRAM, AnalogLayerBase, deferred_programming, name_seed
from aimc.nn.composite import AnalogContainer
from aimc.nn.conv import PAD_MODES
from aimc.nn.linear import AnalogLinear

__all__ = [
    "AnalogConv3d",
    "AnalogConvTranspose1d",
    "AnalogConvTranspose2d",
    "AnalogConvTranspose3d",
]


class _KernelTiles(AnalogContainer):
    """Shared parts: one tile layer per group, its weight a view of ``self.weight``."""

    def _group_matrix(self, g: int) -> Tensor:
        """Group ``g``'s kernel as the ``(out_features, in_features)`` matrix of its tiles."""
        raise NotImplementedError

    def _tile_name(self, g: int) -> str:
        return "kernel" if self.groups == 1 else f"kernel_g{g}"

    def _init_kernel_tiles(self, config: Optional[AnalogConfig]) -> None:
        cfg = AnalogLayerBase._resolve_config(config)
        self.config = cfg
        self._alias_keys = ()
        for g in range(self.groups):
            out_f, in_f = self._group_matrix(g).shape
            with deferred_programming():
                tile = AnalogLinear(
                    in_f, out_f, bias=False, config=cfg, device=self.weight.device,
                    dtype=self.weight.dtype,
                )  # fmt: skip
            del tile._parameters["weight"]  # the weight is a view of the parent's parameter
            tile.crossbar.seed.fill_(name_seed(cfg.seed, self._tile_name(g)))
            self.add_module(self._tile_name(g), tile)
        self._refresh_views()
        self.layer_name = type(self).__name__
        if not _DEFER_PROGRAM.get():
            self.program()

    def _refresh_views(self) -> None:
        """Point each tile layer at the current ``weight`` (a new parameter after ``.to()``,
        a new autograd view each forward)."""
        for g, (_, tile) in enumerate(self.tile_layers()):
            tile.weight = self._group_matrix(g)

    def program(self, seed: Optional[int] = None) -> None:
        self._refresh_views()
        super().program(seed)

    def forward(self, input: Tensor, output_size: Optional[list[int]] = None) -> Tensor:
        args = () if output_size is None else (output_size,)  # transposed convs take it
        if self._runs_digital():
            return self._FLOAT_MODULE.forward(self, input, *args)
        self._auto_calibrate(lambda: self._analog_forward(input, *args))
        return self._analog_forward(input, *args)

    def _check_channels(self, x: Tensor, spatial: int) -> bool:
        """Validate ``x``; returns whether it is batched."""
        if not isinstance(x, Tensor) or x.dim() not in (spatial + 1, spatial + 2):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{self.layer_name}: input must be (N, C_in, *{spatial} spatial dims) or "
                f"unbatched, got {got}"
            )
        if x.shape[-spatial - 1] != self.in_channels:
            raise ValueError(
                f"{self.layer_name}: input has {x.shape[-spatial - 1]} channels, "
                f"in_channels={self.in_channels}"
            )
        return x.dim() == spatial + 2

    def _run_groups(self, rows: Tensor) -> Tensor:
        """``rows`` ``[M, groups, in_features]`` through each group's tiles: ``[M, groups *
        out_features]``."""
        self._refresh_views()
        tiles = [tile for _, tile in self.tile_layers()]
        return torch.cat([tile(rows[:, g]) for g, tile in enumerate(tiles)], dim=-1)

    def _add_bias(self, y: Tensor) -> Tensor:
        if self.bias is None:
            return y
        return y + self.bias.view(-1, *([1] * (y.dim() - 2)))

    def extra_repr(self) -> str:
        return f"{self._FLOAT_MODULE.extra_repr(self)}, {self._analog_repr()}"


class AnalogConv3d(_KernelTiles, nn.Conv3d):
    """``nn.Conv3d`` on tiles: the torch signature followed by ``config``.

    One MVM per output voxel on the unrolled kernel of each group; all padding modes, strides,
    dilations and groups of torch.

    Shape:
        - Input: ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)``; Output: ``(N, C_out, D', H', W')``.

    Examples:
        >>> import torch, aimc
        >>> conv = AnalogConv3d(2, 4, 3, padding=1, config=aimc.AnalogConfig.ideal()).eval()
        >>> conv(torch.randn(1, 2, 4, 4, 4)).shape
        torch.Size([1, 4, 4, 4, 4])
    """

    _FLOAT_MODULE = nn.Conv3d

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
        nn.Conv3d.__init__(
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
        self._init_kernel_tiles(config)

    @staticmethod
    def _ctor_kwargs(module: nn.Module) -> dict[str, Any]:
        m = module
        return {
            "in_channels": m.in_channels,
            "out_channels": m.out_channels,
            "kernel_size": m.kernel_size,
            "stride": m.stride,
            "padding": m.padding,
            "dilation": m.dilation,
            "groups": m.groups,
            "bias": m.bias is not None,
            "padding_mode": m.padding_mode,
        }

    def _group_matrix(self, g: int) -> Tensor:
        cout_g = self.out_channels // self.groups
        return self.weight[g * cout_g : (g + 1) * cout_g].reshape(cout_g, -1)

    def _analog_forward(self, x: Tensor) -> Tensor:
        batched = self._check_channels(x, 3)
        if not batched:
            x = x.unsqueeze(0)
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            pad = self._reversed_padding_repeated_twice
        else:
            pad = [p for p in reversed(self.padding) for _ in range(2)]
        if any(pad):
            mode = PAD_MODES[self.padding_mode]
            x = F.pad(x, pad, mode=mode) if mode != "constant" else F.pad(x, pad)
        for d in range(3):  # sliding windows of every spatial dim (dilated: take every d-th)
            k, s, dil = self.kernel_size[d], self.stride[d], self.dilation[d]
            x = x.unfold(2 + d, dil * (k - 1) + 1, s)
        x = x[..., :: self.dilation[0], :: self.dilation[1], :: self.dilation[2]]
        n, c, do, ho, wo = x.shape[:5]
        rows = x.permute(0, 2, 3, 4, 1, 5, 6, 7).reshape(n * do * ho * wo, self.groups, -1)
        y = self._run_groups(rows).view(n, do, ho, wo, -1).permute(0, 4, 1, 2, 3)
        y = self._add_bias(y)
        return y if batched else y.squeeze(0)


class _AnalogConvTransposeNd(_KernelTiles):
    """Shared forward of the transposed convolutions (1-d runs as height 1)."""

    _spatial: int

    @staticmethod
    def _ctor_kwargs(module: nn.Module) -> dict[str, Any]:
        m = module
        return {
            "in_channels": m.in_channels,
            "out_channels": m.out_channels,
            "kernel_size": m.kernel_size,
            "stride": m.stride,
            "padding": m.padding,
            "output_padding": m.output_padding,
            "groups": m.groups,
            "bias": m.bias is not None,
            "dilation": m.dilation,
            "padding_mode": m.padding_mode,
        }

    def _group_matrix(self, g: int) -> Tensor:
        cin_g = self.in_channels // self.groups
        return self.weight[g * cin_g : (g + 1) * cin_g].reshape(cin_g, -1).t()

    def _two(self, v, fill: int) -> tuple[int, int]:
        v = tuple(v)
        return (fill, v[0]) if self._spatial == 1 else (v[0], v[1])

    def _analog_forward(self, x: Tensor, output_size: Optional[list[int]] = None) -> Tensor:
        nd = self._spatial
        batched = self._check_channels(x, nd)
        if not batched:
            x = x.unsqueeze(0)
        out_pad = self._output_padding(
            x, output_size, self.stride, self.padding, self.kernel_size, nd, self.dilation
        )
        # col2im into the uncropped output, then torch's crop: padding from the start, and
        # from the end padding less output_padding (zeros where that reaches past it)
        full = [
            (x.shape[2 + d] - 1) * self.stride[d] + self.dilation[d] * (self.kernel_size[d] - 1) + 1
            for d in range(nd)
        ]
        n, length = x.shape[0], math.prod(x.shape[2:])
        rows = x.reshape(n, self.groups, -1, length).permute(0, 3, 1, 2)
        cols = self._run_groups(rows.reshape(n * length, self.groups, -1))  # [N*L, G*Cg*K]
        k = math.prod(self.kernel_size)
        cols = cols.view(n, length, self.groups, -1, k).permute(0, 2, 3, 4, 1)
        if nd <= 2:
            y = F.fold(
                cols.reshape(n * self.groups, -1, length),
                self._two(full, 1),
                self._two(self.kernel_size, 1),
                dilation=self._two(self.dilation, 1),
                stride=self._two(self.stride, 1),
            )
        else:  # F.fold is 2-d only: add each kernel offset's outputs into a strided slice
            y = self._col2im(
                cols.reshape(n, self.out_channels, *self.kernel_size, *x.shape[2:]), full
            )
        pad = []
        for d in reversed(range(nd)):  # F.pad order: last dim first; negative pads crop
            pad += [-self.padding[d], out_pad[d] - self.padding[d]]
        y = F.pad(y, pad)
        y = y.view(n, self.out_channels, *y.shape[2:])
        if nd == 1:
            y = y.squeeze(2)
        y = self._add_bias(y)
        return y if batched else y.squeeze(0)

    def _col2im(self, cols: Tensor, full: list[int]) -> Tensor:
        """The uncropped output ``[N, C_out, *full]`` of per-pixel column outputs ``cols``
        ``[N, C_out, *kernel_size, *input size]``: kernel offset ``o`` of input pixel ``i``
        lands at ``i * stride + o * dilation``."""
        size = cols.shape[2 + self._spatial :]
        y = cols.new_zeros(*cols.shape[:2], *full)
        for offset in itertools.product(*(range(k) for k in self.kernel_size)):
            where = tuple(
                slice(o * dil, o * dil + (n - 1) * s + 1, s)
                for o, dil, n, s in zip(offset, self.dilation, size, self.stride)
            )
            y[(slice(None), slice(None), *where)] += cols[(slice(None), slice(None), *offset)]
        return y

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
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
            output_padding,
            groups,
            bias,
            dilation,
            padding_mode,
            device=device,
            dtype=dtype,
        )
        self._init_kernel_tiles(config)


class AnalogConvTranspose1d(_AnalogConvTransposeNd, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` on tiles: the torch signature followed by ``config``; the forward
    takes torch's optional ``output_size``. One MVM per input position per group.

    Shape:
        - Input: ``(N, C_in, L)`` or ``(C_in, L)``; Output: ``(N, C_out, L_out)``.
    """

    _FLOAT_MODULE = nn.ConvTranspose1d
    _spatial = 1


class AnalogConvTranspose2d(_AnalogConvTransposeNd, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` on tiles: the torch signature followed by ``config``; the forward
    takes torch's optional ``output_size``. One MVM per input pixel per group.

    Shape:
        - Input: ``(N, C_in, H, W)`` or ``(C_in, H, W)``; Output: ``(N, C_out, H_out, W_out)``.

    Examples:
        >>> import torch, aimc
        >>> up = AnalogConvTranspose2d(4, 2, 3, stride=2, config=aimc.AnalogConfig.ideal()).eval()
        >>> up(torch.randn(1, 4, 5, 5)).shape
        torch.Size([1, 2, 11, 11])
    """

    _FLOAT_MODULE = nn.ConvTranspose2d
    _spatial = 2


class AnalogConvTranspose3d(_AnalogConvTransposeNd, nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` on tiles: the torch signature followed by ``config``; the forward
    takes torch's optional ``output_size``. One MVM per input voxel per group.

    Shape:
        - Input: ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)``; Output:
          ``(N, C_out, D_out, H_out, W_out)``.

    Examples:
        >>> import torch, aimc
        >>> up = AnalogConvTranspose3d(4, 2, 2, stride=2, config=aimc.AnalogConfig.ideal()).eval()
        >>> up(torch.randn(1, 4, 3, 3, 3)).shape
        torch.Size([1, 2, 6, 6, 6])
    """

    _FLOAT_MODULE = nn.ConvTranspose3d
    _spatial = 3
