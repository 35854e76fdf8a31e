"""The batched inference read-out (bit planes, slices, row tiles and partial-row reads as batch
dimensions of one GEMM per chunk, the ADC on all partial sums at once) against the general
stage-by-stage path, and ADC calibration through it in chunks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import aimc
import aimc.nn.base
import aimc.nn.conv
import aimc.nn.linear
import aimc.tile.accumulate
import aimc.tile.readout
import device_models
import device_models.converters

CONFIGS = {
    # 4 slices of 2-bit cells, 8-bit unsigned bit-serial inputs, a 4-bit ADC per slice
    "bit-serial-sliced": dict(
        device=device_models.RRAM(),
        dac=aimc.DACConfig(bits=8, signed=False, bit_serial=True),
        adc=aimc.ADCConfig(bits=4),
        mapping=aimc.MappingConfig(weight_bits=8, slices=4),
    ),
    "default-pcm": dict(),
    "offset-sliced-max-range": dict(
        device=device_models.RRAM(),
        dac=aimc.DACConfig(bits=6, signed=True, bit_serial=True),
        adc=aimc.ADCConfig(bits=6, range_mode="max", range_fraction=0.25),
        mapping=aimc.MappingConfig(encoding="offset", weight_bits=6, slices=2),
    ),
    "ideal-adc": dict(adc=aimc.ADCConfig(bits=None)),
}

LAYOUTS = {
    # 20 input channels of 3x3 on 64-row tiles: 7 channels per tile, 3 row tiles per group, the
    # last one partly empty
    "conv-channel": (False, dict()),
    "conv-dense": (False, dict(conv_alignment="dense")),
    "conv-partial-reads": (False, dict(parallel_rows=24)),
    "linear": (True, dict()),
    "linear-partial-reads": (True, dict(parallel_rows=24)),
}


def _batched(name: str, layout: str) -> bool:
    """Whether the batched read-out serves this case: a single-pass conv (one input cycle, one
    slice) whose row tiles hold whole channels keeps the general path's conv per row tile,
    which is faster there."""
    return not (layout == "conv-channel" and name in ("default-pcm", "ideal-adc"))


def _module(linear: bool, groups: int = 2, batch: int = 5):
    if linear:
        return nn.Linear(150, 6), torch.relu(torch.randn(3 * batch, 150))
    conv = nn.Conv2d(20 * groups, 6 * groups, 3, padding=1, groups=groups)
    return conv, torch.relu(torch.randn(batch, 20 * groups, 9, 7))


def _config(name: str, opts: dict, **changes) -> aimc.AnalogConfig:
    cfg = {**CONFIGS[name], **changes}
    mapping = cfg.get("mapping", aimc.MappingConfig())
    if "conv_alignment" in opts:
        mapping = dataclasses.replace(mapping, conv_alignment=opts["conv_alignment"])
    tile = aimc.TileConfig(64, 64, parallel_rows=opts.get("parallel_rows"))
    return aimc.AnalogConfig(**{**cfg, "mapping": mapping, "tile": tile})


class _Spy:
    """Counts the forwards the batched read-out served (``general=True``: none, every forward
    takes the general path)."""

    def __init__(self, monkeypatch, general: bool = False) -> None:
        self.served = 0
        real = aimc.tile.readout.batched_read

        def spy(adc, run):
            y = None if general else real(adc, run)
            self.served += y is not None
            return y

        monkeypatch.setattr(aimc.nn.base, "batched_read", spy)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_batched_readout_equals_the_general_path(name: str, layout: str, monkeypatch):
    torch.manual_seed(0)
    linear, opts = LAYOUTS[layout]
    module, x = _module(linear)
    layer = aimc.convert_to_analog(module, _config(name, opts)).eval()
    aimc.calibrate(layer, [x])
    aimc.drift(layer, 3600.0)
    # chunks of a few MVMs: the chunk loop is exercised too (cycles within a chunk included)
    monkeypatch.setattr(aimc.tile.readout, "CHUNK_BYTES", 1 if linear else 200_000)
    spy = _Spy(monkeypatch)
    with torch.no_grad():
        y_batched = layer(x)
    served = int(_batched(name, layout))
    assert spy.served == served
    y_general = layer(x.clone().requires_grad_(True)).detach()  # a gradient: the general path
    assert spy.served == served
    _assert_same_readout(y_batched, y_general)


def _assert_same_readout(y: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal to float tolerance, but for rare ADC rounding ties: the two paths sum the same
    partial sums in another order, so a value within a float rounding of a code boundary can
    round to the neighbouring code (about 1e-6 of the conversions; a wrong factor or a
    misplaced partial sum would move most outputs)."""
    scale = float(ref.abs().max())
    off = (y - ref).abs() > 1e-5 * scale + 1e-5 * ref.abs()
    assert int(off.sum()) <= max(1, ref.numel() // 1000), f"{int(off.sum())} of {ref.numel()}"


@pytest.mark.parametrize("linear", [True, False], ids=["linear", "conv"])
def test_ideal_config_equals_torch_through_the_batched_readout(linear: bool, monkeypatch):
    torch.manual_seed(1)
    module, x = _module(linear)
    # channels straddling 64-row tiles: unfolded rows (whole channels take the general path)
    cfg = aimc.AnalogConfig.ideal(
        tile=aimc.TileConfig(64, 64), mapping=aimc.MappingConfig(conv_alignment="dense")
    )
    layer = aimc.convert_to_analog(module, cfg).eval()
    spy = _Spy(monkeypatch)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), module(x), rtol=1e-5, atol=1e-5)
    assert spy.served == 1


@pytest.mark.parametrize("linear", [True, False], ids=["linear", "conv"])
def test_noisy_adc_keeps_the_general_path_and_its_seeded_draws(linear: bool, monkeypatch):
    # ADC output noise is drawn in the general path's layout: a noisy layer never takes the
    # batched read-out, so a seed gives the numbers it gave before the batched read-out existed
    torch.manual_seed(2)
    module, x = _module(linear)
    cfg = _config("bit-serial-sliced", {}, adc=aimc.ADCConfig(bits=4, noise=0.05), seed=7)
    outs = []
    for general in (False, True):
        layer = aimc.convert_to_analog(module, cfg).eval()
        spy = _Spy(monkeypatch, general=general)
        aimc.calibrate(layer, [x])
        with torch.no_grad():
            outs.append(layer(x))
        assert spy.served == 0
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("linear", [True, False], ids=["linear", "conv"])
def test_saturation_counts_through_the_batched_readout_match_the_general_path(
    linear: bool, monkeypatch
):
    torch.manual_seed(3)
    module, x = _module(linear, groups=1)
    cfg = _config("bit-serial-sliced", {}, adc=aimc.ADCConfig(bits=4, range_fraction=0.3))
    layer = aimc.convert_to_analog(module, cfg).eval()
    aimc.calibrate(layer, [x])
    with torch.no_grad():
        layer(x)  # the drift-compensation reference reads (counted too) happen once, here
    counts = []
    for general in (False, True):
        spy = _Spy(monkeypatch, general=general)
        layer.adc.enable_counter()
        with torch.no_grad():
            layer(x)
        counts.append(layer.adc.disable_counter())
        assert spy.served == (0 if general else 1)
    assert counts[0][1] == counts[1][1]  # every conversion counted once
    assert abs(counts[0][0] - counts[1][0]) <= 1  # but for a rounding tie at the bound
    saturated, total = counts[0]
    assert 0 < saturated < total


@pytest.mark.parametrize("layout", ["linear-partial-reads", "conv-dense", "conv-channel"])
@pytest.mark.parametrize("percentile", [100.0, 99.0])
@pytest.mark.parametrize("first_batch", [False, True], ids=["calibrate", "first-batch"])
def test_chunked_adc_calibration_matches_the_general_path(
    layout: str, percentile: float, first_batch: bool, monkeypatch
):
    # the batched read-out calibrates the ADC from per-chunk summaries (the max, or a
    # subsample for a percentile) instead of holding every partial sum of the batch
    torch.manual_seed(5)
    linear, opts = LAYOUTS[layout]
    module, x = _module(linear, groups=2, batch=4)  # two groups: one full scale for both
    name = "bit-serial-sliced"
    cfg = _config(name, opts, adc=aimc.ADCConfig(bits=4, percentile=percentile))
    monkeypatch.setattr(aimc.tile.readout, "CHUNK_BYTES", 100_000)
    ranges, outs = [], []
    for general in (False, True):
        layer = aimc.convert_to_analog(module, cfg).eval()
        spy = _Spy(monkeypatch, general=general)
        with torch.no_grad(), pytest.warns(UserWarning) if first_batch else _nothing():
            if not first_batch:
                aimc.calibrate(layer, [x])
            outs.append(layer(x))
        assert spy.served == (0 if general else (1 if first_batch else 2))
        ranges.append(layer.adc.full_scale.clone())
    # a percentile comes from a strided subsample of each chunk (at most SUMMARY_SAMPLES)
    rtol = 1e-6 if percentile == 100.0 else 0.05
    torch.testing.assert_close(ranges[0], ranges[1], rtol=rtol, atol=0)
    if percentile == 100.0:
        _assert_same_readout(outs[0], outs[1])


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_chunks_bound_the_partial_sums_alive_at_once(monkeypatch):
    # every chunk's partial sums stay within the budget (one MVM on one row tile at least)
    torch.manual_seed(6)
    module, x = _module(True, batch=20)
    layer = aimc.convert_to_analog(module, _config("bit-serial-sliced", {})).eval()
    aimc.calibrate(layer, [x])
    budget = 40_000
    monkeypatch.setattr(aimc.tile.readout, "CHUNK_BYTES", budget)
    sizes = []
    real_bmm = torch.bmm

    def bmm(a, b, *, out=None):
        sizes.append(out.numel() * out.element_size())
        return real_bmm(a, b, out=out)

    monkeypatch.setattr(torch, "bmm", bmm)
    with torch.no_grad():
        y = layer(x)
    assert len(sizes) > 1 and max(sizes) <= budget
    monkeypatch.undo()
    with torch.no_grad():
        _assert_same_readout(layer(x), y)  # other chunks: the same read-out


@pytest.mark.parametrize("name", ["bit-serial-sliced", "offset-sliced-max-range"])
def test_kept_slice_and_scale_factor_reads_what_the_per_read_product_reads(name):
    """The readout weights keep the product of slice weights and column scales; reading with
    it gives bitwise what the product made at every read gives."""
    torch.manual_seed(0)
    module, x = _module(True)
    cfg = aimc.AnalogConfig(tile=aimc.TileConfig(64, 64), **CONFIGS[name])
    layer = aimc.convert_to_analog(module, cfg).eval()
    real, seen = aimc.tile.readout.read_rows, []

    def kept(rows, w, convert, rw, out=None, **kw):
        seen.append(rw)
        return real(rows, w, convert, rw, out, **kw)

    def per_read(rows, w, convert, rw, out=None, **kw):
        return real(rows, w, convert, rw._replace(factor=None), out, **kw)

    outs = []
    for read in (kept, per_read):
        with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
            mp.setattr(aimc.nn.linear, "read_rows", read)
            outs.append(layer(x))
    rw = seen[-1]
    gr, n_rt, n = rw.scale.shape
    assert rw.slice.numel() > 1 and n_rt > 1
    assert torch.equal(rw.factor, rw.slice.view(1, 1, 1, -1, 1) * rw.scale.view(gr, n_rt, 1, 1, n))
    assert torch.equal(outs[0], outs[1])


def test_conv_divides_its_input_by_the_lsb_when_it_is_smaller_than_the_tiles(monkeypatch):
    """A deep conv with a small input (few pixels, many channels): the batched read-out divides
    the input before unfolding instead of the tiles, and reads what the general path reads."""
    torch.manual_seed(0)
    module = nn.Conv2d(64, 32, 3, padding=1)
    x = torch.relu(torch.randn(1, 64, 3, 3))
    cfg = _config("bit-serial-sliced", {}, mapping=aimc.MappingConfig())  # one slice, one LSB
    layer = aimc.convert_to_analog(module, cfg).eval()
    aimc.calibrate(layer, [x])
    real, divided = aimc.nn.conv.lsb_operands, []

    def spy(rows, w, lsbs, offset):
        out = real(rows, w, lsbs, offset)
        divided.append("input" if out[0] is not rows else "tiles")
        return out

    monkeypatch.setattr(aimc.nn.conv, "lsb_operands", spy)
    batched = _Spy(monkeypatch)
    with torch.no_grad():
        y = layer(x)
    assert batched.served == 1 and divided == ["input"]
    _assert_same_readout(y, layer(x.clone().requires_grad_(True)).detach())


@pytest.mark.parametrize("name", ["default-pcm", "bit-serial-sliced"])
def test_linear_rows_of_whole_row_tiles_are_read_in_place(name, monkeypatch):
    """A Linear whose inputs fill whole row tiles hands the matmul its rows as they are (no
    per-forward copy of the batch); a partly filled last row tile lays them out, zero-padded."""
    torch.manual_seed(0)
    laid_out, real = [], aimc.tile.readout.tile_rows

    def spy(*args, **kwargs):
        laid_out.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(aimc.tile.readout, "tile_rows", spy)
    for features, copies in ((128, 0), (150, 1)):
        module = nn.Linear(features, 6)
        x = torch.relu(torch.randn(7, features))
        layer = aimc.convert_to_analog(module, _config(name, {})).eval()
        aimc.calibrate(layer, [x])
        laid_out.clear()
        with torch.no_grad():
            y = layer(x)
        assert len(laid_out) == copies
        _assert_same_readout(y, layer(x.clone().requires_grad_(True)).detach())


def _table_routes(monkeypatch) -> list[str]:
    """Records how :class:`TableRead` makes each chunk's indices: ``"planes"`` (from the
    unfolded bit planes) or ``"codes"`` (from the unfolded input codes)."""
    routes: list[str] = []
    real_index, real_codes = (
        aimc.tile.readout.TableRead.index,
        aimc.tile.readout.TableRead.index_codes,
    )

    def index(self, *args):
        routes.append("planes")
        return real_index(self, *args)

    def index_codes(self, *args):
        routes.append("codes")
        return real_codes(self, *args)

    monkeypatch.setattr(aimc.tile.readout.TableRead, "index", index)
    monkeypatch.setattr(aimc.tile.readout.TableRead, "index_codes", index_codes)
    return routes


def _check_table_read(layer, x, layer_module, route: str, monkeypatch) -> int:
    """``layer`` reads ``x`` through the lookup tables, every chunk's indices made by
    ``route``, and reads what the GEMM read (the tables switched off in ``layer_module``) and
    the general path read. Returns the number of index chunks."""
    routes = _table_routes(monkeypatch)
    with torch.no_grad():
        y_table = layer(x)
    assert routes and set(routes) == {route}
    chunks = len(routes)
    monkeypatch.setattr(layer_module, "TABLE_MIN_ROWS", 1 << 62)  # the GEMM read
    routes.clear()
    with torch.no_grad():
        y_gemm = layer(x)
    assert not routes
    _assert_same_readout(y_table, y_gemm)
    _assert_same_readout(y_table, layer(x.clone().requires_grad_(True)).detach())
    return chunks


TABLE_CASES = {
    # 54-row tiles hold 6 whole channels of 3x3 (rows in whole groups of 6): indices from the
    # unfolded codes; the last row tile partly empty
    "codes": (aimc.TileConfig(54, 64), False, dict()),
    # 63-row tiles (7 channels of 3x3): groups of 7
    "codes-7": (aimc.TileConfig(64, 64), False, dict()),
    # 27-row tiles (3 channels): no group size divides them, so groups would span two tiles;
    # the indices come from the unfolded planes, each tile padded to whole groups
    "planes": (aimc.TileConfig(27, 64), False, dict()),
    "partial-reads": (aimc.TileConfig(64, 64, parallel_rows=24), False, dict()),
    # reads of 18 rows (groups of 6), each 54-row tile three whole reads: indices from the
    # codes
    "codes-reads": (aimc.TileConfig(54, 64, parallel_rows=18), False, dict()),
    # reads of 16 rows: groups of 8; a 63-row tile (7 channels of 3x3) is not whole reads
    "planes-reads": (aimc.TileConfig(64, 64, parallel_rows=16), False, dict()),
    # 5 channels of 3x3 per group: 45 inputs, not whole groups of 6 (zero codes past them)
    "codes-ragged": (aimc.TileConfig(54, 64), False, dict(channels=10)),
    # signed inputs: planes in {-1, 0, 1}, 81-entry tables
    "signed": (aimc.TileConfig(54, 64), True, dict()),
    "ideal-adc": (aimc.TileConfig(54, 64), False, dict(adc=aimc.ADCConfig(bits=None))),
    # offset encoding: each read's input sum looked up from the pattern sums
    "offset": (
        aimc.TileConfig(54, 64),
        False,
        dict(mapping=CONFIGS["offset-sliced-max-range"]["mapping"]),
    ),
    "offset-signed-reads": (
        aimc.TileConfig(54, 64, parallel_rows=18),
        True,
        dict(mapping=CONFIGS["offset-sliced-max-range"]["mapping"]),
    ),
}


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_table_read_of_bit_planes_equals_the_gemm_read_and_the_general_path(case, monkeypatch):
    """Bit-plane convs on a CPU read through lookup tables (:class:`TableRead`): the same
    partial sums as the GEMM read and the general path, to float rounding."""
    torch.manual_seed(0)
    tile, signed, changes = TABLE_CASES[case]
    changes = dict(changes)
    channels = changes.pop("channels", 40)
    cfg = {**CONFIGS["bit-serial-sliced"], **changes}
    cfg["dac"] = aimc.DACConfig(bits=8, signed=signed, bit_serial=True)
    module = nn.Conv2d(channels, 12, 3, padding=1, groups=2)
    x = torch.randn(5, channels, 9, 7)  # 8 cycles x 315 MVMs: enough rows for the tables
    x = x if signed else torch.relu(x)
    layer = aimc.convert_to_analog(module, aimc.AnalogConfig(**cfg, tile=tile)).eval()
    aimc.calibrate(layer, [x])
    monkeypatch.setattr(aimc.tile.readout, "CHUNK_BYTES", 100_000)  # several spans and chunks
    planes = case in ("planes", "partial-reads", "planes-reads", "signed", "offset-signed-reads")
    _check_table_read(layer, x, aimc.nn.conv, "planes" if planes else "codes", monkeypatch)


def test_table_indices_from_codes_equal_those_from_planes():
    """The indices made from the unfolded codes (each code's bits spread g apart, one weighted
    sum per group) are exactly those made from the unfolded bit planes."""
    torch.manual_seed(0)
    cycles, rows, groups, k = 8, 54, 2, 90  # two row tiles per group, the second partly empty
    n_rt = -(-k // rows)
    w = torch.randn(1, groups, n_rt, rows, 10)
    rw = aimc.tile.accumulate.ReadoutWeights(
        cycle=torch.ones(cycles), slice=torch.ones(1), xsum=None, scale=torch.ones(groups, n_rt, 10)
    )
    table = aimc.tile.readout.TableRead(w, [1.0], rw, 2, aimc.tile.readout.valid_rows(k, rows))
    assert table.takes_codes(rows, cycles)
    codes = torch.randint(0, 2**cycles, (3, groups * k, 5)).float()  # [P, Gr * K, L]
    planes = device_models.converters.bit_planes(codes, cycles).flatten(0, 1)
    x = aimc.tile.readout.tile_rows(planes, groups, rows, zero=True, width=table.width)
    from_planes = table.index(x).view(groups * n_rt, cycles, 15, table.n_groups)
    from_codes = torch.empty_like(from_planes)
    table.index_codes(codes, cycles, from_codes)
    assert torch.equal(from_codes, from_planes)


LINEAR_TABLE_CASES = {
    "codes": (aimc.TileConfig(64, 64), False, "codes", dict()),
    "partial-reads": (aimc.TileConfig(64, 64, parallel_rows=24), False, "codes", dict()),
    "planes": (aimc.TileConfig(27, 64), False, "planes", dict()),
    "signed": (aimc.TileConfig(64, 64), True, "planes", dict()),
    "offset": (
        aimc.TileConfig(64, 64),
        False,
        "codes",
        dict(mapping=CONFIGS["offset-sliced-max-range"]["mapping"]),
    ),
}


@pytest.mark.parametrize("case", sorted(LINEAR_TABLE_CASES))
def test_linear_table_read_equals_the_gemm_read_and_the_general_path(case, monkeypatch):
    """Bit-plane Linear reads of many rows (tokens, a large batch) go through the lookup tables
    too, a chunk of MVMs at a time, and read what the GEMM read and the general path read."""
    torch.manual_seed(0)
    tile, signed, route, changes = LINEAR_TABLE_CASES[case]
    cfg = {**CONFIGS["bit-serial-sliced"], **changes}
    cfg["dac"] = aimc.DACConfig(bits=8, signed=signed, bit_serial=True)
    module = nn.Linear(150, 70)
    x = torch.randn(300, 150)  # 8 cycles x 300 MVMs
    x = x if signed else torch.relu(x)
    layer = aimc.convert_to_analog(module, aimc.AnalogConfig(**cfg, tile=tile)).eval()
    aimc.calibrate(layer, [x])
    monkeypatch.setattr(aimc.tile.readout, "TABLE_ROWS", 1000)  # several chunks of MVMs
    assert _check_table_read(layer, x, aimc.nn.linear, route, monkeypatch) > 1


def test_adc_calibration_of_bit_planes_keeps_the_gemm_read(monkeypatch):
    """An ADC calibration pass needs every slice's partial sums of a chunk at once (its
    per-slice summaries), so it reads through the GEMM even where lookup tables would serve;
    the full scales equal those of a layer that never uses the tables."""
    torch.manual_seed(0)
    cfg = aimc.AnalogConfig(**CONFIGS["bit-serial-sliced"], tile=aimc.TileConfig(54, 64))
    module = nn.Conv2d(40, 12, 3, padding=1, groups=2)
    x = torch.relu(torch.randn(5, 40, 9, 7))
    layer = aimc.convert_to_analog(module, cfg).eval()
    aimc.calibrate(layer, [x])
    monkeypatch.setattr(aimc.nn.conv, "TABLE_MIN_ROWS", 1 << 62)
    gemm = aimc.convert_to_analog(module, cfg).eval()
    aimc.calibrate(gemm, [x])
    scales, ref = layer.adc.full_scale, gemm.adc.full_scale
    assert scales.numel() == 4 and len(set(ref.tolist())) == 4
    assert torch.equal(scales, ref)


def test_lookup_tables_serve_cpu_tensors_only():
    """GPUs keep the GEMM read (tensor cores); multi-bit drives are not bit planes."""
    x = torch.zeros(4, 3)
    assert aimc.tile.readout.plane_base(x, True) == 2
    assert aimc.tile.readout.plane_base(x - 1, True) == 3
    assert aimc.tile.readout.plane_base(x, False) is None
    assert aimc.tile.readout.plane_base(torch.zeros(4, 3, device="meta"), True) is None
