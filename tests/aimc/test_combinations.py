"""Every mapping/converter/compensation/training option composes with every layer type."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import aimc

_MODULES = {
    "linear": (lambda: nn.Linear(40, 12), lambda: torch.randn(6, 40)),
    "conv2d": (lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2), lambda: torch.randn(2, 4, 7, 7)),
    "conv1d": (lambda: nn.Conv1d(6, 4, 5, stride=2), lambda: torch.randn(2, 6, 17)),
}


@given(
    module=st.sampled_from(sorted(_MODULES)),
    encoding=st.sampled_from(["differential", "offset"]),
    weights=st.sampled_from([(None, 1), (8, 1), (12, 3)]),
    bit_serial=st.booleans(),
    dynamic=st.booleans(),
    compensation=st.sampled_from(["global", "column"]),
    device=st.sampled_from(["ideal", "pcm", "rram"]),
    hardware_aware=st.booleans(),
)
def test_options_compose(
    module, encoding, weights, bit_serial, dynamic, compensation, device, hardware_aware
):
    torch.manual_seed(0)
    make, make_x = _MODULES[module]
    digital, x = make(), make_x()
    cfg = aimc.AnalogConfig(
        device=device,
        tile=aimc.TileConfig(16, 32),
        dac=aimc.DACConfig(
            bits=8, bit_serial=bit_serial, range_mode="dynamic" if dynamic else "calibrated"
        ),
        adc=aimc.ADCConfig(bits=10),
        mapping=aimc.MappingConfig(encoding=encoding, weight_bits=weights[0], slices=weights[1]),
        drift_compensation_mode=compensation,
        training=aimc.TrainingConfig(hardware_aware=hardware_aware),
    )
    analog = aimc.convert_to_analog(digital, cfg)
    aimc.calibrate(analog, [x])
    aimc.drift(analog, 3600.0)
    with torch.no_grad():
        y, ref = analog.eval()(x), digital(x)
    assert y.shape == ref.shape and bool(torch.isfinite(y).all())
    if device == "ideal":
        # 8-bit DAC, 10-bit ADC, >= 8-bit weights: a few percent of the output norm at most
        assert float((y - ref).norm() / ref.norm()) < 0.05
    if hardware_aware:
        analog.train()(x).sum().backward()
        assert bool(torch.isfinite(analog.weight.grad).all())
