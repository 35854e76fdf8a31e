"""Every bool field of every config refuses non-bools; a signed 1-bit DAC is refused."""

from __future__ import annotations

import dataclasses
import typing

import pytest

import aimc
import device_models
from experiments.config import ConfigError, LoggerSettings, TrainSettings
from experiments.datasets import DatasetSpec

CONFIGS = [
    aimc.TileConfig,
    aimc.MappingConfig,
    aimc.TrainingConfig,
    aimc.AnalogConfig,
    aimc.DACConfig,
    aimc.ADCConfig,
    device_models.PCM,
    device_models.RRAM,
    device_models.Ideal,
    device_models.Tabulated,
    TrainSettings,
    LoggerSettings,
    DatasetSpec,
]


def _bool_fields():
    for cls in CONFIGS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] is bool:
                yield cls, f.name


BOOL_FIELDS = list(_bool_fields())


def test_the_configs_have_the_bool_fields_we_expect():
    names = {f"{cls.__name__}.{name}" for cls, name in BOOL_FIELDS}
    assert {"DACConfig.signed", "DACConfig.bit_serial", "AnalogConfig.drift_compensation"} <= names
    assert {"TrainSettings.cache", "LoggerSettings.tensorboard", "DatasetSpec.download"} <= names


@pytest.mark.parametrize("value", ["no", "false", "False", 0, 1, None])
@pytest.mark.parametrize(("cls", "name"), BOOL_FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_every_bool_field_refuses_a_non_bool_naming_the_field(cls, name, value):
    kwargs = {name: value}
    if cls is aimc.TrainingConfig and name != "hardware_aware":
        kwargs["hardware_aware"] = True
    with pytest.raises((TypeError, ConfigError)) as err:
        cls(**kwargs)
    message = str(err.value)
    assert name in message and ("bool" in message or "true or false" in message)


@pytest.mark.parametrize(("cls", "name"), BOOL_FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_every_bool_field_takes_true_and_false(cls, name):
    for value in (True, False):
        kwargs = {name: value}
        if cls is aimc.TrainingConfig and name != "hardware_aware" and value:
            kwargs["hardware_aware"] = True
        if cls is aimc.DACConfig and name == "bit_serial" and value:
            kwargs["bits"] = 4
        assert getattr(cls(**kwargs), name) is value


def test_a_string_no_does_not_switch_bit_serial_on():
    with pytest.raises(TypeError, match=r"DACConfig\.bit_serial must be a bool.*'no'"):
        aimc.DACConfig(bit_serial="no")
    with pytest.raises(TypeError, match=r"DACConfig\.signed must be a bool"):
        aimc.DACConfig(signed="no")


def test_a_signed_one_bit_dac_is_refused_with_the_alternatives():
    with pytest.raises(ValueError, match=r"DACConfig\.bits=1 with signed=True") as err:
        aimc.DACConfig(bits=1)
    assert "signed=False" in str(err.value) and "bits >= 2" in str(err.value)
    with pytest.raises(ValueError, match=r"DACConfig\.bits=1"):
        aimc.DACConfig(bits=1, bit_serial=True)


def test_an_unsigned_one_bit_dac_drives_on_off_pulses():
    torch = pytest.importorskip("torch")
    dac = aimc.DACConfig(bits=1, signed=False)
    assert dac.levels == 1
    cfg = aimc.AnalogConfig.ideal(dac=dac)
    layer = aimc.nn.AnalogLinear(4, 3, config=cfg).eval()
    x = torch.rand(8, 4)
    aimc.calibrate(layer, [x])
    y = layer(x)
    assert torch.isfinite(y).all()
    on = (x / x.abs().max() >= 0.5).float() * x.abs().max()  # one level: round(x / range)
    torch.testing.assert_close(y, torch.nn.functional.linear(on, layer.weight, layer.bias))
