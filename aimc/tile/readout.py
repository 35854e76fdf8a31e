"""The batched inference read-out: every partial sum of a chunk of MVMs in a few large operations.

Input bit planes (bit-serial cycles), weight slices, row tiles and partial-row reads become
dimensions of one GEMM per chunk of row tiles (a single-pass convolution whose row tiles hold
whole input channels keeps the general path: one conv per row tile is faster there). The tiles
are laid out once per forward as ``[row tile, rows, slices x columns]`` and divided by the ADC
LSBs in the same pass (:func:`tile_matrices`); each chunk of MVMs (a conv's unfolded input, or
a Linear's rows) is laid out once as ``[row tile, cycles x MVMs, rows]`` (:func:`tile_rows`),
so every matmul reads both operands in place, with input cycles and MVMs as its rows and
slices and columns as its columns (:func:`read_tiles`). A partly filled row tile multiplies
only its rows that hold inputs. The ADC converts all of a chunk's partial sums in one pass
(:meth:`~aimc.tile.adc.ADC.convert_`), one matrix-vector product shift-adds the input cycles,
and one multiply and two slab sums do the rest of the accumulation stage's work: the slice
weights, the LSB, the weight scales and the sum of the row tiles (weights from
:meth:`~aimc.tile.accumulate.Accumulate.readout_weights`).

Bit-plane row drives of a conv on a CPU (bit-serial inputs, no offset encoding) skip the GEMM:
:class:`TableRead` sums precomputed sums of ``g`` rows' weights, one per group of ``g`` rows and
pattern of their drives (``torch.nn.functional.embedding_bag``), a ``g``-th of the additions.

It computes what the general path (``ADC.read`` → ``ADC`` → ``Accumulate`` →
``Accumulate.planes``) computes, for inference forwards that need no gradient and draw no ADC
output noise. Chunks bound the partial sums alive at once to about :data:`CHUNK_BYTES`. ADC
calibration runs through it too: each chunk leaves a summary of its partial sums (the largest
``|p|`` per slice, or a strided subsample of them for a percentile), so calibrating never holds
the partial sums of a whole batch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from aimc.tile.accumulate import ReadoutWeights

__all__ = [
    "CHUNK_BYTES",
    "Convert",
    "TableRead",
    "batched_read",
    "mvms_per_chunk",
    "read_rows",
    "plane_base",
    "read_tiles",
    "summarizes",
    "tile_matrices",
    "tile_rows",
    "valid_rows",
]

#: partial sums (bytes) that one chunk of the batched read-out makes at most (unless a single
#: MVM on a single row tile needs more)
CHUNK_BYTES = 32 << 20

#: matmul rows (MVMs times input cycles) a chunk aims at: enough for an efficient GEMM
GEMM_ROWS = 512

#: ``convert(p, s_dim)``: the ADC step of a chunk's partial sums ``p`` (in LSB units, slices
#: along ``s_dim``), in place; returns the converted tensor
Convert = Callable[[Tensor, int], Tensor]


def mvms_per_chunk(cycles: int, row_bytes: int, psum_bytes: int) -> int:
    """MVMs per chunk of the batched read-out: about :data:`GEMM_ROWS` matmul rows, with a
    chunk's tile-row inputs (``row_bytes`` per MVM) and one row tile's partial sums
    (``psum_bytes`` per MVM) each within :data:`CHUNK_BYTES`; one MVM at least."""
    budget = CHUNK_BYTES // max(row_bytes, psum_bytes, 1)
    return max(1, min(GEMM_ROWS // cycles, budget))


def lsb_operands(rows: Tensor, w: Tensor, lsbs: list[float], offset: bool) -> tuple[Tensor, list]:
    """``rows`` of a read on tiles ``w`` whose partial sums come out in ADC LSB units, and the
    LSBs that the tiles are still to be divided by (:func:`tile_matrices`): the smaller
    operand divided by the LSB. The rows only where that is exact to the same partial sums up
    to float rounding: one LSB for every slice and no offset encoding (whose input sums are
    taken from the rows). ``rows`` may be any tensor whose elements become the rows (a conv's
    input before unfolding: fewer elements than its unfolded rows)."""
    if len(set(lsbs)) == 1 and not offset and lsbs[0] != 1.0 and rows.numel() < w.numel():
        return rows / lsbs[0], [1.0]
    return rows, lsbs


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

    record.summarizes = True  # type: ignore[attr-defined]
    y = run(record, [1.0])
    adc.observe_summaries(summaries)
    if adc.observing:
        return y
    lsbs = adc.batch_lsbs()
    if lsbs is None:  # nothing was set (an all-zero batch): the general path decides
        return None
    return run(lambda p, s_dim: adc.convert_(p), lsbs)


def summarizes(convert: Convert) -> bool:
    """Whether ``convert`` records per-slice summaries of the partial sums (an ADC calibration
    pass of :func:`batched_read`): it then needs every slice of a chunk in one call."""
    return bool(getattr(convert, "summarizes", False))


def tile_matrices(w: Tensor, lsbs: list[float]) -> Tensor:
    """Tiles ``w`` ``[S, Gr, n_rt, R, N]`` as the GEMM operands of :func:`read_tiles`:
    ``[Gr * n_rt, R, S * N]`` (the slices side by side in the columns), divided by the ADC LSB
    of their slice, made in one pass over the tiles."""
    s, gr, n_rt, r, n = w.shape
    wp = w.permute(1, 2, 3, 0, 4)
    if all(v == 1.0 for v in lsbs):  # a view where it can be (one slice)
        return wp.reshape(gr * n_rt, r, s * n)
    out = torch.empty(gr, n_rt, r, s, n, dtype=w.dtype, device=w.device)
    if len(set(lsbs)) == 1:
        torch.div(wp, lsbs[0], out=out)
    else:
        torch.div(wp, torch.tensor(lsbs, dtype=w.dtype).to(w.device).view(s, 1), out=out)
    return out.view(gr * n_rt, r, s * n)


def tile_rows(
    cols: Tensor,
    groups: int,
    rows: int,
    parallel_rows: Optional[int] = None,
    zero: bool = True,
    width: Optional[int] = None,
) -> Tensor:
    """Inputs ``cols`` ``[P, Gr * K, L]`` (``F.unfold``'s layout: the ``K`` tile-row inputs of
    each group along dim 1, ``P * L`` MVMs) as the row operands of :func:`read_tiles`: ``[Gr *
    n_rt * reads, P * L, parallel_rows]``, each row tile of ``rows`` rows split into ``reads =
    ceil(rows / parallel_rows)`` partial-row reads (one read of all rows when
    ``parallel_rows`` is ``None``), empty rows (the last row tile's, a tile's last read's)
    zero (left unset with ``zero=False``, for :func:`read_tiles` told the ``valid`` rows and
    no offset encoding). ``width``: the operands' last dimension when wider than a read (the
    rows past it zero; :class:`TableRead` pads reads to whole index groups). One pass over the
    inputs."""
    p, gk, length = cols.shape
    k = gk // groups
    pr = rows if parallel_rows is None else min(parallel_rows, rows)
    n_rt, reads = -(-k // rows), -(-rows // pr)
    src = cols.contiguous()
    wd = pr if width is None else width
    x = torch.empty(groups, n_rt, reads, p, length, wd, dtype=cols.dtype, device=cols.device)
    sp, sg = src.stride(0), src.stride(1) * k

    def put(t0: int, t1: int, rd0: int, rd1: int, valid: int, row0: int) -> None:
        # tiles t0..t1, reads rd0..rd1 of ``valid`` rows each, starting at row ``row0``
        if t1 <= t0 or rd1 <= rd0:
            return
        dst = x[:, t0:t1, rd0:rd1]
        if valid > 0:
            shape = (p, groups, t1 - t0, rd1 - rd0, valid, length)
            strides = (sp, sg, rows * length, pr * length, length, 1)
            view = src.as_strided(shape, strides, src.storage_offset() + row0 * length)
            dst[..., :valid].copy_(view.permute(1, 2, 3, 0, 5, 4))
        if valid < wd and zero:
            dst[..., valid:].zero_()

    n_full, rem = divmod(k, rows)
    full_reads, last = divmod(rows, pr)
    put(0, n_full, 0, full_reads, pr, 0)
    put(0, n_full, full_reads, full_reads + 1, last, full_reads * pr)  # a shorter last read
    if rem:  # the last row tile, partly empty
        rem_reads, rem_last = divmod(rem, pr)
        put(n_full, n_rt, 0, rem_reads, pr, n_full * rows)
        put(n_full, n_rt, rem_reads, rem_reads + 1, rem_last, n_full * rows + rem_reads * pr)
        put(n_full, n_rt, rem_reads + 1, reads, 0, 0)
    return x.view(groups * n_rt * reads, p * length, wd)


@torch.no_grad()
def read_rows(
    rows: Tensor,
    w: Tensor,
    convert: Convert,
    rw: ReadoutWeights,
    out: Optional[Tensor] = None,
    lsbs: Optional[list[float]] = None,
) -> Tensor:
    """The batched read-out of tile-row inputs ``rows`` ``[cycles * M, Gr, K]`` (input cycles
    outermost) on tiles ``w`` ``[S, Gr, n_rt, R, N]`` (partial-row reads already split into
    row tiles of their own), divided by the ADC LSBs ``lsbs`` of their slices (none: already
    in LSB units): ``[Gr, M, N]``, cycles, slices and row tiles summed with the weights ``rw``
    (:meth:`~aimc.tile.accumulate.Accumulate.readout_weights`). Chunks of about
    :data:`GEMM_ROWS` matmul rows through :func:`read_tiles`. ``out``: where to write."""
    s, gr, n_rt, r, n = w.shape
    cycles = rw.cycle.numel()
    m = rows.shape[0] // cycles
    y = torch.empty(gr, m, n, dtype=rows.dtype, device=rows.device) if out is None else out
    size = rows.element_size()
    mc = min(m, mvms_per_chunk(cycles, cycles * rows.shape[-1] * gr * size, cycles * s * n * size))
    lsbs = [1.0] if lsbs is None else lsbs
    if mc == m and s * gr * n_rt * cycles == 1 and rw.xsum is None:
        # one tile, slice and input cycle, one chunk (a recurrent time step): one matmul, the
        # conversion and one scaling pass into the output
        k = rows.shape[-1]
        wk = tile_matrices(w, lsbs).view(r, n)[:k]
        p = convert(torch.mm(rows.reshape(m, k), wk).view(1, m, 1, n), 2)
        return torch.mul(p.view(1, m, n), _factor(rw, gr, n_rt, s, n).view(1, 1, n), out=y)
    wt = tile_matrices(w, lsbs)
    k = rows.shape[-1]
    xc = rows.view(cycles, m, gr * k)
    buf = None
    for m0 in range(0, m, mc):
        mk = min(m, m0 + mc) - m0
        if k == n_rt * r:  # whole row tiles: the matmul reads the rows in place
            x = xc[:, m0 : m0 + mk].view(cycles, mk, gr, n_rt, r).permute(2, 3, 0, 1, 4)
            x = x.reshape(gr * n_rt, cycles * mk, r)
        else:
            x = tile_rows(xc[:, m0 : m0 + mk].reshape(cycles * mk, gr * k, 1), gr, r)
        buf = read_tiles(x, wt, convert, rw, gr, y[:, m0 : m0 + mk], buf)
    return y


@torch.no_grad()
def read_tiles(
    x: Tensor,
    wt: Tensor,
    convert: Convert,
    rw: ReadoutWeights,
    groups: int,
    out: Tensor,
    buf: Optional[Tensor] = None,
    valid: Optional[list[int]] = None,
) -> Tensor:
    """The batched read-out of row operands ``x`` ``[Gr * n_rt, cycles * M, R]`` (from
    :func:`tile_rows`; input cycles outermost in the matmul rows) on tiles ``wt`` ``[Gr *
    n_rt, R, S * N]`` (from :func:`tile_matrices`, in LSB units), written to ``out`` ``[Gr, M,
    N]``: cycles, slices and row tiles summed with the weights ``rw``
    (:meth:`~aimc.tile.accumulate.Accumulate.readout_weights`).

    Per chunk of row tiles (the partial sums of a chunk within :data:`CHUNK_BYTES`, written
    to ``buf`` when it is large enough; returned for the next call: a fresh large tensor per
    chunk would cost its page faults again each time): one batched matmul (a row tile per
    batch entry, the slices side by side in its columns) makes the partial sums ``[row tile,
    cycle, MVM, slice, column]``; ``convert`` turns them all into codes; one matrix-vector
    product per row tile shift-adds the input cycles (a single pass over the codes); the slice
    weights, column scales and the row-tile sum act on what is left (a ``cycles``-th of it).
    The offset encoding's input sums are done for all row tiles at once. ``valid``: the rows
    of each row tile (of a group) that hold inputs (:func:`valid_rows`); a tile's empty rows
    then take no part in its matmul, and a tile without inputs is skipped (its codes are 0).
    """
    tiles, mat_rows, r = x.shape
    n_rt = tiles // groups
    s = rw.slice.numel()
    n = wt.shape[2] // s
    cycles = rw.cycle.numel()
    m = mat_rows // cycles
    cyc = rw.cycle.view(1, cycles)
    fac = _factor(rw, groups, n_rt, s, n)  # [Gr, n_rt, 1, S, N]
    if rw.xsum is not None:  # the offset, from each read's input sum: all row tiles at once
        xs = torch.matmul(rw.xsum, x.sum(-1).view(tiles, cycles, m)).view(groups, n_rt, m)
        out.copy_(torch.einsum("grm,grn->gmn", xs, rw.scale))
    per_tile = groups * mat_rows * s * n  # partial sums of one row tile of every group
    tc = max(1, min(n_rt, CHUNK_BYTES // (per_tile * x.element_size())))
    if buf is None or buf.numel() < tc * per_tile:
        buf = torch.empty(tc * per_tile, dtype=x.dtype, device=x.device)
    xg, wg = x.view(groups, n_rt, mat_rows, r), wt.view(groups, n_rt, r, s * n)
    first = rw.xsum is None
    for t0, t1, k in _tile_chunks(n_rt, r, tc, valid):
        tk = t1 - t0
        p = buf[: tk * per_tile].view(groups * tk, mat_rows, s * n)
        xk = xg[:, t0:t1, :, :k].reshape(groups * tk, mat_rows, k)
        torch.bmm(xk, wg[:, t0:t1, :k].reshape(groups * tk, k, s * n), out=p)
        p = convert(p.view(groups * tk, mat_rows, s, n), 2)
        if cycles > 1:  # the input cycles shift-added: [row tile, MVM, slice, column]
            p = torch.matmul(cyc, p.view(groups * tk, cycles, m * s * n))
        if tk == 1 and s == 1:  # nothing to sum: scale the codes into the output
            p, f = p.view(groups, m, n), fac[:, t0].view(groups, 1, n)
            if first:
                torch.mul(p, f, out=out)
            else:
                out.addcmul_(p, f)
        else:
            p = p.view(groups, tk, m, s, n).mul_(fac[:, t0:t1])
            if s == 1:  # one slice: the sum of the row tiles is all there is to sum
                p = p.view(groups, tk, m, n)
                if first:
                    torch.sum(p, dim=1, out=out)
                else:
                    out += p.sum(1)
            else:
                # the row tiles summed first (whole slabs), then the slices: a reduction over
                # both dimensions at once is ten times slower
                p = p.sum(1)
                if first:
                    torch.sum(p, dim=2, out=out)
                else:
                    out += p.sum(2)
        first = False
    if first:  # no tile holds inputs
        out.zero_()
    return buf


def _factor(rw: ReadoutWeights, groups: int, n_rt: int, s: int, n: int) -> Tensor:
    """The slice weight times the column scale, ``[Gr, n_rt, 1, S, N]``."""
    if rw.factor is not None:
        return rw.factor
    return rw.slice.view(1, 1, 1, s, 1) * rw.scale.view(groups, n_rt, 1, 1, n)


def _tile_chunks(n_rt: int, r: int, tc: int, valid: Optional[list[int]]):
    """``(t0, t1, rows)`` of the chunks of :func:`read_tiles`: runs of at most ``tc`` full row
    tiles, and each partly filled tile on its own (its ``rows`` inputs); empty tiles none."""
    t0 = 0
    while t0 < n_rt:
        k = r if valid is None else valid[t0]
        if k <= 0:
            t0 += 1
            continue
        t1 = t0 + 1
        if k == r:
            while t1 < min(n_rt, t0 + tc) and (valid is None or valid[t1] == r):
                t1 += 1
        yield t0, t1, k
        t0 = t1


def valid_rows(k: int, rows: int, parallel_rows: Optional[int] = None) -> list[int]:
    """The inputs each row operand of :func:`tile_rows` holds (per read of each row tile of
    ``rows`` rows, ``k`` tile-row inputs per group), for :func:`read_tiles`."""
    pr = rows if parallel_rows is None else min(parallel_rows, rows)
    n_rt, reads = -(-k // rows), -(-rows // pr)
    return [
        max(0, min(pr, min(rows, k - t * rows) - rd * pr))
        for t in range(n_rt)
        for rd in range(reads)
    ]


#: inputs per table index of :class:`TableRead`, by the number of values a bit plane takes
#: (2: unsigned ``{0, 1}``; 3: signed ``{-1, 0, 1}``): the first that divides the rows of a
#: read (no group then spans two reads), else the first (rows padded with zero rows)
TABLE_GROUP = {2: (6, 8, 7, 5, 4), 3: (4, 3)}

#: columns per table lookup of :class:`TableRead`: one column chunk's table (groups x sums x
#: columns) stays in a core's L2 cache
TABLE_COLS = 64

#: matmul rows (input cycles x MVMs) at least for :class:`TableRead` to pay for its tables
TABLE_MIN_ROWS = 1024

#: matmul rows (input cycles x MVMs) whose indices :class:`TableRead` holds at most at once
TABLE_ROWS = 32768


def plane_base(x: Tensor, planes: bool) -> Optional[int]:
    """The values a read's row drives ``x`` take when they are bit planes (``planes``) on the
    CPU: 2 (``{0, 1}``) or 3 (``{-1, 0, 1}``, signed inputs); ``None`` otherwise (multi-bit
    drives, or a GPU, where the GEMM is the faster read)."""
    if not planes or not x.is_cpu:
        return None
    return 3 if bool((x < 0).any()) else 2


class TableRead:
    """The batched read-out of bit-plane rows through lookup tables (the method of the Four
    Russians): the rows of each tile are taken ``g`` at a time, and for every pattern the ``g``
    row drives can take (``2**g`` unsigned bit planes, ``3**g`` signed) the table holds the sum
    of those rows' weights. A partial sum of a read is then the sum of ``ceil(rows / g)`` table
    entries instead of a ``rows``-term dot product: ``torch.nn.functional.embedding_bag``
    over the index of each group's pattern. On a CPU this makes a bit plane's partial sums
    about 2.5x faster than the GEMM of :func:`read_tiles`: ``g`` times fewer additions at about
    40% of the GEMM's rate (``benchmarks/bench_networks.py --matmuls``). The sums are the same
    weights added in another order (float rounding apart, the same partial sums), converted,
    shift-added and accumulated as :func:`read_tiles` does.

    Args:
        w: tiles ``[S, Gr, n_rt, R, N]`` as stored (partial-row reads split into tiles of
            their own); each table is made from them divided by the ADC LSB of its slice.
        lsbs: the ADC LSB of each slice (one number: the same for all).
        rw: the accumulation weights (with offset encoding, the input sum of each read is
            looked up too, from each group's pattern sum).
        base: 2 or 3 (:func:`plane_base`).
        valid: the rows of each tile that hold inputs (:func:`valid_rows`).
    """

    def __init__(
        self, w: Tensor, lsbs: list[float], rw: ReadoutWeights, base: int, valid: list[int]
    ) -> None:
        self.w, self.rw, self.valid = w, rw, valid
        s, self.groups, self.n_rt, r, _ = w.shape
        self.tiles = self.groups * self.n_rt
        self.base = base
        self.g = next((g for g in TABLE_GROUP[base] if r % g == 0), TABLE_GROUP[base][0])
        self.n = base**self.g
        self.n_groups = -(-r // self.g)
        self.width = self.n_groups * self.g
        dt, dev = w.dtype, w.device
        digits = torch.arange(self.n, device=dev).view(-1, 1) // base ** torch.arange(
            self.g, device=dev
        )
        # each pattern's row drives [n, g], divided by each slice's LSB: [S, n, g]
        patterns = (digits % base - int(base == 3)).to(dt)
        lsb = torch.tensor(lsbs if len(lsbs) == s else lsbs * s, dtype=dt).to(dev)
        self.patterns = patterns / lsb.view(s, 1, 1)
        # the offset encoding's input sum of a read: each group's pattern sum, looked up too
        self.pattern_sums = patterns.sum(1).repeat(self.n_groups).view(-1, 1)
        self.powers = (base ** torch.arange(self.g, device=dev)).to(dt)  # a group's index
        self.shift = float((self.n - 1) // 2 if base == 3 else 0)  # ternary digits from -1
        self.offsets = torch.arange(self.n_groups, device=dev) * self.n

    def mvms_per_index(self, cycles: int, size: int) -> int:
        """MVMs whose row operands (:func:`tile_rows`, ``size`` bytes per element) to unfold
        at once for their indices: within :data:`CHUNK_BYTES`."""
        return max(1, CHUNK_BYTES // (cycles * self.tiles * self.width * size))

    def mvms_per_read(self, cycles: int) -> int:
        """MVMs that one :meth:`read` takes (its tables made once for all of them): up to
        :data:`TABLE_ROWS` matmul rows, their indices within :data:`CHUNK_BYTES`."""
        per_mvm = cycles * self.tiles * self.n_groups * 8
        return max(1, min(TABLE_ROWS // cycles, 2 * CHUNK_BYTES // per_mvm))

    def index(self, x: Tensor) -> Tensor:
        """Row operands ``x`` ``[tiles, rows, width]`` (:func:`tile_rows` with ``width``,
        zero past the reads) as table indices ``[tiles, rows, groups of g]``, int64."""
        tiles, rows, _ = x.shape
        code = torch.matmul(x.view(tiles, rows, self.n_groups, self.g), self.powers)
        if self.shift:
            code.add_(self.shift)
        return code.to(torch.int64).add_(self.offsets)

    def takes_codes(self, rows_per_tile: int, cycles: int) -> bool:
        """Whether :meth:`index_codes` applies: unsigned planes; tiles of ``rows_per_tile`` rows
        made of whole reads, each of whole groups of ``g`` rows (so the inputs, taken ``g`` at
        a time, fall into groups in order); at most 8 input cycles (a byte of an int64 each).
        """
        r = self.w.shape[3]
        return (
            self.base == 2
            and r % self.g == 0
            and rows_per_tile % r == 0
            and cycles <= 8
            and sys.byteorder == "little"
        )

    def index_codes(self, cols: Tensor, cycles: int, out: Tensor) -> Tensor:
        """The table indices ``[tiles, cycles, MVMs, groups of g]`` (int64, written to
        ``out``) of every input cycle from the unfolded input codes ``cols`` ``[P, Gr * K,
        L]`` (``F.unfold``'s layout, values the integer codes whose bits are the planes; ``P *
        L`` MVMs; :meth:`takes_codes`): bit ``b`` of each code goes to byte ``b`` of an int64,
        so one weighted sum over a group's ``g`` codes holds every cycle's index, one byte
        each. A ``cycles``-th of the work of unfolding the planes."""
        p, gk, length = cols.shape
        k = gk // self.groups
        if k % self.g:  # whole groups: zero codes past the last input
            kp = -(-k // self.g) * self.g
            padded = cols.new_zeros(p, self.groups, kp, length)
            padded[:, :, :k] = cols.view(p, self.groups, k, length)
            cols, gk = padded.view(p, self.groups * kp, length), self.groups * kp
        q = gk // self.g  # groups of g rows over all tiles
        word = torch.take(self._spread(cycles, cols.device), cols.to(torch.int64))
        word = word.view(p, q, self.g, length).mul_(self._pow2(cols.device)).sum(2)
        per_group = self.n_rt * self.n_groups  # index groups per layer group
        if q != self.groups * per_group:  # a partly filled last tile: zero codes past it
            full = word.new_zeros(p, self.groups, per_group, length)
            full[:, :, : q // self.groups] = word.view(p, self.groups, -1, length)
            word = full
        byte = word.view(torch.uint8).view(p, self.tiles, self.n_groups, length, 8)
        ix = out.view(self.tiles, cycles, p, length, self.n_groups)
        return torch.add(byte[..., :cycles].permute(1, 4, 0, 3, 2), self.offsets, out=ix)

    def codes(self, planes: Tensor) -> Tensor:
        """The integer input codes (as floats) of bit planes ``planes`` ``[cycles, ...]``
        (least significant first), for :meth:`index_codes`: one pass over the planes."""
        cycles = planes.shape[0]
        weights = self.rw.cycle / self.rw.cycle[0]  # 1, 2, 4, ...
        return torch.matmul(weights, planes.reshape(cycles, -1)).view(planes.shape[1:])

    def _spread(self, cycles: int, device) -> Tensor:
        """``spread[c]``: bit ``b`` of code ``c`` (``cycles`` of them) at bit ``8 b``."""
        c = torch.arange(2**cycles, device=device)
        bits = (c.view(-1, 1) >> torch.arange(cycles, device=device)) & 1
        return (bits << (torch.arange(cycles, device=device) * 8)).sum(1)

    def _pow2(self, device) -> Tensor:
        return (1 << torch.arange(self.g, device=device)).view(1, 1, self.g, 1)

    @torch.no_grad()
    def read(self, ix: Tensor, convert: Convert, out: Tensor) -> None:
        """The read of indices ``ix`` ``[tiles, cycles * M, groups of g]`` (:meth:`index`;
        input cycles outermost), written to ``out`` ``[Gr, M, N]``."""
        rw, w = self.rw, self.w
        s, gr, n_rt, r, n = w.shape
        cycles = rw.cycle.numel()
        m = ix.shape[1] // cycles
        cyc = rw.cycle.view(1, cycles)
        fac = _factor(rw, gr, n_rt, s, n)  # [Gr, n_rt, 1, S, N]
        cols = [(c0, min(n, c0 + TABLE_COLS)) for c0 in range(0, n, TABLE_COLS)]
        wpad = None
        if self.width != r:  # a tile's rows padded to whole groups (zero rows)
            wpad = torch.zeros(s, self.width, n, dtype=w.dtype, device=w.device)
        rows = cycles * m
        bags = torch.arange(0, rows * self.n_groups, self.n_groups, device=ix.device)
        first = [rw.xsum is None] * gr
        if rw.xsum is not None:
            out.zero_()
        for t in range(self.tiles):
            gi, ti = divmod(t, n_rt)
            if self.valid[ti] <= 0:
                continue
            idx = ix[t].reshape(-1)
            if rw.xsum is not None:  # the offset: each read's input sum, weighted and scaled
                xs = F.embedding_bag(idx, self.pattern_sums, bags, mode="sum")
                xs = torch.matmul(rw.xsum, xs.view(cycles, m))
                out[gi].addr_(xs, rw.scale[gi, ti])
            wt = w[:, gi, ti]  # [S, R, N]
            if wpad is not None:
                wpad[:, :r].copy_(wt)
                wt = wpad
            wg = wt.view(s, self.n_groups, self.g, n)
            o = out[gi]
            for si in range(s):
                for c0, c1 in cols:
                    # [groups, patterns, cols]: each group's sum for every pattern, in LSBs
                    table = torch.matmul(self.patterns[si], wg[si, :, :, c0:c1])
                    p = F.embedding_bag(idx, table.view(-1, c1 - c0), bags, mode="sum")
                    p = convert(p.view(rows, 1, c1 - c0), 1)
                    if cycles > 1:  # the input cycles shift-added
                        p = torch.matmul(cyc, p.view(cycles, m * (c1 - c0)))
                    p = p.view(m, c1 - c0)
                    f = fac[gi, ti, 0, si, c0:c1]
                    if first[gi] and si == 0:
                        torch.mul(p, f, out=o[:, c0:c1])
                    else:
                        o[:, c0:c1].addcmul_(p, f)
            first[gi] = False
        for gi in range(gr):
            if first[gi]:  # no tile of this group holds inputs
                out[gi].zero_()
