"""Whole-model operations: conversion, programming, drift, calibration."""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Optional

import torch
from torch import nn

from aimc.config import AnalogConfig
from aimc.mappings import get_default_analog_module_mapping
from aimc.nn.attention import route_around_fast_path
from aimc.nn.base import AnalogLayerBase, name_seed
from aimc.nn.composite import AnalogContainer

__all__ = [
    "convert_to_analog",
    "analog_layers",
    "program",
    "drift",
    "calibrate",
    "conversion_report",
    "track_adc_saturation",
]

log = logging.getLogger(__name__)


def analog_layers(model: nn.Module) -> Iterator[tuple[str, AnalogLayerBase]]:
    """``(qualified name, layer)`` of every analog layer of ``model``, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, AnalogLayerBase):
            yield name, module


# digital modules that read their children's weights in functional calls (never calling the
# children): converting a child alone would report analog layers that never run
_OPAQUE = (nn.MultiheadAttention,)


def _target_for(module: nn.Module, mapping: Mapping[type, type]) -> Optional[type]:
    if isinstance(module, (AnalogLayerBase, AnalogContainer)):
        return None
    for cls in type(module).__mro__:  # the most derived mapped class wins
        if cls in mapping:
            return mapping[cls]
    return None


def convert_to_analog(
    model: nn.Module,
    config: Optional[AnalogConfig] = None,
    *,
    mapping: Optional[Mapping[type, type]] = None,
    layer_configs: Optional[Mapping[str, AnalogConfig]] = None,
    exclude: Sequence[str] = (),
    inplace: bool = False,
) -> nn.Module:
    """Replace every module of a mapped type (and subclasses) by its analog layer.

    The default mapping converts ``nn.Linear``, the convolutions, ``nn.MultiheadAttention``
    and the recurrent layers and cells (:data:`DEFAULT_ANALOG_MODULE_MAPPING`). The model is
    deep-copied unless ``inplace``; module names are kept, so a digital ``state_dict`` loads
    into the analog model. Each analog layer is programmed with a seed derived from
    ``config.seed`` and its qualified name. A digital ``nn.MultiheadAttention`` (excluded or
    unmapped) keeps its ``out_proj`` digital too, since torch never calls it as a module, and
    transformer encoders holding analog layers are kept off torch's fused inference path
    (:func:`aimc.nn.route_around_fast_path`).

    Args:
        model: any module. If the root itself is a mapped type it is converted and returned.
        config: the hardware (default ``AnalogConfig()``).
        mapping: digital type → analog type (default :data:`DEFAULT_ANALOG_MODULE_MAPPING`).
        layer_configs: per-layer configs by ``fnmatch`` pattern on qualified names; the first
            matching pattern wins.
        exclude: ``fnmatch`` patterns of qualified names to keep digital.
        inplace: modify ``model`` itself.

    Returns:
        The converted model.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module`` or a config is not an ``AnalogConfig``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert_to_analog expects an nn.Module, got {type(model).__name__}")
    config = AnalogConfig() if config is None else config
    if not isinstance(config, AnalogConfig):
        raise TypeError(f"config must be an aimc.AnalogConfig, got {type(config).__name__}")
    layer_configs = dict(layer_configs or {})
    for pattern, cfg in layer_configs.items():
        if not isinstance(cfg, AnalogConfig):
            raise TypeError(f"layer_configs[{pattern!r}] must be an AnalogConfig, got {cfg!r}")
    if isinstance(exclude, str):
        exclude = (exclude,)
    mapping = get_default_analog_module_mapping() if mapping is None else dict(mapping)
    if not inplace:
        model = copy.deepcopy(model)

    def config_for(name: str) -> AnalogConfig:
        for pattern, cfg in layer_configs.items():
            if fnmatch.fnmatchcase(name, pattern):
                return cfg
        return config

    def swap(name: str, module: nn.Module) -> nn.Module:
        target = _target_for(module, mapping)
        if target is None or any(fnmatch.fnmatchcase(name, p) for p in exclude):
            return module
        cfg = config_for(name)
        new = target.from_digital(module, cfg, seed=name_seed(cfg.seed, name))
        new.layer_name = name or type(new).__name__
        new.train(module.training)
        for hooks in ("_forward_pre_hooks", "_forward_hooks", "_backward_hooks"):
            getattr(new, hooks).update(getattr(module, hooks))
        log.debug(
            "convert_to_analog: %s %s -> %s",
            name or "<root>",
            type(module).__name__,
            target.__name__,
        )
        return new

    def visit(module: nn.Module, prefix: str) -> None:
        for child_name, child in list(module.named_children()):
            full = f"{prefix}.{child_name}" if prefix else child_name
            new = swap(full, child)
            if new is not child:
                setattr(module, child_name, new)
            elif not isinstance(child, _OPAQUE):
                visit(child, full)

    root = swap("", model)
    if root is not model:
        return root
    if not isinstance(model, _OPAQUE):
        visit(model, "")
    return route_around_fast_path(model)


def program(model: nn.Module, seed: Optional[int] = None) -> nn.Module:
    """Program every analog layer: a new device draw (from ``seed`` and the layer's name); t = 0.

    ``seed=None`` reprograms each layer with the seed it has.
    """
    layers = list(analog_layers(model))
    if not layers:
        raise ValueError("program: the model has no analog layers; call convert_to_analog first")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"program: seed must be an int >= 0, got {seed!r}")
    for name, layer in layers:
        layer.program(None if seed is None else name_seed(seed, name))
    return model


def drift(model: nn.Module, t: float) -> nn.Module:
    """Read every analog layer ``t`` seconds after programming from now on."""
    layers = list(analog_layers(model))
    if not layers:
        raise ValueError("drift: the model has no analog layers; call convert_to_analog first")
    for _, layer in layers:
        layer.drift_to(t)
    return model


@contextlib.contextmanager
def _calibrating(layers: Sequence[AnalogLayerBase], mode: str):
    states = [(layer, layer.training) for layer in layers]
    try:
        for layer in layers:
            layer._calib = mode
            layer._calib_stats = {}
            layer.eval()
        yield
    finally:
        for layer, training in states:
            layer._calib = None
            layer.train(training)


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable) -> nn.Module:
    """Set the DAC input ranges and ADC full scales of every analog layer from data.

    Two passes over ``batches`` (a re-iterable of inputs, or of ``(input, target)`` pairs):
    the first records each layer's input statistics (``DACConfig.percentile`` of ``|x|``) with
    digital layers; the second, with those DAC ranges fixed, records each tile column's
    partial sums (``ADCConfig.percentile`` of ``|I|``, ideal ADC). Each range is the largest
    per-batch percentile. Layers in ``"dynamic"``/``"max"`` range modes keep those modes.
    """
    layers = [layer for _, layer in analog_layers(model)]
    if not layers:
        raise ValueError("calibrate: the model has no analog layers")
    batches = list(batches)
    if not batches:
        raise ValueError("calibrate: batches is empty; pass at least one input batch")
    was_training = model.training
    model.eval()

    def run() -> None:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x)

    try:
        with _calibrating(layers, "dac"):
            run()
            for layer in layers:
                if "dac" in layer._calib_stats:
                    layer.dac_range.fill_(max(layer._calib_stats["dac"], 1e-12))
        with _calibrating(layers, "adc"):
            run()
            for layer in layers:
                vals = [layer._calib_stats.get(f"adc{s}") for s in range(layer.geometry.slices)]
                if all(v is not None for v in vals):
                    layer.adc_range.copy_(torch.tensor([max(v, 1e-12) for v in vals]))
                layer._cache.clear()
    finally:
        model.train(was_training)
    return model


@contextlib.contextmanager
def track_adc_saturation(model: nn.Module) -> Iterator[dict[str, float]]:
    """Count ADC reads that saturate in every analog layer while the block runs.

    Yields a dict that, when the block ends, maps each analog layer's name to the fraction of
    its ADC conversions (eval forwards, quantizing ADCs) whose value lay outside the full scale.
    Counting costs one reduction pass per tile read.

    Examples:
        >>> import torch, aimc
        >>> m = aimc.convert_to_analog(torch.nn.Linear(8, 2), aimc.AnalogConfig(device="ideal"))
        >>> with aimc.track_adc_saturation(m) as rates:
        ...     _ = m.eval()(torch.randn(4, 8))
        >>> 0.0 <= rates[""] <= 1.0
        True
    """
    layers = list(analog_layers(model))
    for _, layer in layers:
        layer._saturation = [0, 0]
    rates: dict[str, float] = {}
    try:
        yield rates
    finally:
        for name, layer in layers:
            saturated, total = layer._saturation
            layer._saturation = None
            if total:
                rates[name] = saturated / total


def conversion_report(model: nn.Module) -> str:
    """A table of the analog layers: name, type, tile grid, tiles, utilization, device."""
    rows = [("layer", "type", "grid", "tiles", "util", "device")]
    for name, layer in analog_layers(model):
        g = layer.geometry
        rows.append(
            (
                name or "<root>",
                type(layer).__name__,
                g.grid,
                str(g.n_tiles),
                f"{g.utilization:.1%}",
                layer.config.device.describe(),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)
