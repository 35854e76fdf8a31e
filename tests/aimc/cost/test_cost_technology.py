"""Technology presets, the registry, and loading from dicts and YAML with named errors."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from aimc.cost import Technology, get_technology, load_technology, technology_names
from aimc.cost.technology import resolve_technology


def test_presets_are_registered_and_fresh():
    assert set(technology_names()) >= {"isaac", "hermes", "rram22"}
    a, b = get_technology("isaac"), get_technology("isaac")
    assert a == b and a is not b
    assert a.tiles_per_chip == 8 * 12 * 168


def test_unknown_name_lists_known_ones_and_closest():
    with pytest.raises(
        KeyError, match=r"unknown technology 'isac'.*hermes.*isaac.*did you mean 'isaac'"
    ):
        get_technology("isac")


def test_overrides_are_validated():
    assert get_technology("isaac", adc_fom_walden_fj=20.0).adc_fom_walden_fj == 20.0
    with pytest.raises(ValueError, match="unknown fields"):
        get_technology("isaac", adc_fom=20.0)
    with pytest.raises(ValueError, match=r"Technology\.cycle_ns must be a finite number >= 0"):
        get_technology("isaac", cycle_ns=-1.0)


def test_dict_round_trip():
    tech = get_technology("hermes")
    assert Technology.from_dict(tech.to_dict()) == tech


@pytest.mark.parametrize(
    "field, value, err, text",
    [
        (
            "adc_area_um2",
            -5.0,
            ValueError,
            r"Technology\.adc_area_um2 must be a finite number >= 0",
        ),
        ("cycle_ns", 0.0, ValueError, r"Technology\.cycle_ns must be > 0"),
        ("tiles_per_core", 0, ValueError, r"Technology\.tiles_per_core must be >= 1"),
        ("tiles_per_core", 2.5, TypeError, r"Technology\.tiles_per_core must be an int"),
        ("v_read_v", "high", TypeError, r"Technology\.v_read_v must be a number"),
        ("peak_g_fraction", 1.5, ValueError, r"Technology\.peak_g_fraction"),
    ],
)
def test_bad_fields_are_named(field, value, err, text):
    with pytest.raises(err, match=text):
        dataclasses.replace(get_technology("isaac"), **{field: value})


def test_yaml_with_every_field_loads(tmp_path):
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(get_technology("rram22").to_dict()))
    assert load_technology(path) == get_technology("rram22")
    assert resolve_technology(str(path)) == get_technology("rram22")


def test_yaml_missing_field_is_named(tmp_path):
    data = get_technology("isaac").to_dict()
    del data["adc_fom_walden_fj"]
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"missing required fields \['adc_fom_walden_fj'\]"):
        load_technology(path)


def test_yaml_negative_field_is_named(tmp_path):
    data = get_technology("isaac").to_dict()
    data["buffer_read_energy_pj_per_bit"] = -0.1
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="buffer_read_energy_pj_per_bit"):
        load_technology(path)


def test_yaml_preset_with_overrides_and_typos(tmp_path):
    path = tmp_path / "chip.yaml"
    path.write_text("preset: isaac\nadc_fom_walden_fj: 20.0\n")
    assert load_technology(path).adc_fom_walden_fj == 20.0
    path.write_text("preset: isaac\nadc_fom_walden: 20.0\n")
    with pytest.raises(ValueError, match="did you mean 'adc_fom_walden_fj'"):
        load_technology(path)


def test_resolve_rejects_other_types():
    with pytest.raises(TypeError, match="technology must be a name"):
        resolve_technology(3.5)
