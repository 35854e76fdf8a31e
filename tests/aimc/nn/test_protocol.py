"""One ``AnalogLayer`` protocol: the cost model and the conversion helpers find the same layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import aimc
from aimc.nn.protocol import AnalogLayer, analog_layers
from aimc.tile import TileGeometry


class CostOnlyLayer(nn.Module):
    """A custom layer with the cost interface but no programming or converter stages."""

    def __init__(self, n: int = 8):
        super().__init__()
        self.config = aimc.AnalogConfig(device="ideal")
        self.geometry = TileGeometry(
            groups=1, in_rows=n, out_cols=n, rows=16, cols=16, slices=1, cols_per_weight=2
        )
        self.lin = nn.Linear(n, n)

    def forward(self, x):
        return self.lin(x)

    def mvm_count(self, x) -> int:
        return x.numel() // self.geometry.in_rows

    def row_activity(self, x):
        return x.abs().sum(0, keepdim=True)

    def row_conductance_sums(self):
        return torch.ones(1, self.geometry.in_rows)


def test_analog_layers_and_the_cost_mapper_find_the_same_layers():
    model = nn.Sequential(
        aimc.convert_to_analog(nn.Linear(8, 8), aimc.AnalogConfig(device="ideal")),
        CostOnlyLayer(),
    )
    found = [name for name, _ in analog_layers(model)]
    assert found == ["0", "1"] and [n for n, _ in aimc.analog_layers(model)] == found
    assert [layer.name for layer in aimc.map_model(model).layers] == found
    assert isinstance(model[0], AnalogLayer) and not isinstance(nn.Linear(2, 2), AnalogLayer)
    assert "1.lin" not in found  # the modules inside an analog layer belong to it


@pytest.mark.parametrize(
    "helper",
    [
        lambda m: aimc.program(m, seed=1),
        lambda m: aimc.drift(m, 10.0),
        lambda m: aimc.calibrate(m, [torch.randn(2, 8)]),
    ],
    ids=["program", "drift", "calibrate"],
)
def test_helpers_refuse_a_layer_they_cannot_serve_naming_it(helper):
    model = nn.Sequential(aimc.convert_to_analog(nn.Linear(8, 8)), CostOnlyLayer())
    with pytest.raises(TypeError, match=r"'1' \(CostOnlyLayer\) has no"):
        helper(model)


def test_saturation_tracking_refuses_a_layer_without_an_adc_stage():
    model = nn.Sequential(CostOnlyLayer())
    with pytest.raises(TypeError, match="'0' .* no adc stage"):
        with aimc.track_adc_saturation(model):
            pass


#: single- and multi-matrix torch layers and their analog classes
CONVERTED = [
    (lambda: torch.nn.Linear(12, 6), "AnalogLinear"),
    (lambda: torch.nn.LSTM(6, 5), "AnalogLSTM"),
    (lambda: torch.nn.GRU(6, 5), "AnalogGRU"),
    (lambda: torch.nn.MultiheadAttention(8, 2), "AnalogMultiheadAttention"),
]


@pytest.mark.parametrize(("make", "cls"), CONVERTED)
def test_from_digital_keeps_the_mode_and_a_deferred_seed(make, cls):
    """Single- and multi-matrix layers convert alike: the torch module's train/eval mode goes
    both ways, and ``program=False`` with a seed programs the same draw on first use as
    ``program=True`` with that seed."""
    analog_cls = getattr(aimc, cls)
    torch.manual_seed(0)
    module = make().eval()
    cfg = aimc.AnalogConfig()
    now = analog_cls.from_digital(module, cfg, seed=7)
    later = analog_cls.from_digital(module, cfg, seed=7, program=False)
    assert not now.training and not later.training
    assert not now.to_digital().training
    assert now.train().to_digital().training
    layers = [m for m in later.modules() if isinstance(m, aimc.nn.AnalogLayerBase)]
    for m in layers:
        m.program()  # no seed: the one stored at conversion
    ref = [m for m in now.modules() if isinstance(m, aimc.nn.AnalogLayerBase)]
    for a, b in zip(ref, layers):
        assert torch.equal(a.crossbar.dev_g, b.crossbar.dev_g)


@pytest.mark.parametrize(("make", "cls"), CONVERTED)
def test_from_digital_takes_the_torch_parameters_and_keeps_a_learned_input_range(make, cls):
    """One conversion for every layer: the torch parameters by name both ways, and a learned
    input range (a parameter only the analog layer has) starts at 1 in every tile layer."""
    torch.manual_seed(0)
    module = make()
    cfg = aimc.AnalogConfig(
        training=aimc.TrainingConfig(hardware_aware=True, learn_input_range=True)
    )
    analog = getattr(aimc, cls).from_digital(module, cfg)
    gains = [n for n, _ in analog.named_parameters() if n.endswith("dac.range_gain")]
    assert gains and all(float(analog.get_parameter(n)) == 1.0 for n in gains)
    back = analog.to_digital()
    want = dict(module.named_parameters())
    assert [n for n, _ in back.named_parameters()] == list(want)
    for name, p in back.named_parameters():
        assert torch.equal(p, want[name])
