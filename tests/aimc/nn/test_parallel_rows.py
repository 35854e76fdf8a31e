"""Partial-row reads (``TileConfig.parallel_rows``): each read of ``parallel_rows`` rows is
digitized on its own, then the reads are added digitally."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import aimc
import device_models


def _convert(module: nn.Module, x: torch.Tensor, **config) -> nn.Module:
    layer = aimc.convert_to_analog(module, aimc.AnalogConfig(**config)).eval()
    aimc.calibrate(layer, [x])
    return layer


def _modules():
    torch.manual_seed(0)
    return [
        (nn.Linear(100, 12), torch.randn(7, 100)),
        (nn.Conv2d(10, 6, 3, padding=1), torch.randn(3, 10, 6, 5)),
    ]


@pytest.mark.parametrize("index", [0, 1], ids=["linear", "conv"])
def test_reading_all_rows_at_once_is_todays_read(index):
    module, x = _modules()[index]
    tile = dict(rows=64, cols=64)
    base = _convert(module, x, tile=aimc.TileConfig(**tile))
    full = _convert(module, x, tile=aimc.TileConfig(**tile, parallel_rows=64))
    with torch.no_grad():
        torch.testing.assert_close(full(x), base(x), rtol=0, atol=0)


@pytest.mark.parametrize("index", [0, 1], ids=["linear", "conv"])
@pytest.mark.parametrize("alignment", ["channel", "dense"])
def test_partial_reads_with_ideal_converters_sum_to_the_full_read(index, alignment):
    module, x = _modules()[index]
    cfg = dict(
        device=device_models.Ideal(),
        dac=aimc.DACConfig(bits=None),
        adc=aimc.ADCConfig(bits=None),
        drift_compensation=False,
        mapping=aimc.MappingConfig(conv_alignment=alignment),
    )
    base = _convert(module, x, tile=aimc.TileConfig(64, 64), **cfg)
    split = _convert(module, x, tile=aimc.TileConfig(64, 64, parallel_rows=7), **cfg)
    with torch.no_grad():
        torch.testing.assert_close(split(x), base(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(split(x), module(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("parallel_rows", [5, 16, 64])
def test_partial_read_quantization_error_within_its_bound(parallel_rows):
    # An ideal device and DAC, a 5-bit ADC whose full scale is the largest current one read
    # can carry (parallel_rows rows at g_max and full input): every read is off by at most
    # half an LSB, so an output is off by at most (reads it sums) * LSB / 2, in units of the
    # weight scale times the DAC range.
    torch.manual_seed(1)
    lin = nn.Linear(64, 10, bias=False)
    x = torch.rand(200, 64) * 2 - 1
    levels, bits = 15, 5
    layer = _convert(
        lin,
        x,
        device=device_models.Ideal(),
        tile=aimc.TileConfig(64, 64, parallel_rows=parallel_rows),
        dac=aimc.DACConfig(bits=None),
        adc=aimc.ADCConfig(bits=bits, range_mode="max"),
        mapping=aimc.MappingConfig(weight_scaling="layer"),
        drift_compensation=False,
    )
    with torch.no_grad():
        err = (layer(x) - lin(x)).abs()
    reads = -(-64 // parallel_rows)
    lsb = parallel_rows / levels  # normalized current units
    scale = float(lin.weight.detach().abs().max()) * float(layer.dac.range)
    bound = reads * lsb / 2 * scale
    assert float(err.max()) <= bound * (1 + 1e-5)
    # the bound is not vacuous: rounding of independent reads fills a good part of it
    assert float(err.max()) > 0.1 * bound


def test_fewer_parallel_rows_give_a_finer_max_range_adc():
    # With a max-current ADC range, the LSB shrinks with the rows a read sums: reading 8 rows at
    # a time quantizes a 64-row tile more finely than reading all 64 (per-read error LSB/2 adds
    # up over 8 reads as sqrt(8) in RMS, against LSB*8/2 for one read)
    torch.manual_seed(2)
    lin = nn.Linear(64, 16, bias=False)
    x = torch.rand(300, 64) * 2 - 1
    errs = []
    for pr in (8, None):
        layer = _convert(
            lin,
            x,
            device=device_models.Ideal(),
            tile=aimc.TileConfig(64, 64, parallel_rows=pr),
            dac=aimc.DACConfig(bits=None),
            adc=aimc.ADCConfig(bits=4, range_mode="max"),
            drift_compensation=False,
        )
        with torch.no_grad():
            errs.append(float((layer(x) - lin(x)).pow(2).mean()))
    assert errs[0] < 0.5 * errs[1]
