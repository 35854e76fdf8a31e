"""The batched inference read-out: every partial sum of a chunk of MVMs in a few large operations.

Input bit planes (bit-serial cycles), weight slices, row tiles and partial-row reads become batch
dimensions of one GEMM per chunk of MVMs (a single-pass convolution whose row tiles hold whole
input channels keeps the general path: one conv per row tile is faster there); the ADC converts
all of the chunk's partial sums in one pass (:meth:`~aimc.tile.adc.ADC.convert_`; the tiles
are divided by the ADC's LSBs instead of every partial sum), and one weighted sum does the
accumulation stage's work: the shift-add of cycles and slices, the LSB, the weight scales and
the sum of the row tiles (weights from :meth:`~aimc.tile.accumulate.Accumulate.readout_factors`).

It computes what the general path (``ADC.read`` → ``ADC`` → ``Accumulate`` →
``Accumulate.planes``) computes, for inference forwards that need no gradient and draw no ADC
output noise. Chunks bound the partial sums alive at once to about :data:`CHUNK_BYTES`. ADC
calibration runs through it too: each chunk leaves a summary of its partial sums (the largest
``|p|`` per slice, or a strided subsample of them for a percentile), so calibrating never holds
the partial sums of a whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
from torch import Tensor

from aimc.tile.accumulate import ReadoutWeights

__all__ = [
    "CHUNK_BYTES",
    "Convert",
    "batched_read",
    "chunk_items",
    "in_lsb_units",
    "read_rows",
]

#: partial sums (bytes) that one chunk of the batched read-out makes at most (unless a single
#: MVM on a single row tile needs more)
CHUNK_BYTES = 32 << 20

#: matmul rows (MVMs times input cycles) a chunk aims at: enough for an efficient GEMM
GEMM_ROWS = 512

#: ``convert(p, s_dim)``: the ADC step of a chunk's partial sums ``p`` (in LSB units, slices
#: along ``s_dim``), in place; returns the converted tensor
Convert = Callable[[Tensor, int], Tensor]


def chunk_items(items: int, bytes_per_item: int) -> int:
    """Items per chunk so that one chunk's partial sums take about :data:`CHUNK_BYTES`."""
    return max(1, min(items, CHUNK_BYTES // max(bytes_per_item, 1)))


def in_lsb_units(w: Tensor, lsbs: list[float], s_dim: int) -> Tensor:
    """Tiles ``w`` divided by the ADC LSB of their slice (along ``s_dim``), so that their partial
    sums come out in LSB units; ``w`` itself when every LSB is 1."""
    if all(v == 1.0 for v in lsbs):
        return w
    if len(set(lsbs)) == 1:
        return w / lsbs[0]
    shape = [1] * w.dim()
    shape[s_dim] = -1
    return w / torch.tensor(lsbs, dtype=w.dtype).to(w.device).view(shape)


def lsb_operands(
    rows: Tensor, w: Tensor, lsbs: list[float], s_dim: int, offset: bool
) -> tuple[Tensor, Tensor]:
    """``rows`` and tiles ``w`` of a read whose partial sums come out in ADC LSB units: the
    smaller operand divided by the LSB. The rows only where that is exact to the same
    partial sums up to float rounding: one LSB for every slice and no offset encoding (whose
    input sums are taken from the rows). ``rows`` may be any tensor whose elements become the
    rows (a conv's input before unfolding: fewer elements than its unfolded rows)."""
    if len(set(lsbs)) == 1 and not offset and lsbs[0] != 1.0 and rows.numel() < w.numel():
        return rows / lsbs[0], w
    return rows, in_lsb_units(w, lsbs, s_dim)


def batched_read(adc, run: Callable[[Convert, list[float]], Tensor]) -> Optional[Tensor]:
    """The batched read-out ``run(convert, lsbs)`` of one forward, or ``None`` when the general
    path must run (ADC output noise, or a range the batched read-out cannot set).

    ``lsbs`` are the ADC LSBs per slice (one number: the same for all): ``run`` divides the
    tiles or the rows by them (:func:`lsb_operands`) and multiplies them into its accumulation
    weights; ``run`` may return ``None`` itself (a layout the general path reads faster).
    When the ADC range is being calibrated (``aimc.calibrate``'s ADC pass) or must be set from
    this first batch, ``run`` first goes through the partial sums with an ideal conversion
    while ``adc`` records a summary of every chunk; the range comes from the summaries. A
    calibration pass returns those ideal outputs (as the general path does); a first batch
    then reads again with the range just set.
    """
    lsbs = adc.batch_lsbs()
    if lsbs is not None:
        return run(lambda p, s_dim: adc.convert_(p), lsbs)
    if not adc.calibrates_batched():
        return None
    summaries: list[Tensor] = []

    def record(p: Tensor, s_dim: int) -> Tensor:
        summaries.append(adc.summarize(p, s_dim))
        return p

    y = run(record, [1.0])
    adc.observe_summaries(summaries)
    if adc.observing:
        return y
    lsbs = adc.batch_lsbs()
    if lsbs is None:  # nothing was set (an all-zero batch): the general path decides
        return None
    return run(lambda p, s_dim: adc.convert_(p), lsbs)


@torch.no_grad()
def read_rows(
    rows: Tensor, w: Tensor, convert: Convert, rw: ReadoutWeights, out: Optional[Tensor] = None
) -> Tensor:
    """The batched read-out of tile-row inputs ``rows`` ``[cycles * M, Gr, K]`` (input cycles
    outermost) on tiles ``w`` ``[S, Gr, n_rt, R, N]`` (in LSB units; partial-row reads already
    split into row tiles of their own): ``[Gr, M, N]``, cycles, slices and row tiles summed
    with the weights ``rw`` (:meth:`~aimc.tile.accumulate.Accumulate.readout_weights`).

    Per chunk of MVMs and row tiles: one batched matmul (a row tile per batch entry, the
    slices side by side in its columns) makes the partial sums ``[row tile, cycle, MVM,
    slice, column]``; ``convert`` turns them all into codes; one matrix-vector product per
    row tile shift-adds the input cycles (a single pass over the codes); the slice weights,
    column scales and the row-tile sum act on what is left (a ``cycles``-th of it). The
    offset encoding's input sums are done for all MVMs at once. ``out``: where to write.
    """
    s, gr, n_rt, r, n = w.shape
    cycles = rw.cycle.numel()
    m = rows.shape[0] // cycles
    if rows.shape[-1] != n_rt * r:  # the last row tile's empty rows read zeros
        rows = torch.nn.functional.pad(rows, (0, n_rt * r - rows.shape[-1]))
    wt = w.permute(1, 2, 3, 0, 4).reshape(gr, n_rt, r, s * n)  # slices side by side
    fac = rw.factor  # [Gr, n_rt, 1, S, N]
    if fac is None:
        fac = rw.slice.view(1, 1, 1, s, 1) * rw.scale.view(gr, n_rt, 1, 1, n)
    y = torch.empty(gr, m, n, dtype=rows.dtype, device=rows.device) if out is None else out
    per_tile = cycles * s * n * rows.element_size()  # one MVM's partial sums on one row tile
    mc = min(m, max(1, GEMM_ROWS // cycles), max(1, CHUNK_BYTES // per_tile))
    if mc == m and s * gr * n_rt * cycles == 1 and rw.xsum is None:
        # one tile, slice and input cycle, one chunk (a recurrent time step): one matmul, the
        # conversion and one scaling pass into the output
        p = convert(torch.mm(rows.reshape(m, r), wt.view(r, n)).view(1, m, 1, n), 2)
        return torch.mul(p.view(1, m, n), fac.view(1, 1, n), out=y)
    cyc = rw.cycle.view(1, cycles)
    xc = rows.view(cycles, m, gr, n_rt, r)
    if rw.xsum is not None:  # the offset, from each read's input sum: all MVMs at once
        xs = torch.matmul(rw.xsum, xc.sum(-1).view(cycles, -1)).view(m, gr, n_rt)
        y.copy_(torch.einsum("mgr,grn->gmn", xs, rw.scale))
    # a chunk: mc MVMs (cycles * mc matmul rows, GEMM_ROWS or so) on tc row tiles; few large
    # chunks, as every operation is a parallel region (a busy machine makes each one wait)
    tc = max(1, min(n_rt, CHUNK_BYTES // (per_tile * mc)))
    # one buffer for every chunk's partial sums: a fresh large tensor per chunk would cost
    # its page faults again each time
    buf = torch.empty(gr * tc * cycles * mc * s * n, dtype=rows.dtype, device=rows.device)
    for m0 in range(0, m, mc):
        mk = min(m, m0 + mc) - m0
        ys = y[:, m0 : m0 + mk]
        for t0 in range(0, n_rt, tc):
            tk = min(n_rt, t0 + tc) - t0
            tiles = gr * tk
            x = xc[:, m0 : m0 + mk, :, t0 : t0 + tk].permute(2, 3, 0, 1, 4)
            x = x.reshape(tiles, cycles * mk, r)
            p = buf[: tiles * cycles * mk * s * n].view(tiles, cycles * mk, s * n)
            torch.bmm(x, wt[:, t0 : t0 + tk].reshape(tiles, r, s * n), out=p)
            p = convert(p.view(tiles, cycles * mk, s, n), 2)
            if cycles > 1:  # the input cycles shift-added: [row tile, MVM, slice, column]
                p = torch.matmul(cyc, p.view(tiles, cycles, mk * s * n))
            first = t0 == 0 and rw.xsum is None
            if tk == 1 and s == 1:  # nothing to sum: scale the codes into the output
                p, f = p.view(gr, mk, n), fac[:, t0].view(gr, 1, n)
                if first:
                    torch.mul(p, f, out=ys)
                else:
                    ys.addcmul_(p, f)
                continue
            p = p.view(gr, tk, mk, s, n).mul_(fac[:, t0 : t0 + tk])
            if first:
                torch.sum(p, dim=(1, 3), out=ys)
            else:
                ys += p.sum(dim=(1, 3))
    return y
