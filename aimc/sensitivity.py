"""Which layers matter: each layer's accuracy drop when it alone runs on analog hardware.

:func:`sensitivity` converts one layer at a time (the others stay digital), programs it over a
few device draws, reads it ``t_s`` seconds later and measures the accuracy; then again with
that layer's ADC ``adc_bits_drop`` bits coarser. Beside each drop it puts the layer's share of
the all-analog model's energy and area per inference (:func:`aimc.estimate_cost`), so a
designer sees where precision is needed and where it is paid for. The ranking (largest drop
first) seeds a search: keep the most sensitive layers digital, or give them more ADC bits.

Example::

    report = aimc.sensitivity(model, [(x, y)], aimc.AnalogConfig(), technology="hermes")
    print(report.table())
    report.plot().savefig("sensitivity.png")
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
from torch import nn

from aimc.config import AnalogConfig
from aimc.convert import calibrate, convert_to_analog, drift, program
from aimc.mappings import get_default_analog_module_mapping

__all__ = ["LayerSensitivity", "SensitivityReport", "sensitivity"]


@dataclass
class LayerSensitivity:
    """One layer's row of a :class:`SensitivityReport` (accuracies as fractions)."""

    name: str
    module: str
    accuracy: float
    accuracy_std: float
    drop: float
    """digital accuracy minus the mean accuracy with only this layer analog"""
    accuracy_low_bits: Optional[float] = None
    accuracy_low_bits_std: Optional[float] = None
    drop_low_bits: Optional[float] = None
    """the drop with this layer's ADC ``adc_bits_drop`` bits coarser (``None``: ideal ADC)"""
    adc_bits: Optional[int] = None
    energy_j: Optional[float] = None
    energy_share: Optional[float] = None
    area_mm2: Optional[float] = None
    area_share: Optional[float] = None


@dataclass
class SensitivityReport:
    """Per-layer sensitivity, ranked by accuracy drop (largest first)."""

    digital_accuracy: float
    t_s: float
    repeats: int
    adc_bits_drop: int
    layers: list[LayerSensitivity] = field(default_factory=list)
    all_analog_accuracy: Optional[float] = None
    all_analog_accuracy_std: Optional[float] = None

    @property
    def ranking(self) -> list[str]:
        """Layer names, most sensitive first."""
        return [layer.name for layer in self.layers]

    def most_sensitive(self, k: int = 1) -> list[str]:
        """The ``k`` most sensitive layers (e.g. ``analog.digital=[...]`` for a search)."""
        return self.ranking[:k]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"ranking": self.ranking}

    def table(self) -> str:
        """A fixed-width table, most sensitive layer first."""
        head = (
            "rank",
            "layer",
            "module",
            "acc (only it analog)",
            "drop",
            f"drop ADC-{self.adc_bits_drop}b",
            "energy",
            "area",
        )

        def pct(value: Optional[float], std: Optional[float] = None) -> str:
            if value is None:
                return "-"
            text = f"{100 * value:.2f}%"
            return text + (f" ± {100 * std:.2f}" if std is not None else "")

        def pp(value: Optional[float]) -> str:
            return "-" if value is None else f"{100 * value:+.2f} pp"

        rows = [head]
        for rank, layer in enumerate(self.layers, start=1):
            rows.append(
                (
                    str(rank),
                    layer.name,
                    layer.module,
                    pct(layer.accuracy, layer.accuracy_std),
                    pp(layer.drop),
                    pp(layer.drop_low_bits),
                    pct(layer.energy_share),
                    pct(layer.area_share),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        summary = f"digital {100 * self.digital_accuracy:.2f}%"
        if self.all_analog_accuracy is not None:
            summary += (
                f", every layer analog {100 * self.all_analog_accuracy:.2f}% "
                f"± {100 * (self.all_analog_accuracy_std or 0):.2f}"
            )
        summary += f"; t = {self.t_s:g} s, {self.repeats} device draws; energy/area: share of "
        summary += "the all-analog model"
        return "\n".join([*lines, summary])

    def plot(self, title: str = ""):
        """Accuracy drop per layer (bars, ± std over draws; hatched: ADC bits coarser) beside
        each layer's energy and area share; a matplotlib ``Figure``."""
        from matplotlib.figure import Figure

        names = self.ranking
        fig = Figure(figsize=(10.0, 1.8 + 0.45 * max(len(names), 1)), dpi=110, layout="constrained")
        ax_drop, ax_cost = fig.subplots(1, 2, sharey=True)
        y = list(range(len(names)))
        h = 0.38
        drop = [100 * layer.drop for layer in self.layers]
        err = [100 * layer.accuracy_std for layer in self.layers]
        ax_drop.barh([v - h / 2 for v in y], drop, h, xerr=err, capsize=3, label="only it analog")
        low = [100 * (layer.drop_low_bits or 0.0) for layer in self.layers]
        low_err = [100 * (layer.accuracy_low_bits_std or 0.0) for layer in self.layers]
        if any(layer.drop_low_bits is not None for layer in self.layers):
            ax_drop.barh(
                [v + h / 2 for v in y],
                low,
                h,
                xerr=low_err,
                capsize=3,
                hatch="//",
                fill=False,
                label=f"and its ADC {self.adc_bits_drop} bits coarser",
            )
        ax_drop.axvline(0, color="black", linewidth=0.6)
        ax_drop.set_yticks(y, names)
        ax_drop.invert_yaxis()
        ax_drop.set_xlabel("accuracy drop from digital (percentage points)")
        ax_drop.legend(fontsize=8, loc="lower right")
        ax_drop.grid(True, axis="x", alpha=0.3)
        energy = [100 * (layer.energy_share or 0.0) for layer in self.layers]
        area = [100 * (layer.area_share or 0.0) for layer in self.layers]
        ax_cost.barh([v - h / 2 for v in y], energy, h, label="energy")
        ax_cost.barh([v + h / 2 for v in y], area, h, label="area")
        ax_cost.set_xlabel("share of the all-analog model (%)")
        ax_cost.legend(fontsize=8, loc="lower right")
        ax_cost.grid(True, axis="x", alpha=0.3)
        fig.suptitle(title or f"layer sensitivity at t = {self.t_s:g} s (most sensitive on top)")
        return fig


Batches = Union[Iterable, tuple]


def _batches(data: Batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return [(data[0], data[1])]
    out = []
    for batch in data:
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise TypeError(
                "sensitivity: data must be (inputs, targets) tensors or an iterable of "
                f"(inputs, targets) batches, got an item of type {type(batch).__name__}"
            )
        out.append((batch[0], batch[1]))
    if not out:
        raise ValueError("sensitivity: data is empty; pass at least one (inputs, targets) batch")
    return out


@torch.no_grad()
def _accuracy(model: nn.Module, data: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    correct = total = 0
    for x, y in data:
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += int(y.numel())
    return correct / max(total, 1)


def _analog_accuracy(
    model: nn.Module, data, calib, t_s: float, repeats: int, seed: int
) -> tuple[float, float]:
    calibrate(model, calib)
    values = []
    for k in range(repeats):
        program(model, seed=seed + k)
        drift(model, t=t_s)
        values.append(_accuracy(model, data))
    std = statistics.stdev(values) if repeats > 1 else 0.0
    return statistics.fmean(values), std


def _convertible(model: nn.Module) -> list[tuple[str, nn.Module]]:
    mapping = get_default_analog_module_mapping()
    return [
        (name, module)
        for name, module in model.named_modules()
        if name and any(cls in mapping for cls in type(module).__mro__)
    ]


def _config_for(name: str, config: AnalogConfig, layer_configs: Mapping[str, AnalogConfig]):
    import fnmatch

    for pattern, cfg in layer_configs.items():
        if fnmatch.fnmatchcase(name, pattern):
            return cfg
    return config


def sensitivity(
    model: nn.Module,
    data: Batches,
    config: Optional[AnalogConfig] = None,
    *,
    t_s: float = 31536000.0,
    repeats: int = 3,
    adc_bits_drop: int = 2,
    layers: Optional[Sequence[str]] = None,
    layer_configs: Optional[Mapping[str, AnalogConfig]] = None,
    calibration: Optional[Iterable] = None,
    technology: Any = "isaac",
    example: Optional[torch.Tensor] = None,
    seed: int = 0,
) -> SensitivityReport:
    """Each layer's accuracy drop when only it is analog, beside its energy and area share.

    Args:
        model: the trained digital model (not modified).
        data: ``(inputs, targets)`` tensors, or an iterable of such batches (test data).
        config: the hardware of every layer (default ``AnalogConfig()``).
        t_s: read time after programming (s); default one year.
        repeats: device draws per measurement (programming seeds ``seed + k``).
        adc_bits_drop: the second measurement lowers the layer's ADC by this many bits
            (``0``: skip it; layers with an ideal ADC skip it).
        layers: qualified names to measure (default: every layer conversion replaces).
        layer_configs: per-layer configs by ``fnmatch`` pattern, as in ``convert_to_analog``.
        calibration: input batches setting the DAC/ADC ranges (default: ``data``'s first 4).
        technology: the cost technology of the energy and area shares (``None``: no shares).
        example: the input of the cost estimate (default: ``data``'s first sample).
        seed: base seed of the device draws.

    Returns:
        A :class:`SensitivityReport`, layers ranked by drop (largest first).

    Raises:
        ValueError: an unknown layer name, bad ``repeats``/``adc_bits_drop``/``t_s``, or empty data.
    """
    config = AnalogConfig() if config is None else config
    if not isinstance(config, AnalogConfig):
        raise TypeError(f"sensitivity: config must be an aimc.AnalogConfig, got {config!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"sensitivity: repeats must be an int >= 1, got {repeats!r}")
    if isinstance(adc_bits_drop, bool) or not isinstance(adc_bits_drop, int) or adc_bits_drop < 0:
        raise ValueError(f"sensitivity: adc_bits_drop must be an int >= 0, got {adc_bits_drop!r}")
    if not isinstance(t_s, (int, float)) or not math.isfinite(t_s) or t_s < 0:
        raise ValueError(f"sensitivity: t_s must be seconds >= 0, got {t_s!r}")
    batches = _batches(data)
    calib = [x for x, _ in batches[:4]] if calibration is None else list(calibration)
    layer_configs = dict(layer_configs or {})
    candidates = _convertible(model)
    names = [n for n, _ in candidates]
    if layers is not None:
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ValueError(
                f"sensitivity: layers {unknown} are not convertible layers of "
                f"{type(model).__name__}; its layers: {', '.join(names)}"
            )
        names = list(layers)
    if not names:
        raise ValueError(f"sensitivity: {type(model).__name__} has no layer to convert")
    modules = dict(candidates)
    digital = _accuracy(model, batches)

    rows = []
    for name in names:
        others = [n for n, _ in candidates if n != name]
        own = _config_for(name, config, layer_configs)
        one = convert_to_analog(model, config, layer_configs=layer_configs, exclude=others)
        mean, std = _analog_accuracy(one, batches, calib, t_s, repeats, seed)
        row = LayerSensitivity(
            name=name,
            module=type(modules[name]).__name__,
            accuracy=mean,
            accuracy_std=std,
            drop=digital - mean,
            adc_bits=own.adc.bits,
        )
        if adc_bits_drop and own.adc.bits is not None and own.adc.bits - adc_bits_drop >= 1:
            coarse = dataclasses.replace(
                own, adc=dataclasses.replace(own.adc, bits=own.adc.bits - adc_bits_drop)
            )
            low = convert_to_analog(
                model, config, layer_configs={name: coarse, **layer_configs}, exclude=others
            )
            row.accuracy_low_bits, row.accuracy_low_bits_std = _analog_accuracy(
                low, batches, calib, t_s, repeats, seed
            )
            row.drop_low_bits = digital - row.accuracy_low_bits
        rows.append(row)

    everything = convert_to_analog(model, config, layer_configs=layer_configs)
    all_mean, all_std = _analog_accuracy(everything, batches, calib, t_s, repeats, seed)
    if technology is not None:
        from aimc.cost import estimate_cost

        x = batches[0][0][:1] if example is None else example
        report = estimate_cost(everything, x, technology=technology)
        per_layer = {layer.name: layer for layer in report.layers}
        total_e = sum(float(layer.energy_j) for layer in report.layers) or 1.0
        total_a = sum(float(layer.area_mm2) for layer in report.layers) or 1.0
        for row in rows:
            layer = per_layer.get(row.name)
            if layer is not None:
                row.energy_j, row.area_mm2 = float(layer.energy_j), float(layer.area_mm2)
                row.energy_share, row.area_share = row.energy_j / total_e, row.area_mm2 / total_a
    rows.sort(key=lambda r: (-r.drop, -(r.drop_low_bits or 0.0)))
    return SensitivityReport(
        digital_accuracy=digital,
        t_s=float(t_s),
        repeats=repeats,
        adc_bits_drop=adc_bits_drop,
        layers=rows,
        all_analog_accuracy=all_mean,
        all_analog_accuracy_std=all_std,
    )
