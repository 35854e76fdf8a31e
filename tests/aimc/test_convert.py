from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import aimc
from aimc.nn import AnalogConv2d, AnalogLinear


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 4, 1) if False else nn.Identity()
        )
        self.block = nn.ModuleDict({"proj": nn.Linear(4 * 8 * 8, 16)})
        self.attn = nn.MultiheadAttention(16, 2)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.features(x).flatten(1)
        h = torch.relu(self.block["proj"](h))
        return self.head(h)


def _model():
    torch.manual_seed(0)
    return Net().eval()


def test_converted_nested_model_equals_digital_when_ideal():
    model = _model()
    analog = aimc.convert_to_analog(model, aimc.AnalogConfig.ideal())
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(analog(x), model(x), rtol=1e-5, atol=1e-5)
    assert isinstance(model.head, nn.Linear) and not isinstance(model.head, AnalogLinear)
    names = [n for n, _ in aimc.analog_layers(analog)]
    assert names == ["features.0", "block.proj", "attn.in_proj", "attn.out_proj", "head"]


def test_names_kept_and_digital_state_dict_loads():
    model = _model()
    analog = aimc.convert_to_analog(model, aimc.AnalogConfig.ideal())
    missing, unexpected = analog.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected
    assert all(k.rsplit(".", 1)[-1] not in ("weight", "bias") for k in missing)


def test_exclude_and_layer_configs():
    model = _model()
    fine = aimc.AnalogConfig(tile=aimc.TileConfig(16, 16))
    analog = aimc.convert_to_analog(
        model, aimc.AnalogConfig(), exclude=["head"], layer_configs={"block.*": fine}
    )
    assert type(analog.head) is nn.Linear
    assert analog.block["proj"].config is fine
    assert isinstance(analog.features[0], AnalogConv2d)
    report = aimc.conversion_report(analog)
    analog_rows, digital_rows = report.split("left digital")
    assert "block.proj" in analog_rows and "head" not in analog_rows.split("\n", 1)[1]
    assert re.search(r"head +Linear +digital: excluded \(exclude pattern 'head'\)", digital_rows)


def test_inplace_and_root_conversion():
    lin = nn.Linear(4, 2)
    converted = aimc.convert_to_analog(lin, aimc.AnalogConfig.ideal())
    assert isinstance(converted, AnalogLinear) and type(lin) is nn.Linear
    model = _model()
    out = aimc.convert_to_analog(model, aimc.AnalogConfig.ideal(), inplace=True)
    assert out is model and isinstance(model.head, AnalogLinear)


def test_program_and_drift_all_layers():
    analog = aimc.convert_to_analog(_model(), aimc.AnalogConfig())
    aimc.program(analog, seed=1)
    aimc.drift(analog, t=3600.0)
    assert all(layer.t_s == 3600.0 for _, layer in aimc.analog_layers(analog))
    seeds = {int(layer.crossbar.seed) for _, layer in aimc.analog_layers(analog)}
    assert len(seeds) == 5  # each layer its own draw


def test_calibrate_sets_ranges():
    analog = aimc.convert_to_analog(_model(), aimc.AnalogConfig())
    xs = [torch.randn(4, 1, 8, 8) for _ in range(3)]
    aimc.calibrate(analog, xs)
    first = analog.features[0]
    assert float(first.dac.range) == pytest.approx(max(float(x.abs().max()) for x in xs))
    for _, layer in aimc.analog_layers(analog):
        if layer not in (analog.attn.in_proj, analog.attn.out_proj):  # never called
            assert float(layer.adc.full_scale.min()) > 0


def test_bad_model_operations():
    with pytest.raises(TypeError, match="nn.Module"):
        aimc.convert_to_analog("model", aimc.AnalogConfig())
    digital = _model()
    with pytest.raises(ValueError, match="no analog layers"):
        aimc.program(digital, seed=0)
    with pytest.raises(ValueError, match="no analog layers"):
        aimc.drift(digital, t=1.0)
    analog = aimc.convert_to_analog(digital, aimc.AnalogConfig())
    with pytest.raises(ValueError, match="drift time"):
        aimc.drift(analog, t=-1.0)
    with pytest.raises(ValueError, match="seed"):
        aimc.program(analog, seed=-3)
    with pytest.raises(TypeError, match="layer_configs"):
        aimc.convert_to_analog(digital, aimc.AnalogConfig(), layer_configs={"*": 3})


def test_track_adc_saturation():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    rates = {}
    for fraction in (1.0, 0.1):
        cfg = aimc.AnalogConfig(device="ideal", adc=aimc.ADCConfig(bits=6, range_fraction=fraction))
        analog = aimc.convert_to_analog(_model(), cfg).eval()
        aimc.calibrate(analog, [x])
        with aimc.track_adc_saturation(analog) as r:
            analog(x)
        rates[fraction] = r
    # The first layer sees exactly its calibration batch: at the calibrated max nothing clips.
    # Deeper layers see the (quantized) analog activations, slightly off their calibration, so
    # a few reads clip; a tenth of the range clips many more.
    assert rates[1.0]["features.0"] == 0.0
    assert rates[0.1]["features.0"] > 0.0
    assert rates[1.0]["head"] < 0.05 < rates[0.1]["head"] <= 1.0
    assert "attn.out_proj" not in rates[1.0]  # never run, nothing counted
    assert not any(layer.adc.counting for _, layer in aimc.analog_layers(analog))
