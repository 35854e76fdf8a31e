"""From a composed Hydra config to typed objects, checked before any work starts.

:func:`build` is the only place where a ``DictConfig`` meets the library: each group becomes a
real object (``device`` -> a ``device_models.DeviceModel``, ``tile``/``dac``/``adc``/``mapping``
-> the ``aimc`` config dataclasses, combined into an ``aimc.AnalogConfig``; ``dataset``, ``train``,
``eval``, ``logger``, ``paths`` -> the dataclasses below). Every validation error is re-raised as
a :class:`ConfigError` whose message starts with the offending key (``adc.bits=-1: ...``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

import aimc
from experiments.datasets import DatasetSpec
from experiments.errors import ConfigError

__all__ = [
    "ConfigError",
    "TrainSettings",
    "EvalSettings",
    "LoggerSettings",
    "PathSettings",
    "Experiment",
    "build",
    "build_from_hydra",
    "write_hydra_record",
    "digital_cache_key",
    "model_code_hash",
]

_OPTIMIZERS = ("adam", "sgd")
# fields of `train` that change the digital model (the cache key); the rest only fine-tune.
_DIGITAL_TRAIN_FIELDS = ("epochs", "lr", "batch_size", "optimizer", "momentum", "weight_decay")
_CACHE_VERSION = 2


def run_id() -> str:
    """A token unique to this launch (process id and 16 random bits), for run folder names: two
    runs started in the same second get different folders. Registered as the OmegaConf resolver
    ``${run_id:}`` (cached, so every job of one launch sees the same value)."""
    return f"{os.getpid()}-{secrets.token_hex(2)}"


if not OmegaConf.has_resolver("run_id"):
    OmegaConf.register_new_resolver("run_id", run_id, use_cache=True)


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"{key}: {message}")


def _check_bools(settings: Any, key: str) -> None:
    """Refuse a non-bool in every ``bool`` field of the dataclass ``settings`` (``"no"`` is
    truthy in Python: accepting it would switch the feature on)."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.type in ("bool", bool) and not isinstance(value, bool):
            _fail(f"{key}.{f.name}", f"must be a bool (true or false), got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainSettings:
    """``conf/train``: digital training, checkpoint loading and hardware-aware fine-tuning."""

    epochs: int = 30
    lr: float = 0.002
    batch_size: int = 64
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    checkpoint: Optional[str] = None
    cache: bool = True
    hardware_aware: bool = False
    finetune_epochs: int = 20
    finetune_lr: float = 0.002
    weight_noise: str = "device"
    weight_noise_std: float = 0.0
    noise_t_s: float = 31536000.0
    device_noise_scale: float = 2.0
    clip_sigma: Optional[float] = 2.0
    learn_input_range: bool = False

    def __post_init__(self) -> None:
        for key in ("epochs", "finetune_epochs"):
            value = getattr(self, key)
            if not _is_int(value) or value < 0:
                _fail(f"train.{key}", f"must be an int >= 0, got {value!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            _fail("train.batch_size", f"must be an int >= 1, got {self.batch_size!r}")
        for key in ("lr", "finetune_lr"):
            value = getattr(self, key)
            if not _is_number(value) or value <= 0:
                _fail(f"train.{key}", f"must be a number > 0, got {value!r}")
        for key in ("momentum", "weight_decay"):
            value = getattr(self, key)
            if not _is_number(value) or value < 0:
                _fail(f"train.{key}", f"must be a number >= 0, got {value!r}")
        if self.optimizer not in _OPTIMIZERS:
            _fail("train.optimizer", f"must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        _check_bools(self, "train")
        try:
            self.training_config()
        except (TypeError, ValueError) as err:  # name the YAML key, not the library field
            msg = str(err)
            field_name = msg.split("TrainingConfig.", 1)[-1].split(" ", 1)[0]
            _fail(f"train.{field_name}", msg)
        if self.checkpoint is not None and not os.path.isfile(str(self.checkpoint)):
            _fail("train.checkpoint", f"no such file: {os.path.abspath(str(self.checkpoint))}")

    def training_config(self) -> aimc.TrainingConfig:
        """The ``aimc.TrainingConfig`` of hardware-aware fine-tuning."""
        return aimc.TrainingConfig(
            hardware_aware=True,
            weight_noise=self.weight_noise,
            weight_noise_std=self.weight_noise_std,
            noise_t_s=self.noise_t_s,
            device_noise_scale=self.device_noise_scale,
            clip_sigma=self.clip_sigma,
            learn_input_range=self.learn_input_range,
        )


@dataclass
class EvalSettings:
    """``conf/eval``: drift times (s), device draws and evaluation batches."""

    times: list[float] = field(default_factory=lambda: [1.0, 3600.0, 86400.0, 31536000.0])
    repeats: int = 5
    batch_size: int = 256
    calibration_batches: int = 4
    max_samples: Optional[int] = None
    seed: int = 0
    objective_time: Optional[float] = None
    """Drift time (s) of the accuracy a search optimizes (``None``: the last of ``times``);
    added to ``times`` when missing."""
    only_objective_time: bool = False
    """Evaluate at ``objective_time`` only (fast search trials)."""
    cost_only: bool = False
    """Only the cost report, from the model's seeded weights and a stand-in input of the
    dataset's shape: no dataset files, no training, no accuracy."""
    replication: Any = "none"
    """Weight replication of the cost estimate: ``none``, ``balanced`` or an int cap."""

    def __post_init__(self) -> None:
        times = list(self.times) if isinstance(self.times, (list, tuple)) else None
        if not times or not all(_is_number(t) and t >= 0 for t in times):
            _fail("eval.times", f"must be a non-empty list of seconds >= 0, got {self.times!r}")
        self.times = [float(t) for t in times]
        if self.objective_time is not None:
            if not _is_number(self.objective_time) or self.objective_time < 0:
                _fail(
                    "eval.objective_time",
                    f"must be seconds >= 0 or null, got {self.objective_time!r}",
                )
            self.objective_time = float(self.objective_time)
            if self.objective_time not in self.times:
                self.times = sorted([*self.times, self.objective_time])
        else:
            self.objective_time = self.times[-1]
        if not isinstance(self.only_objective_time, bool):
            _fail(
                "eval.only_objective_time",
                f"must be true or false, got {self.only_objective_time!r}",
            )
        if self.only_objective_time:
            self.times = [self.objective_time]
        if not isinstance(self.cost_only, bool):
            _fail("eval.cost_only", f"must be true or false, got {self.cost_only!r}")
        rep = self.replication
        if rep not in ("none", "balanced") and (not _is_int(rep) or rep < 1):
            _fail("eval.replication", f"must be none, balanced or an int >= 1, got {rep!r}")
        for key in ("repeats", "batch_size", "calibration_batches"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                _fail(f"eval.{key}", f"must be an int >= 1, got {value!r}")
        if self.max_samples is not None and (not _is_int(self.max_samples) or self.max_samples < 1):
            _fail("eval.max_samples", f"must be an int >= 1 or null, got {self.max_samples!r}")
        if not _is_int(self.seed) or self.seed < 0:
            _fail("eval.seed", f"must be an int >= 0, got {self.seed!r}")


@dataclass
class LoggerSettings:
    """``conf/logger``: what goes to TensorBoard."""

    tensorboard: bool = True
    histograms: bool = True
    figures: bool = True
    flush_secs: int = 30

    def __post_init__(self) -> None:
        _check_bools(self, "logger")
        if not _is_int(self.flush_secs) or self.flush_secs < 1:
            _fail("logger.flush_secs", f"must be an int >= 1, got {self.flush_secs!r}")


@dataclass
class PathSettings:
    """``conf/paths``: folders (made absolute against the launch folder)."""

    root_dir: str = "."
    data_dir: str = "data"
    log_dir: str = "outputs"
    cache_dir: str = "outputs/cache"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, os.path.abspath(str(getattr(self, f.name))))


@dataclass
class Experiment:
    """Everything one run needs, as typed objects (no ``DictConfig``)."""

    dataset: DatasetSpec
    model_factory: Callable[..., Any]
    model_kwargs: dict[str, Any]
    analog: aimc.AnalogConfig
    technology: Any
    train: TrainSettings
    eval: EvalSettings
    logger: LoggerSettings
    paths: PathSettings
    seed: int = 0
    threads: Optional[int] = None
    layer_configs: dict[str, aimc.AnalogConfig] = field(default_factory=dict)
    """Per-layer hardware (``analog.layers``), by ``fnmatch`` pattern of qualified names."""
    digital_layers: list[str] = field(default_factory=list)
    """Layers kept digital (``analog.digital`` and ``analog.layers.<name>.digital``)."""
    config: dict[str, Any] = field(default_factory=dict)
    """The resolved config as plain containers (written to results.json)."""
    choices: dict[str, str] = field(default_factory=dict)
    """The option picked in each config group (``{"device": "pcm", ...}``)."""
    overrides: list[str] = field(default_factory=list)
    """The command-line overrides of this run (``["adc.bits=4"]``)."""

    @property
    def cache_key(self) -> str:
        """Hash of what determines the trained digital model: the config fields and the source
        code of the model (see :func:`model_code_hash`), and the number of torch CPU threads the
        training runs with (``threads``, or torch's default when null)."""
        threads = self.threads if self.threads is not None else torch.get_num_threads()
        return digital_cache_key(
            self.config, model_code=model_code_hash(self.model_factory), threads=threads
        )


def model_code_hash(factory: Any) -> str:
    """A hash of the source code that defines the model ``factory`` builds.

    It covers the source file of ``factory``'s module and, for a class, of every module in its
    method resolution order outside torch (a base class or mixin in another file). Editing the
    model class, or any code next to it, changes the hash, so a stale cached checkpoint is never
    reused for a changed model. Code without a source file (built at run time) hashes its
    qualified name only; a cached checkpoint whose keys or shapes do not fit is retrained.
    """
    objects = list(inspect.getmro(factory)) if inspect.isclass(factory) else [factory]
    files: list[str] = []
    for obj in objects:
        module = getattr(obj, "__module__", "") or ""
        if module == "builtins" or module.split(".")[0] == "torch":
            continue
        try:
            path = inspect.getsourcefile(obj)
        except TypeError:
            path = None
        if path and path not in files:
            files.append(path)
    digest = hashlib.sha256()
    digest.update(f"{getattr(factory, '__module__', '')}.{factory.__qualname__}".encode())
    for path in files:
        try:
            with open(path, "rb") as f:
                digest.update(f.read())
        except OSError:
            digest.update(path.encode())
    return digest.hexdigest()[:16]


def digital_cache_key(
    config: dict[str, Any], model_code: Optional[str] = None, threads: Optional[int] = None
) -> str:
    """A short hash of the dataset, model, digital training fields and seed of ``config``, of
    ``model_code`` (:func:`model_code_hash` of the model factory) and of ``threads``, the torch CPU
    threads the model trains with: the order of a parallel reduction depends on the thread count,
    so the same seed trains a (slightly) different model on 1 and on 2 threads, and a cached
    checkpoint must be the one this run would train.

    Runs that differ only in hardware fields (device, tile, DAC, ADC, mapping, technology, eval,
    hardware-aware fine-tuning) share the key, hence the cached digital checkpoint.
    """
    dataset = {k: v for k, v in config["dataset"].items() if k not in ("root", "download")}
    train = {k: config["train"].get(k) for k in _DIGITAL_TRAIN_FIELDS}
    payload = {
        "version": _CACHE_VERSION,
        "dataset": dataset,
        "model": config["model"],
        "model_code": model_code,
        "train": train,
        "seed": config.get("seed"),
        "threads": threads,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- building ----------------------------------------------------------------------------------
_FIELD_IN_MESSAGE = re.compile(r"\b[A-Za-z_]\w*\.(\w+)\b|keyword argument '(\w+)'")


def _explain(key: str, node: Any, err: BaseException) -> str:
    """``<key>.<field>=<value>: <error>`` when the error names a field of ``node``."""
    text = str(err)
    fields = set(node.keys()) if isinstance(node, DictConfig) else set()
    for match in _FIELD_IN_MESSAGE.finditer(text):
        name = match.group(1) or match.group(2)
        if name in fields:
            value = OmegaConf.to_container(node, resolve=True).get(name)
            return f"{key}.{name}={value!r}: {text}"
        if match.group(2):
            return f"{key}.{name}: unknown field ({text})"
    return f"{key}: {text}"


def _instantiate(cfg: DictConfig, key: str) -> Any:
    node = cfg[key]
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ if err.__cause__ is not None else err
        if "Error locating target" in str(err) or cause is err:
            raise ConfigError(f"{key}._target_={node.get('_target_')!r}: {err}") from None
        raise ConfigError(_explain(key, node, cause)) from None


def _settings(cls: type, cfg: DictConfig, key: str) -> Any:
    values = OmegaConf.to_container(cfg[key], resolve=True)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown field; {key} has {sorted(names)}")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(_explain(key, cfg[key], err)) from None


def _model(cfg: DictConfig) -> tuple[Callable[..., Any], dict[str, Any]]:
    values = OmegaConf.to_container(cfg.model, resolve=True)
    target = values.pop("_target_", None)
    if not target:
        raise ConfigError("model._target_: missing; name a class or function building the model")
    try:
        factory = get_object(target)
    except Exception as err:
        raise ConfigError(f"model._target_={target!r}: cannot import it ({err})") from None
    if not callable(factory):
        raise ConfigError(f"model._target_={target!r}: is not callable")
    return factory, values


def _analog(cfg: DictConfig) -> aimc.AnalogConfig:
    parts = {key: _instantiate(cfg, key) for key in ("device", "tile", "dac", "adc", "mapping")}
    analog = OmegaConf.to_container(cfg.get("analog", {}), resolve=True)
    analog.pop("digital", None)  # per-layer choices: see _layer_choices
    analog.pop("layers", None)
    try:
        return aimc.AnalogConfig(
            **parts,
            training=aimc.TrainingConfig(hardware_aware=False),
            seed=int(cfg.seed),
            **analog,
        )
    except TypeError as err:
        raise ConfigError(f"analog: {err}") from None
    except ValueError as err:  # cross-field checks (tile.cols vs mapping), named by the class
        text = str(err)
        for key, cls in (("tile", "TileConfig"), ("mapping", "MappingConfig")):
            if text.startswith(cls):
                raise ConfigError(_explain(key, cfg[key], err)) from None
        raise ConfigError(f"analog: {text}") from None


# per-layer fields: the config groups a layer may change, each the AnalogConfig field it replaces
_LAYER_GROUPS = {"device": None, "tile": aimc.TileConfig, "dac": aimc.DACConfig}
_LAYER_GROUPS.update({"adc": aimc.ADCConfig, "mapping": aimc.MappingConfig})


def _layer_nodes(node: Any, prefix: str, key: str) -> dict[str, dict[str, Any]]:
    """``{"features.0": {"adc": {...}}}`` from the nested ``analog.layers`` node: a layer name
    with dots (``features.0``) arrives nested, so descend until the keys are fields."""
    if not isinstance(node, dict):
        raise ConfigError(
            f"{key}={node!r}: expected a mapping of layer fields ({sorted(_LAYER_GROUPS)}, digital)"
        )
    fields = {k: v for k, v in node.items() if k in _LAYER_GROUPS or k == "digital"}
    out = {prefix: fields} if fields and prefix else {}
    if fields and not prefix:
        raise ConfigError(
            f"{key}.{next(iter(fields))}: name the layer first ({key}.<layer>.<field>)"
        )
    for name, child in node.items():
        if name not in fields:
            out.update(
                _layer_nodes(child, f"{prefix}.{name}" if prefix else str(name), f"{key}.{name}")
            )
    return out


def _layer_choices(
    cfg: DictConfig, base: aimc.AnalogConfig
) -> tuple[dict[str, aimc.AnalogConfig], list[str]]:
    """Per-layer configs and digital layers from ``analog.layers`` and ``analog.digital``.

    ``analog.digital=[fc2]`` keeps layers (``fnmatch`` patterns of qualified names) digital;
    ``++analog.layers.fc1.adc.bits=6`` (any field of tile/dac/adc/mapping, ``device`` by name,
    or ``digital: true``) gives one layer its own hardware on top of the global groups.
    """
    node = cfg.get("analog", {})
    digital = OmegaConf.to_container(node, resolve=True).get("digital") or []
    if isinstance(digital, str):
        digital = [digital]
    if not isinstance(digital, list) or not all(isinstance(d, str) for d in digital):
        raise ConfigError(f"analog.digital={digital!r}: must be a list of layer names")
    layers = OmegaConf.to_container(node, resolve=True).get("layers") or {}
    configs: dict[str, aimc.AnalogConfig] = {}
    exclude = list(digital)
    for name, fields in _layer_nodes(layers, "", "analog.layers").items():
        key = f"analog.layers.{name}"
        flag = fields.pop("digital", False)
        if not isinstance(flag, bool):
            raise ConfigError(f"{key}.digital={flag!r}: must be true or false")
        if flag and name not in exclude:
            exclude.append(name)
        changes: dict[str, Any] = {}
        for group, values in fields.items():
            if group == "device":
                changes["device"] = values
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"{key}.{group}={values!r}: expected fields of {group}")
            current = getattr(base, group)
            known = {f.name for f in dataclasses.fields(current)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ConfigError(
                    f"{key}.{group}.{unknown[0]}: unknown field; {group} has {sorted(known)}"
                )
            try:
                changes[group] = dataclasses.replace(current, **values)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{key}.{group}: {err}") from None
        if changes:
            try:
                configs[name] = dataclasses.replace(base, **changes)
            except (TypeError, ValueError, KeyError) as err:
                raise ConfigError(f"{key}: {err}") from None
    return configs, exclude


def _technology(cfg: DictConfig) -> Any:
    """The technology name, or a ``Technology`` when the node overrides some of its fields."""
    node = cfg.technology
    if "_target_" in node:
        return _instantiate(cfg, "technology")
    values = OmegaConf.to_container(node, resolve=True)
    name = values.pop("name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"technology.name: must be a technology name, got {name!r}")
    try:
        from aimc.cost import Technology, get_technology, technology_names
    except ImportError:  # no cost model: the name is checked when the cost is estimated
        return name
    known = technology_names()
    if name not in known:
        raise ConfigError(f"technology.name={name!r}: unknown technology; known: {sorted(known)}")
    if not values:
        return name
    unknown = sorted(set(values) - set(Technology.field_names()))
    if unknown:
        raise ConfigError(f"technology.{unknown[0]}: unknown field of aimc.cost.Technology")
    try:
        return get_technology(name, **values)
    except (TypeError, ValueError) as err:
        raise ConfigError(_explain("technology", node, err)) from None


def build(
    cfg: DictConfig,
    *,
    choices: Optional[dict[str, str]] = None,
    overrides: Optional[list[str]] = None,
) -> Experiment:
    """Check ``cfg`` and build every object of the run; nothing is loaded or trained.

    Raises:
        ConfigError: naming the first bad key.
    """
    for key in ("seed",):
        if not _is_int(cfg.get(key)) or cfg.get(key) < 0:
            raise ConfigError(f"{key}: must be an int >= 0, got {cfg.get(key)!r}")
    threads = cfg.get("threads")
    if threads is not None and (not _is_int(threads) or threads < 1):
        raise ConfigError(f"threads: must be an int >= 1 or null, got {threads!r}")
    container = {  # resolved per top-level key: the hydra node (if any) is never resolved
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in cfg
        if k != "hydra"
    }
    factory, model_kwargs = _model(cfg)
    analog = _analog(cfg)
    layer_configs, digital_layers = _layer_choices(cfg, analog)
    exp = Experiment(
        dataset=_settings(DatasetSpec, cfg, "dataset"),
        model_factory=factory,
        model_kwargs=model_kwargs,
        analog=analog,
        layer_configs=layer_configs,
        digital_layers=digital_layers,
        technology=_technology(cfg),
        train=_settings(TrainSettings, cfg, "train"),
        eval=_settings(EvalSettings, cfg, "eval"),
        logger=_settings(LoggerSettings, cfg, "logger"),
        paths=_settings(PathSettings, cfg, "paths"),
        seed=int(cfg.seed),
        threads=threads,
        config=container,
        choices=dict(choices or {}),
        overrides=list(overrides or []),
    )
    exp.dataset.root = os.path.abspath(exp.dataset.root)
    return exp


# --- Hydra entry points --------------------------------------------------------------------
def build_from_hydra(cfg: DictConfig):
    """The typed experiment of a Hydra-composed ``cfg`` with the run's choices and overrides."""
    hc = HydraConfig.get()
    choices = {
        k: v
        for k, v in OmegaConf.to_container(hc.runtime.choices).items()
        if not k.startswith("hydra") and v is not None
    }
    return build(cfg, choices=choices, overrides=list(hc.overrides.task))


def write_hydra_record(cfg: DictConfig, output_dir: str) -> None:
    """Write what Hydra's ``output_subdir`` would hold (``.hydra/config.yaml``, ``hydra.yaml``,
    ``overrides.yaml``) into ``output_dir``. Our Hydra config turns Hydra's own copy off
    (``hydra.output_subdir: null``) because Hydra writes it before the job starts, over the
    record of a finished run whose folder the job is then refused; this writes it once the
    folder is the job's."""
    hc = HydraConfig.get()
    folder = os.path.join(output_dir, ".hydra")
    os.makedirs(folder, exist_ok=True)
    for name, node in (
        ("config.yaml", cfg),
        ("hydra.yaml", OmegaConf.create({"hydra": OmegaConf.to_container(hc)})),
        ("overrides.yaml", hc.overrides.task),
    ):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            fh.write(OmegaConf.to_yaml(node))
