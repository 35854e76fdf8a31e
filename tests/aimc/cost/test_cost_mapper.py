"""Tile counts, utilization and placement on cores and chips."""

from __future__ import annotations

import json

import pytest
import torch
from cost_helpers import FakeAnalogLinear, small_technology
from torch import nn

import aimc
from aimc.cost import map_model


def _cfg(rows=256, cols=256, encoding="differential"):
    return aimc.AnalogConfig(
        tile=aimc.TileConfig(rows=rows, cols=cols),
        mapping=aimc.MappingConfig(encoding=encoding),
        drift_compensation=False,
    )


def test_1000_inputs_on_256_row_tiles_take_4_row_tiles():
    model = nn.Sequential(FakeAnalogLinear(1000, 300, _cfg()))
    lay = map_model(model).layers[0]
    assert lay.n_row_tiles == 4
    assert lay.n_col_tiles == 3  # 300 weights, 2 columns each, 128 per tile
    assert lay.tiles == 12
    assert lay.cells_used == 1000 * 300 * 2
    assert lay.utilization == pytest.approx(600_000 / (12 * 256 * 256))


def test_real_layers_match_their_geometry():
    model = nn.Sequential(nn.Linear(1000, 300), nn.ReLU(), nn.Linear(300, 10))
    analog = aimc.convert_to_analog(model, _cfg())
    report = map_model(analog)
    first, last = report.layers
    assert (first.name, first.n_row_tiles, first.n_col_tiles, first.tiles) == ("0", 4, 3, 12)
    assert (last.name, last.n_row_tiles, last.n_col_tiles, last.tiles) == ("2", 2, 1, 2)
    assert report.tiles == 14
    assert report.cells_used == 2 * (1000 * 300 + 300 * 10)
    assert report.n_chips is None and report.technology is None


def test_conv_unrolls_its_kernel():
    conv = nn.Sequential(nn.Conv2d(16, 32, 3, groups=2))
    analog = aimc.convert_to_analog(conv, _cfg(rows=64, cols=64, encoding="offset"))
    lay = map_model(analog).layers[0]
    assert (lay.groups, lay.in_rows, lay.out_cols) == (2, 8 * 9, 16)
    assert (lay.n_row_tiles, lay.n_col_tiles, lay.tiles) == (2, 1, 4)


def test_placement_on_chips_and_overflow():
    # 1 tile per core, 2 cores per cluster, 2 clusters per chip: 4 tiles per chip.
    tech = small_technology()
    model = nn.Sequential(
        FakeAnalogLinear(64, 8, _cfg(rows=32, cols=32)),  # 2 tiles
        FakeAnalogLinear(96, 8, _cfg(rows=32, cols=32)),  # 3 tiles
        FakeAnalogLinear(200, 8, _cfg(rows=32, cols=32)),  # 7 tiles: larger than a chip
    )
    report = map_model(model, tech)
    assert [x.cores for x in report.layers] == [2, 3, 7]
    assert [x.chips for x in report.layers] == [(0,), (0, 1), (1, 2)]
    assert report.cores == 12 and report.clusters == 6 and report.n_chips == 3
    assert not report.fits_on_one_chip
    assert report.overflow_layers == ("1", "2")
    assert report.oversized_layers == ("2",)
    assert "needs 3 chips" in report.table()


def test_isaac_fits_a_small_model():
    model = nn.Sequential(nn.Linear(100, 50))
    report = map_model(aimc.convert_to_analog(model, aimc.presets.isaac()), "isaac")
    assert report.fits_on_one_chip and report.n_chips == 1
    assert report.layers[0].tiles == 4  # 50 weights at 16 per 128-column tile
    assert report.layers[0].cores == 1


def test_report_serializes_and_prints():
    model = nn.Sequential(FakeAnalogLinear(40, 8, _cfg(rows=32, cols=32)))
    report = map_model(model, "isaac")
    json.dumps(report.to_dict())
    assert "0" in report.table() and "fits on one chip" in report.table()
    assert report.layer("0").tiles == 2
    with pytest.raises(KeyError, match="no analog layer"):
        report.layer("nope")


def test_no_analog_layers():
    with pytest.raises(ValueError, match="no analog layers.*convert_to_analog"):
        map_model(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(TypeError, match="nn.Module"):
        map_model(torch.zeros(3))
