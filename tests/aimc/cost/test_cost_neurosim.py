"""VGG-8 against DNN+NeuroSim V1.4 (its manual's Table VII and a NeuroSim run): area, TOPS and
TOPS/W within 25 %, from the component models (the table: python -m benchmarks.cost_neurosim)."""

from __future__ import annotations

import pytest
import torch

import aimc
import aimc.presets
from aimc.cost import estimate_cost
from experiments.models import VGG8

# area mm^2, TOPS (ops over the pipeline period, 2 per MAC), TOPS/W
NEUROSIM = {
    "rram22-5": (381.90, 6.25, 11.25),  # manual Table VII, RRAM row (5-bit sense amp as shipped)
    "rram22-4": (345.0, 7.89, 18.5),  # NeuroSim V1.4 run with 16 sense-amp levels
    "sram22-5": (85.97, 6.06, 8.76),  # manual Table VII, SRAM row
}


@pytest.fixture(scope="module")
def vgg8():
    torch.manual_seed(0)
    model = VGG8((3, 32, 32), 10, width=128, hidden=1024, batch_norm=False).eval()
    return model, torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("case", list(NEUROSIM))
def test_vgg8_within_25_percent_of_neurosim(vgg8, case):
    model, x = vgg8
    tech, bits = case.split("-")
    cfg = getattr(aimc.presets, tech)(adc=aimc.ADCConfig(bits=int(bits)))
    analog = aimc.convert_to_analog(model, cfg, program=False)
    report = estimate_cost(analog, x, tech, replication="balanced")
    area, tops, tops_per_w = NEUROSIM[case]
    t = report.total
    assert t.ops == pytest.approx(1.232e9, rel=0.01)  # NeuroSim's operations per image
    assert t.tiles == 8840  # NeuroSim's sub-arrays with its pipeline duplication
    assert t.area_mm2 == pytest.approx(area, rel=0.25)
    assert t.pipelined_tops == pytest.approx(tops, rel=0.25)
    assert t.tops_per_w == pytest.approx(tops_per_w, rel=0.25)
    assert report.warnings == ()
    # NeuroSim: ADC and sense dominate the energy, accumulation second
    shares = sorted(t.energy_by_component_j, key=t.energy_by_component_j.get, reverse=True)
    assert shares[:2] == ["adc", "shift_add"]
