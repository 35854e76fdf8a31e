"""The numerical steps of an analog layer as pure tensor functions.

Layouts: a layer's weights in *tile layout* are ``[Gr, n_rt, R, N]`` (groups, row tiles, tile rows,
weight columns); sliced device values add a leading slice axis ``S``. Values are normalized: inputs
by the DAC range to ``[-1, 1]``, weights by their scale to ``[-1, 1]``, currents by
``(g_max - g_min) * V_read`` so that one device at ``g_max`` and full input gives 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from aimc.sampling import fill_normal_
from device_models.converters import round_ste

__all__ = [
    "to_tile_layout",
    "from_tile_layout",
    "weight_scales",
    "slice_coefficients",
    "slice_weights",
    "slice_sums",
    "tile_matmul",
    "split_reads",
    "pad_reads",
    "randn_chunked",
    "percentile_abs",
]


def to_tile_layout(wm: Tensor, rows: int) -> Tensor:
    """Cut ``wm`` ``[Gr, K, N]`` into row tiles of ``rows`` rows: ``[Gr, n_rt, rows, N]``.

    The last tile is padded with zero rows.

    Examples:
        >>> to_tile_layout(torch.ones(1, 3, 2), rows=2).shape
        torch.Size([1, 2, 2, 2])
    """
    gr, k, n = wm.shape
    n_rt = math.ceil(k / rows)
    if n_rt * rows != k:
        wm = F.pad(wm, (0, 0, 0, n_rt * rows - k))
    return wm.reshape(gr, n_rt, rows, n)


def from_tile_layout(wt: Tensor, in_rows: int) -> Tensor:
    """Inverse of :func:`to_tile_layout`: ``[Gr, n_rt, R, N]`` → ``[Gr, in_rows, N]``."""
    gr, n_rt, r, n = wt.shape
    return wt.reshape(gr, n_rt * r, n)[:, :in_rows]


def weight_scales(wt: Tensor, mode: str, weights_per_col_tile: int, zero: float = 1.0) -> Tensor:
    """Max ``|w|`` of each scaling group, shaped ``[Gr, n_rt, 1, N]`` (all-zero groups give
    ``zero``).

    ``mode`` is ``"layer"``, ``"tile"`` (blocks of ``R × weights_per_col_tile``) or ``"column"``.

    Examples:
        >>> w = torch.tensor([[[[1.0, -4.0], [2.0, 0.0]]]])
        >>> weight_scales(w, "column", 2).flatten().tolist()
        [2.0, 4.0]
        >>> weight_scales(w, "layer", 2).flatten().tolist()
        [4.0, 4.0]
    """
    a = wt.detach().abs()
    gr, n_rt, r, n = a.shape
    if mode == "column":
        s = a.amax(dim=2, keepdim=True)
    elif mode == "layer":
        s = a.amax().expand(gr, n_rt, 1, n)
    elif mode == "tile":
        n_ct = math.ceil(n / weights_per_col_tile)
        pad = n_ct * weights_per_col_tile - n
        ap = F.pad(a, (0, pad)) if pad else a
        blocks = ap.reshape(gr, n_rt, r, n_ct, weights_per_col_tile).amax(dim=(2, 4))
        s = blocks.repeat_interleave(weights_per_col_tile, dim=2)[..., :n].unsqueeze(2)
    else:
        raise ValueError(f"weight_scaling must be 'layer', 'tile' or 'column', got {mode!r}")
    return torch.where(s > 0, s, torch.full_like(s, zero)).contiguous()


def slice_coefficients(
    encoding: str,
    weight_bits: Optional[int],
    slices: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Shift-add weight of each slice ``[S]``: a full-scale digit of slice ``s`` (``b`` bits a
    slice) is worth ``(2**b - 1) * 2**(b*s) / (2**magnitude_bits - 1)`` of the normalized value.

    Examples:
        >>> slice_coefficients("offset", 4, 2, torch.float64).tolist()
        [0.2, 0.8]
    """
    if weight_bits is None or slices == 1:
        return torch.ones(1, dtype=dtype, device=device)
    mag_bits = weight_bits - 1 if encoding == "differential" else weight_bits
    b, q_max = math.ceil(mag_bits / slices), float(2**mag_bits - 1)
    vals = [(2.0**b - 1) * 2.0 ** (b * s) / q_max for s in range(slices)]
    return torch.tensor(vals, dtype=dtype, device=device)


def slice_weights(
    wn: Tensor, encoding: str, weight_bits: Optional[int], slices: int
) -> tuple[Tensor, Tensor]:
    """Split normalized weights ``wn`` in ``[-1, 1]`` into device values per slice.

    Returns ``(v, coef)``: ``v`` ``[S, *wn.shape]`` holds each slice's device value in ``[0, 1]``
    (the magnitude for ``"differential"``, ``(wn + 1) / 2`` for ``"offset"``) and ``coef`` ``[S]``
    the shift-add weights, so that ``sum_s coef[s] * v[s]`` is the (quantized) magnitude or offset
    value. Gradients pass straight through the quantization (to the most significant slice).

    Examples:
        >>> v, c = slice_weights(torch.tensor([0.4, -1.0]), "differential", 3, 1)
        >>> v.tolist(), c.tolist()
        ([[0.3333333432674408, 1.0]], [1.0])
        >>> v, c = slice_weights(torch.tensor([1.0]), "offset", 4, 2)
        >>> (v * c[:, None]).sum(0).tolist()
        [1.0]
    """
    u = wn.abs() if encoding == "differential" else (wn + 1.0) * 0.5
    coef = slice_coefficients(encoding, weight_bits, slices, wn.dtype, wn.device)
    if weight_bits is None:
        return u.unsqueeze(0), coef
    mag_bits = weight_bits - 1 if encoding == "differential" else weight_bits
    q_max = float(2**mag_bits - 1)
    q = round_ste(u * q_max)
    if slices == 1:
        return (q / q_max).unsqueeze(0), coef
    b = math.ceil(mag_bits / slices)
    d_max = float(2**b - 1)
    rem = q.detach()
    parts = []
    for _ in range(slices):
        digit = torch.remainder(rem, 2.0**b)
        parts.append(digit / d_max)
        rem = (rem - digit) / 2.0**b
    if q.requires_grad:  # straight-through: route d(value) to the top slice, scaled by its coef
        parts[-1] = parts[-1] + (q / q_max - (q / q_max).detach()) / coef[-1]
    return torch.stack(parts), coef


def slice_sums(wn: Tensor, encoding: str, weight_bits: Optional[int], slices: int) -> Tensor:
    """``slice_weights(wn, ...)[0].sum((0, -1))`` without the ``[S, ...]`` stack: the summed
    device values of each row over slices and columns (integer digit sums when quantized).

    Examples:
        >>> wn = torch.tensor([[0.5, -1.0], [0.0, 0.25]])
        >>> v, _ = slice_weights(wn, "differential", 5, 2)
        >>> torch.equal(slice_sums(wn, "differential", 5, 2), v.sum((0, -1)))
        True
    """
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


def tile_matmul(x: Tensor, w: Tensor, add: Optional[Tensor] = None, alpha: float = 1.0) -> Tensor:
    """Column currents of every tile: ``x`` ``[M, Gr, K]`` and ``w`` ``[S, Gr, n_rt, R, N]``.

    Returns the partial sums ``[S, Gr, n_rt, M, N]`` (one batched matmul over all tiles). With
    ``add`` (contiguous, of the result's shape) returns ``add + alpha * currents``, computed in
    place in ``add`` by the matmul itself (BLAS ``beta = 1``: no extra pass over the result).

    Examples:
        >>> tile_matmul(torch.ones(2, 1, 3), torch.ones(1, 1, 2, 2, 4)).shape
        torch.Size([1, 1, 2, 2, 4])
        >>> tile_matmul(torch.ones(2, 1, 2), torch.ones(1, 1, 1, 2, 1), torch.ones(1, 1, 1, 2, 1),
        ...             alpha=0.5).flatten().tolist()
        [2.0, 2.0]
    """
    m, gr, k = x.shape
    s, _, n_rt, r, n = w.shape
    if n_rt * r != k:
        x = F.pad(x, (0, n_rt * r - k))
    xt = x.reshape(m, gr, n_rt, r).permute(1, 2, 0, 3)  # [Gr, n_rt, M, R]
    if add is not None:
        b = s * gr * n_rt
        xb = xt.unsqueeze(0).expand(s, gr, n_rt, m, r).reshape(b, m, r)
        out = add.view(b, m, n).baddbmm_(xb, w.reshape(b, r, n), alpha=alpha)
        return out.view(s, gr, n_rt, m, n)
    if s == 1:
        out = torch.matmul(xt.reshape(gr * n_rt, m, r), w.reshape(gr * n_rt, r, n))
        return out.reshape(1, gr, n_rt, m, n)
    return torch.matmul(xt.unsqueeze(0), w)


def split_reads(w: Tensor, parallel_rows: int) -> Tensor:
    """Tiles ``w`` ``[S, Gr, n_rt, R, N]`` as partial-row reads of ``parallel_rows`` rows each:
    ``[S, Gr, n_rt * reads, parallel_rows, N]`` with ``reads = ceil(R / parallel_rows)`` (the
    last read of a tile padded with zero rows). Each read is then digitized on its own.

    Examples:
        >>> split_reads(torch.ones(1, 1, 2, 5, 3), 2).shape
        torch.Size([1, 1, 6, 2, 3])
    """
    s, gr, n_rt, r, n = w.shape
    reads = math.ceil(r / parallel_rows)
    if reads * parallel_rows != r:
        w = F.pad(w, (0, 0, 0, reads * parallel_rows - r))
    return w.reshape(s, gr, n_rt * reads, parallel_rows, n)


def pad_reads(x: Tensor, rows: int, parallel_rows: int) -> Tensor:
    """Inputs ``x`` ``[M, Gr, K]`` laid out for :func:`split_reads` of tiles of ``rows`` rows:
    each row tile padded to a whole number of reads, ``[M, Gr, n_rt * reads * parallel_rows]``.

    Examples:
        >>> pad_reads(torch.ones(1, 1, 7), rows=5, parallel_rows=2).shape
        torch.Size([1, 1, 12])
    """
    m, gr, k = x.shape
    n_rt, reads = math.ceil(k / rows), math.ceil(rows / parallel_rows)
    if reads * parallel_rows == rows:
        return x
    if n_rt * rows != k:
        x = F.pad(x, (0, n_rt * rows - k))
    x = F.pad(x.reshape(m, gr, n_rt, rows), (0, reads * parallel_rows - rows))
    return x.reshape(m, gr, n_rt * reads * parallel_rows)


def randn_chunked(
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    std: Optional[Tensor] = None,
    mean: Optional[Tensor] = None,
    sigma: float = 1.0,
) -> Tensor:
    """Normal samples ``mean + std * N(0, sigma^2)`` drawn in ``len(generators)`` chunks.

    Each chunk comes from its own generator (:func:`aimc.sampling.fill_normal_`: oneMKL where
    installed, else torch's sampler with CPU chunks drawn concurrently), so the result depends
    only on the generators' states, the number of chunks and the sampler, never on thread
    counts. ``sigma`` costs nothing extra (the samplers scale as they draw); ``std``/``mean`` of
    the full ``shape`` are applied afterwards.

    Examples:
        >>> gens = [torch.Generator().manual_seed(i) for i in range(2)]
        >>> randn_chunked((3, 4), gens).shape
        torch.Size([3, 4])
    """
    out = fill_normal_(torch.empty(tuple(shape), device=device, dtype=dtype), generators, sigma)
    if std is not None and mean is not None:
        return torch.addcmul(mean, out, std, out=out)
    if std is not None:
        out.mul_(std)
    if mean is not None:
        out.add_(mean)
    return out


def percentile_abs(x: Tensor, q: float, max_samples: int = 1 << 22) -> float:
    """The ``q``-th percentile (0-100] of ``|x|``; a strided subsample for very large tensors.

    Examples:
        >>> percentile_abs(torch.tensor([-4.0, 1.0, 2.0, 3.0]), 100.0)
        4.0
    """
    a = x.detach().abs().flatten()
    if a.numel() == 0:
        return 0.0
    if q >= 100.0:
        return float(a.max())
    if a.numel() > max_samples:
        a = a[:: math.ceil(a.numel() / max_samples)]
    return float(torch.quantile(a.float(), q / 100.0))
