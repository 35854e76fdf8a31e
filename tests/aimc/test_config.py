from __future__ import annotations

import pytest

import aimc
import device_models


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: aimc.TileConfig(rows=0), "TileConfig.rows"),
        (lambda: aimc.TileConfig(cols=-4), "TileConfig.cols"),
        (lambda: aimc.DACConfig(bits=0), "DACConfig.bits"),
        (lambda: aimc.DACConfig(bits=25), "DACConfig.bits"),
        (lambda: aimc.ADCConfig(bits=-1), "ADCConfig.bits"),
        (lambda: aimc.ADCConfig(noise=-0.1), "ADCConfig.noise"),
        (lambda: aimc.ADCConfig(range_mode="auto"), "ADCConfig.range_mode"),
        (lambda: aimc.DACConfig(percentile=0.0), "DACConfig.percentile"),
        (lambda: aimc.MappingConfig(weight_scaling="row"), "MappingConfig.weight_scaling"),
        (lambda: aimc.MappingConfig(slices=2), "MappingConfig.slices"),
        (lambda: aimc.MappingConfig(weight_bits=4, slices=5), "MappingConfig.slices"),
        (lambda: aimc.AnalogConfig(drift_compensation_mode="row"), "drift_compensation_mode"),
        (lambda: aimc.AnalogConfig(seed=-1), "AnalogConfig.seed"),
        (
            lambda: aimc.AnalogConfig(
                tile=aimc.TileConfig(cols=3), mapping=aimc.MappingConfig(weight_bits=8, slices=2)
            ),
            "TileConfig.cols",
        ),
    ],
)
def test_bad_values_name_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_bits_type_error_names_field():
    with pytest.raises(TypeError, match="DACConfig.bits"):
        aimc.DACConfig(bits=8.0)


def test_unknown_device_lists_known_names():
    with pytest.raises(KeyError, match="known devices") as err:
        aimc.AnalogConfig(device="pcmm")
    for name in device_models.names():
        assert name in str(err.value)


def test_device_by_name_and_dict_subconfigs():
    cfg = aimc.AnalogConfig(device="ideal", tile={"rows": 64, "cols": 32})
    assert isinstance(cfg.device, device_models.Ideal)
    assert cfg.tile == aimc.TileConfig(64, 32)


def test_ideal_has_no_quantization():
    cfg = aimc.AnalogConfig.ideal()
    assert cfg.dac.bits is None and cfg.adc.bits is None
    assert cfg.device.is_ideal and not cfg.drift_compensation


def test_mapping_columns_per_weight():
    assert aimc.MappingConfig().cols_per_weight == 2
    m = aimc.MappingConfig(encoding="offset", weight_bits=16, slices=8)
    assert (m.cols_per_weight, m.bits_per_slice) == (8, 2)
