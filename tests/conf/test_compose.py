"""Every YAML in conf/ composes and builds the real objects (a broken YAML fails here)."""

from __future__ import annotations

import importlib.util

import pytest
from conf_helpers import CONF_DIR, compose_config
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

import aimc
import device_models
from experiments.config import ConfigError, Experiment, build

GROUPS = (
    "dataset",
    "model",
    "device",
    "tile",
    "dac",
    "adc",
    "mapping",
    "technology",
    "train",
    "eval",
    "logger",
    "paths",
)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


GROUP_OPTIONS = [(g, o) for g in GROUPS for o in _options(g)]
EXPERIMENTS = _options("experiment")


def test_default_config_builds_the_documented_default():
    exp = build(compose_config([]))
    assert isinstance(exp, Experiment)
    assert isinstance(exp.analog, aimc.AnalogConfig)
    assert isinstance(exp.analog.device, device_models.PCM)
    assert (exp.analog.tile.rows, exp.analog.tile.cols) == (256, 512)
    assert exp.analog.dac.bits == 8 and exp.analog.adc.bits == 8
    assert exp.dataset.name == "digits"
    assert exp.model_factory.__name__ == "MLP"
    assert exp.technology == "hermes"
    assert exp.eval.times == [1.0, 3600.0, 86400.0, 31536000.0]
    assert exp.train.hardware_aware is False


@pytest.mark.parametrize(
    "key",
    [
        "train.epochs",
        "train.hardware_aware",
        "eval.times",
        "eval.repeats",
        "adc.bits",
        "dac.bits",
        "tile.rows",
        "tile.cols",
        "seed",
    ],
)
def test_documented_keys_exist(key):
    cfg = compose_config([])
    assert OmegaConf.select(cfg, key, throw_on_missing=True) is not None or key.endswith("bits")


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_group_option_composes_and_builds(group, option):
    exp = build(compose_config([f"{group}={option}"]))
    assert isinstance(exp.analog, aimc.AnalogConfig)
    if group == "device":
        assert exp.analog.device.name == option
    if group == "tile":
        assert exp.analog.tile.rows == exp.config["tile"]["rows"]
    if group in ("dac", "adc"):
        assert getattr(exp.analog, group).bits == exp.config[group]["bits"]
    if group == "dataset":
        assert exp.dataset.name == option
    if group == "technology":
        assert exp.config["technology"]["name"] == option


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_preset_composes_and_builds(name):
    cfg = compose_config([f"experiment={name}"], hydra=True)
    exp = build(cfg)
    assert isinstance(exp.analog, aimc.AnalogConfig)
    default = compose_config([], hydra=True)
    changed = (
        OmegaConf.to_container(cfg.hydra.sweeper) != OmegaConf.to_container(default.hydra.sweeper)
        or exp.config != build(compose_config([])).config
    )
    if name == "hermes":  # the default run is the HERMES chip: its preset only names it
        assert not changed, "the default experiment drifted away from experiment=hermes"
    else:
        assert changed, f"experiment={name} changes nothing"


def test_overrides_reach_the_objects():
    exp = build(
        compose_config(
            [
                "device=rram",
                "adc.bits=6",
                "dac.bits=null",
                "tile.rows=128",
                "train.epochs=7",
                "eval.repeats=4",
                "model=lenet5",
                "dataset=mnist",
                "technology=hermes",
                "seed=3",
            ]
        )
    )
    assert isinstance(exp.analog.device, device_models.RRAM)
    assert exp.analog.adc.bits == 6 and exp.analog.dac.bits is None
    assert exp.analog.tile.rows == 128
    assert exp.train.epochs == 7 and exp.eval.repeats == 4
    assert exp.model_factory.__name__ == "LeNet5"
    assert exp.dataset.name == "mnist" and exp.dataset.seed == 3
    assert exp.technology == "hermes" and exp.seed == 3 and exp.analog.seed == 3


def test_unknown_group_option_names_the_group():
    with pytest.raises(MissingConfigException, match="device/flash"):
        compose_config(["device=flash"])


def test_unknown_key_is_refused_at_compose_time():
    with pytest.raises(ConfigCompositionException, match="train.epoch"):
        compose_config(["train.epoch=3"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("adc.bits=-1", "adc.bits=-1"),
        ("dac.bits=-4", "dac.bits=-4"),
        ("tile.rows=0", "tile.rows=0"),
        ("device.g_max=-1.0", "device.g_max"),
        ("mapping.encoding=pairs", "mapping.encoding"),
        ("train.epochs=-1", "train.epochs"),
        ("eval.repeats=0", "eval.repeats"),
        ("eval.times=[]", "eval.times"),
        ("dataset.test_fraction=1.5", "dataset.test_fraction"),
        ("model._target_=nowhere.Net", "model._target_"),
        ("technology.name=abacus", "technology.name"),
        ("+technology.bogus=1", "technology.bogus"),
        ("train.checkpoint=/no/such/file.pt", "train.checkpoint"),
        ("+adc.resolution=3", "adc.resolution"),
    ],
)
def test_bad_values_stop_with_the_key(override, key):
    if key.startswith("technology") and not _has_cost_model():
        pytest.skip("aimc.cost has not landed: technology names cannot be checked")
    with pytest.raises(ConfigError) as info:
        build(compose_config([override]))
    assert str(info.value).startswith(key), str(info.value)


def _has_cost_model() -> bool:
    try:
        from aimc.cost import technology_names  # noqa: F401
    except ImportError:
        return False
    return True


def test_joblib_launcher_composes():
    cfg = compose_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], hydra=True)
    assert cfg.hydra.launcher.n_jobs == 2
    assert "joblib" in cfg.hydra.launcher._target_.lower()


@pytest.mark.parametrize(
    ("name", "plugin"),
    [
        ("slurm", "hydra_plugins.hydra_submitit_launcher"),
        ("ray_cluster", "ray"),
    ],
)
def test_cluster_launcher_configs(name, plugin):
    path = CONF_DIR / "hydra" / "launcher" / f"{name}.yaml"
    raw = OmegaConf.load(path)  # parses without the plugin
    assert raw.defaults
    text = path.read_text()
    assert "pip install" in text  # documents the package it needs
    try:
        present = importlib.util.find_spec(plugin) is not None
    except ModuleNotFoundError:
        present = False
    if not present:
        pytest.skip(f"{plugin} is not installed (optional)")
    cfg = compose_config([f"hydra/launcher={name}"], hydra=True)
    assert cfg.hydra.launcher._target_


@pytest.mark.parametrize("name", ["isaac", "hermes", "rram22", "sram22"])
def test_hardware_presets_match_aimc_presets(name):
    import dataclasses

    import aimc.presets

    exp = build(compose_config([f"experiment={name}"]))
    expected = getattr(aimc.presets, name)()
    for field in ("tile", "dac", "adc", "mapping", "drift_compensation", "training", "seed"):
        assert getattr(exp.analog, field) == getattr(expected, field), field
    assert type(exp.analog.device) is type(expected.device)
    got, want = dataclasses.asdict(exp.analog.device), dataclasses.asdict(expected.device)
    assert got.keys() == want.keys()
    for key, value in want.items():  # YAML floats may round-trip to within an ulp
        assert got[key] == pytest.approx(value), key
    assert exp.technology == name


def test_analog_config_is_a_structured_config():
    """The library's dataclasses double as Hydra structured configs: typed overrides, and
    validation when the real object is built."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    import aimc

    node = OmegaConf.structured(aimc.AnalogConfig)
    node.adc.bits, node.tile.rows, node.device = 6, 128, "rram"
    obj = OmegaConf.to_object(node)
    assert isinstance(obj, aimc.AnalogConfig) and obj.adc.bits == 6 and obj.tile.rows == 128
    assert type(obj.device).__name__ == "RRAM"
    with pytest.raises(ValidationError):
        node.adc.bits = "eight"
    node.adc.bits = -3
    with pytest.raises(ValueError, match="ADCConfig.bits"):
        OmegaConf.to_object(node)


@pytest.mark.parametrize(
    "override",
    [
        "dac.bit_serial=no",
        "dac.signed=off",
        "train.cache=yes",
        "logger.figures=0",
        "analog.drift_compensation=no",
    ],
)
def test_a_non_bool_flag_on_the_command_line_is_refused_naming_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as err:
        build(compose_config([override]))
    assert key.split(".")[-1] in str(err.value) and "bool" in str(err.value)


def test_true_and_false_on_the_command_line_are_bools():
    exp = build(compose_config(["dac.bit_serial=true", "dac.signed=false", "train.cache=false"]))
    assert exp.analog.dac.bit_serial is True and exp.analog.dac.signed is False
    assert exp.train.cache is False
