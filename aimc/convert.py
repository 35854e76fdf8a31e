"""Whole-model operations: conversion, programming, drift, calibration."""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import logging
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Optional

import torch
from torch import nn
from torch.nn.utils import parametrize

from aimc.config import AnalogConfig
from aimc.mappings import get_default_analog_module_mapping
from aimc.nn.attention import route_around_fast_path
from aimc.nn.base import AnalogLayerBase, calibrate_layers, name_seed
from aimc.nn.composite import AnalogContainer
from aimc.nn.protocol import analog_layers
from aimc.training import hold_noise_per_forward, trains_hardware_aware

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


# digital modules that read their children's weights in functional calls (never calling the
# children): converting a child alone would report analog layers that never run
_OPAQUE = (nn.MultiheadAttention,)


def _target_for(module: nn.Module, mapping: Mapping[type, type]) -> Optional[tuple[type, type]]:
    """``(mapped digital class, analog class)`` for ``module``, or ``None`` if not mapped."""
    if isinstance(module, (AnalogLayerBase, AnalogContainer)):
        return None
    for cls in type(module).__mro__:  # the most derived mapped class wins
        if cls in mapping:
            return cls, mapping[cls]
    return None


# Legacy reparametrizations (torch.nn.utils.prune, weight_norm, spectral_norm) keep the weight
# as a plain attribute recomputed by a forward pre-hook from extra parameters/buffers; these
# suffixes name those extras, which the analog layer takes over with the hook.
_REPARAM_SUFFIXES = ("_orig", "_mask", "_g", "_v", "_u")


def _reparam_hooks(module: nn.Module) -> list[tuple[str, object]]:
    """``(tensor name, hook)`` of the legacy reparametrization hooks on ``module``."""
    from torch.nn.utils.prune import BasePruningMethod
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    found = []
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, BasePruningMethod):
            found.append((hook._tensor_name, hook))
        elif isinstance(hook, (WeightNorm, SpectralNorm)):
            found.append((hook.name, hook))
    return found


def _own_tensors(module: nn.Module) -> list[str]:
    return [n for n, _ in module.named_parameters(recurse=False)] + [
        n for n, _ in module.named_buffers(recurse=False)
    ]


def _reparam_extras(module: nn.Module) -> list[str]:
    names = {t for t, _ in _reparam_hooks(module)}
    return [
        n
        for n in _own_tensors(module)
        if any(n == f"{t}{suffix}" for t in names for suffix in _REPARAM_SUFFIXES)
    ]


def _check_subclass(name: str, module: nn.Module, base: type, target: type, mapping) -> None:
    """Refuse a subclass of a mapped layer whose behaviour its analog layer would drop."""
    cls = type(module)
    if parametrize.is_parametrized(module):  # torch's injected Parametrized<cls> subclass
        cls = cls.__bases__[0]
    if cls is base or cls in mapping:
        return
    reasons = []
    if cls.forward is not base.forward:
        reasons.append(f"its own forward ({cls.__qualname__}.forward)")
    if issubclass(base, (nn.Linear, nn.modules.conv._ConvNd)):  # only weight and bias
        known = {"weight", "bias", *_reparam_extras(module)}
        extra = [n for n in _own_tensors(module) if n not in known]
        if extra:
            reasons.append(f"extra parameters/buffers {extra}")
        children = [n for n, _ in module.named_children() if n != "parametrizations"]
        if children:
            reasons.append(f"submodules {children}")
    if reasons:
        raise TypeError(
            f"convert_to_analog: {name or '<root>'} is a {cls.__qualname__}, a subclass of "
            f"nn.{base.__name__} with {' and '.join(reasons)}; {target.__name__} would drop "
            f"them. Keep it digital with exclude=[{name!r}], or, if its product with the weights "
            f"is exactly nn.{base.__name__}'s, register it: mapping={{**aimc."
            f"get_default_analog_module_mapping(), {cls.__name__}: {target.__name__}}}"
        )


_HOOK_DICTS = (
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_backward_pre_hooks",
    "_backward_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def _carry_hooks(src: nn.Module, dst: nn.Module) -> None:
    """Give ``dst`` every hook of ``src`` (forward, with kwargs, always-called, backward, full
    backward, state_dict and load_state_dict hooks), in their order."""
    from torch.nn.modules.module import _WrappedHook

    for attr in _HOOK_DICTS:
        theirs = getattr(src, attr, None)
        if not theirs:
            continue
        ours = getattr(dst, attr)
        for key, hook in theirs.items():
            if isinstance(hook, _WrappedHook) and getattr(hook, "with_module", False):
                hook = copy.copy(hook)  # a hook bound to the digital module: bind it to dst
                hook.module = weakref.ref(dst)
            ours[key] = hook
    if getattr(src, "_is_full_backward_hook", None) is not None:
        dst._is_full_backward_hook = src._is_full_backward_hook


def _share_tensors(src: nn.Module, dst: nn.Module) -> None:
    """Make ``dst`` hold ``src``'s very parameters (tied weights stay tied, an optimizer of an
    in-place conversion keeps working) and take over a legacy reparametrization (pruning
    masks, weight_norm/spectral_norm factors) with its recomputed weight."""
    extras = _reparam_extras(src)
    for tname, _ in _reparam_hooks(src):
        if tname in dst._parameters:
            del dst._parameters[tname]
        setattr(dst, tname, getattr(src, tname))  # the recomputed tensor (a plain attribute)
    for n in extras:
        if n in src._parameters:
            dst.register_parameter(n, src._parameters[n])
        else:
            dst.register_buffer(
                n, src._buffers[n], persistent=n not in src._non_persistent_buffers_set
            )
    for n in ("weight", "bias"):
        p = src._parameters.get(n)
        q = dst._parameters.get(n)
        if isinstance(p, nn.Parameter) and q is not None and p.shape == q.shape:
            if p.dtype == q.dtype and p.device == q.device:
                dst.register_parameter(n, p)
    if parametrize.is_parametrized(src):  # move torch parametrizations over, sharing them
        for tname in src.parametrizations:
            if tname in dst._parameters:
                del dst._parameters[tname]
        parametrize._inject_new_class(dst)
        dst.parametrizations = src.parametrizations
        for tname in src.parametrizations:
            parametrize._inject_property(dst, tname)


@contextlib.contextmanager
def _copyable(model: nn.Module):
    """Let ``copy.deepcopy`` copy a model with legacy weight_norm/pruning: their recomputed
    weight is a non-leaf tensor that deepcopy refuses; it is detached for the copy (the copy's
    hook recomputes it) and restored after."""
    saved = []
    for module in model.modules():
        for tname, _ in _reparam_hooks(module):
            value = module.__dict__.get(tname)
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                saved.append((module, tname, value))
                module.__dict__[tname] = value.detach()
    try:
        yield
    finally:
        for module, tname, value in saved:
            module.__dict__[tname] = value


def _weight_bearing(module: nn.Module) -> bool:
    """True for a module holding a matrix or kernel of its own (a parameter of >= 2 dims)."""
    return any(p.dim() >= 2 for p in module.parameters(recurse=False))


def _digital_reasons(
    model: nn.Module, mapping: Mapping[type, type], excluded: Mapping[str, str]
) -> dict[str, str]:
    """``{name: why}`` of every weight-bearing module of ``model`` that is not analog."""
    reasons = {}
    opaque = [n for n, m in model.named_modules() if isinstance(m, _OPAQUE)]
    for name, module in model.named_modules():
        if isinstance(module, (AnalogLayerBase, AnalogContainer)) or not _weight_bearing(module):
            continue
        parent = next((o for o in opaque if name.startswith(o + ".") or (o == "" and name)), None)
        if name in excluded:
            why = f"excluded (exclude pattern {excluded[name]!r})"
        elif parent is not None:
            why = f"its digital parent {parent or '<root>'} uses the weights in its own forward"
        elif _target_for(module, mapping) is not None:
            why = "not converted (convert_to_analog was not run on it)"
        else:
            why = f"no analog layer for {type(module).__module__}.{type(module).__qualname__}"
        reasons[name or "<root>"] = why
    return reasons


def convert_to_analog(
    model: nn.Module,
    config: Optional[AnalogConfig] = None,
    *,
    mapping: Optional[Mapping[type, type]] = None,
    layer_configs: Optional[Mapping[str, AnalogConfig]] = None,
    exclude: Sequence[str] = (),
    inplace: bool = False,
    program: bool = True,
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

    What the digital model shares stays shared: a module used in several places becomes one
    analog layer in all of them, and a parameter tied between layers (``l2.weight =
    l1.weight``, an embedding tied to the output layer) stays one parameter. Every hook of a
    converted module is carried over (forward, with kwargs, always-called, full backward,
    state_dict hooks), and so are legacy ``torch.nn.utils.prune`` masks (without
    ``prune.remove``), ``weight_norm`` and ``spectral_norm``: their hook recomputes the weight
    before each forward and the analog layer programs what it gives. Weight-bearing modules
    left digital (no analog layer for their type, or excluded) are listed with the reason by
    :func:`conversion_report` and logged.

    Args:
        model: any module. If the root itself is a mapped type it is converted and returned.
        config: the hardware (default ``AnalogConfig()``).
        mapping: digital type → analog type (default :data:`DEFAULT_ANALOG_MODULE_MAPPING`).
            A subclass of a mapped type with its own ``forward``, extra parameters or
            submodules is refused (its analog layer would drop them) unless the subclass
            itself is a key.
        layer_configs: per-layer configs by ``fnmatch`` pattern on qualified names; the first
            matching pattern wins.
        exclude: ``fnmatch`` patterns of qualified names to keep digital.
        inplace: modify ``model`` itself.
        program: program the devices now (``False``: each layer programs on its first analog
            forward; enough for :func:`aimc.estimate_cost`, which needs no programming).

    Returns:
        The converted model.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``, a config is not an ``AnalogConfig``,
            or a subclass of a mapped layer would lose its own behaviour.
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
    for name, module in model.named_modules():  # refuse before any work or copy
        found = _target_for(module, mapping)
        if found is not None and not any(fnmatch.fnmatchcase(name, p) for p in exclude):
            _check_subclass(name, module, found[0], found[1], mapping)
    # layers built inside torch.inference_mode would hold inference tensors, which cannot
    # track weight edits nor serve a later autograd forward: build them as normal tensors
    with torch.inference_mode(False):
        return _convert(model, config, mapping, layer_configs, exclude, inplace, program)


def _convert(model, config, mapping, layer_configs, exclude, inplace, program) -> nn.Module:
    if not inplace:
        with _copyable(model):
            model = copy.deepcopy(model)

    def config_for(name: str) -> AnalogConfig:
        for pattern, cfg in layer_configs.items():
            if fnmatch.fnmatchcase(name, pattern):
                return cfg
        return config

    excluded: dict[str, str] = {}
    converted: dict[int, nn.Module] = {}  # id(digital module) -> its analog layer

    def swap(name: str, module: nn.Module) -> nn.Module:
        if id(module) in converted:  # a module used in several places: one analog layer
            return converted[id(module)]
        found = _target_for(module, mapping)
        if found is None:
            return module
        pattern = next((p for p in exclude if fnmatch.fnmatchcase(name, p)), None)
        if pattern is not None:
            excluded[name] = pattern
            return module
        target = found[1]
        cfg = config_for(name)
        seed = name_seed(cfg.seed, name)
        new = target.from_digital(module, cfg, seed=seed, program=program)
        new.layer_name = name or type(new).__name__
        new.train(module.training)
        _share_tensors(module, new)
        _carry_hooks(module, new)
        converted[id(module)] = new
        log.debug(
            "convert_to_analog: %s %s -> %s",
            name or "<root>",
            type(module).__name__,
            target.__name__,
        )
        return new

    def visit(module: nn.Module, prefix: str) -> None:
        # module._modules, not named_children(): a module held under two names is visited twice
        for child_name, child in list(module._modules.items()):
            if child is None:
                continue
            full = f"{prefix}.{child_name}" if prefix else child_name
            new = swap(full, child)
            if new is not child:
                module._modules[child_name] = new
            elif not isinstance(child, _OPAQUE) and id(child) not in visited:
                visited.add(id(child))
                visit(child, full)

    visited: set[int] = set()
    root = swap("", model)
    if root is model and not isinstance(model, _OPAQUE):
        visit(model, "")
        root = route_around_fast_path(model)
    leftovers = _digital_reasons(root, mapping, excluded)
    root.__dict__["_aimc_left_digital"] = leftovers
    if trains_hardware_aware(root):  # every call within one forward: one noise draw per array
        hold_noise_per_forward(root)
    if leftovers:
        log.info(
            "convert_to_analog: %d weight-bearing module(s) stay digital: %s",
            len(leftovers),
            "; ".join(f"{n}: {why}" for n, why in leftovers.items()),
        )
    return root


_STAGE_SWITCHES = {
    "dac": ("enable_observer", "disable_observer", "load_observed", "observing"),
    "adc": ("enable_observer", "disable_observer", "load_observed", "observing"),
}


def _layers_for(helper: str, model: nn.Module, needs: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """The analog layers of ``model`` for ``helper``; a layer without ``needs`` (methods or
    stage modules) raises, naming it, rather than being skipped."""
    layers = list(analog_layers(model))
    if not layers:
        raise ValueError(f"{helper}: the model has no analog layers; call convert_to_analog first")
    for name, layer in layers:
        missing = [a for a in needs if not hasattr(layer, a)]
        missing += [
            f"{stage}.{m}"
            for stage in needs
            if stage in _STAGE_SWITCHES and hasattr(layer, stage)
            for m in _STAGE_SWITCHES[stage]
            if not hasattr(getattr(layer, stage), m)
        ]
        if missing:
            raise TypeError(
                f"{helper}: analog layer {name or '<root>'!r} ({type(layer).__name__}) has no "
                f"{', '.join(missing)}; subclass aimc.nn.AnalogLayerBase to get them"
            )
    return layers


def program(model: nn.Module, seed: Optional[int] = None) -> nn.Module:
    """Program every analog layer: a new device draw (from ``seed`` and the layer's name); t = 0.

    ``seed=None`` reprograms each layer with the seed it has.
    """
    layers = _layers_for("program", model, ("program",))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"program: seed must be an int >= 0, got {seed!r}")
    for name, layer in layers:
        layer.program(None if seed is None else name_seed(seed, name))
    return model


def drift(model: nn.Module, t: float) -> nn.Module:
    """Read every analog layer ``t`` seconds after programming from now on."""
    layers = _layers_for("drift", model, ("drift_to",))
    for _, layer in layers:
        layer.drift_to(t)
    return model


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable) -> nn.Module:
    """Set the DAC input ranges and ADC full scales of every analog layer from data.

    Two passes over ``batches`` (a re-iterable of inputs, or of ``(input, target)`` pairs):
    the first records each layer's input statistics (``DACConfig.percentile`` of ``|x|``) with
    digital layers; the second, with those DAC ranges fixed, records each tile column's
    partial sums (``ADCConfig.percentile`` of ``|I|``, ideal ADC). Each range is the largest
    per-batch percentile. Layers in ``"dynamic"``/``"max"`` range modes keep those modes.
    """
    layers = [layer for _, layer in _layers_for("calibrate", model, ("dac", "adc"))]
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
        calibrate_layers(layers, run)
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
    layers = [(n, m) for n, m in analog_layers(model)]
    for name, layer in layers:
        if not hasattr(getattr(layer, "adc", None), "enable_counter"):
            raise TypeError(
                f"track_adc_saturation: analog layer {name or '<root>'!r} "
                f"({type(layer).__name__}) has no adc stage with a saturation counter"
            )
    for _, layer in layers:
        layer.adc.enable_counter()
    rates: dict[str, float] = {}
    try:
        yield rates
    finally:
        for name, layer in layers:
            saturated, total = layer.adc.disable_counter()
            if total:
                rates[name] = saturated / total


def conversion_report(model: nn.Module) -> str:
    """A table of the analog layers (name, type, tile grid, tiles, utilization, device), then
    every weight-bearing module (one holding a matrix or kernel) left digital, with the reason.

    Examples:
        >>> import torch, aimc
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Bilinear(4, 4, 2))
        >>> print(aimc.conversion_report(aimc.convert_to_analog(net)).splitlines()[-1])
        1  Bilinear  digital: no analog layer for torch.nn.modules.linear.Bilinear
    """
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
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    recorded = model.__dict__.get("_aimc_left_digital", {})
    reasons = _digital_reasons(model, get_default_analog_module_mapping(), {})
    if reasons:
        modules = dict(model.named_modules())
        digital = [
            (n, type(modules["" if n == "<root>" else n]).__name__, recorded.get(n, why))
            for n, why in reasons.items()
        ]
        lines.append(f"left digital ({len(digital)} weight-bearing module(s)):")
        w0 = max(len(r[0]) for r in digital)
        w1 = max(len(r[1]) for r in digital)
        lines += [f"{n.ljust(w0)}  {t.ljust(w1)}  digital: {why}" for n, t, why in digital]
    return "\n".join(lines)
