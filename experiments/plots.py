"""Figures of a run and of a sweep (matplotlib ``Figure`` objects, no pyplot state, no display)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Optional

from matplotlib import colormaps
from matplotlib.figure import Figure

from aimc.logging import time_tag

__all__ = ["accuracy_vs_time", "energy_breakdown", "pareto", "sweep_accuracy_vs_time", "cost_scale"]


def _time_axis(ax, times: Sequence[float]) -> None:
    if all(t > 0 for t in times):
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xticks(list(times))
    ax.set_xticklabels([time_tag(t) for t in times])
    ax.minorticks_off()
    ax.set_xlabel("time after programming")


def accuracy_vs_time(
    times_s: Sequence[float],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    digital: Optional[float] = None,
    title: str = "",
) -> Figure:
    """Analog test accuracy (mean ± std over device draws) against drift time."""
    fig = Figure(figsize=(6.0, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.errorbar(
        times_s,
        [100 * m for m in mean],
        yerr=[100 * s for s in std],
        marker="o",
        capsize=4,
        label="analog (mean ± std over draws)",
    )
    if digital is not None:
        ax.axhline(100 * digital, color="gray", linestyle="--", label="digital")
    _time_axis(ax, times_s)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(title or "accuracy versus drift time")
    return fig


def energy_breakdown(
    components_j: Mapping[str, float], layers_j: Mapping[str, float], *, title: str = ""
) -> Figure:
    """Energy per inference (pJ) by component and by layer, as horizontal bars."""
    panels = [(n, d) for n, d in (("by component", components_j), ("by layer", layers_j)) if d]
    fig = Figure(
        figsize=(6.0, 1.5 + 0.35 * sum(len(d) for _, d in panels)), dpi=100, layout="constrained"
    )
    if not panels:
        fig.text(0.5, 0.5, "no cost breakdown available", ha="center")
        return fig
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, data) in zip(axes, panels):
        labels = sorted(data, key=lambda k: -data[k]) if name == "by component" else list(data)
        values = [data[k] * 1e12 for k in labels]
        total = sum(values) or 1.0
        bars = ax.barh(labels, values)
        ax.bar_label(bars, [f"{v / total:.1%}" for v in values], padding=3, fontsize=8)
        ax.margins(x=0.15)
        ax.invert_yaxis()
        ax.set_xlabel("energy per inference (pJ)")
        ax.set_title(name)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title or "energy breakdown")
    return fig


_UNITS = {
    "energy_j": (
        "energy per inference",
        "J",
        ((1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, "")),
    ),
    "latency_s": (
        "latency per inference",
        "s",
        ((1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, "")),
    ),
}


def cost_scale(key: str, values: Sequence[float]) -> tuple[float, str]:
    """``(factor, axis label)`` that shows ``values`` of cost ``key`` in a readable unit: energy
    in fJ..J and latency in ps..s by their median; area in mm², efficiency in TOPS/W."""
    if key in _UNITS:
        name, base, prefixes = _UNITS[key]
        finite = sorted(abs(v) for v in values if v)
        median = finite[len(finite) // 2] if finite else 1.0
        factor, prefix = prefixes[0]
        for f, p in prefixes:
            if median >= f:
                factor, prefix = f, p
        return 1.0 / factor, f"{name} ({prefix}{base})"
    return 1.0, {"area_mm2": "area (mm²)", "tops_per_w": "efficiency (TOPS/W)"}.get(key, key)


def pareto(
    energy_j: Sequence[float],
    accuracy: Sequence[float],
    labels: Sequence[str],
    front: Sequence[int],
    *,
    accuracy_std: Optional[Sequence[Optional[float]]] = None,
    accuracy_label: str = "test accuracy",
    cost_key: str = "energy_j",
    digital: Optional[float] = None,
    color_values: Optional[Sequence[float]] = None,
    color_label: str = "",
    title: str = "",
) -> Figure:
    """Accuracy against a cost (energy per inference by default) for every run.

    The Pareto front is joined by a line, drawn with error bars (``accuracy_std``) and numbered;
    the numbers are listed with each front run's label in a panel beside the plot, so labels
    never overprint however many runs there are. Other runs are grey, or coloured on a
    continuous colour map by ``color_values`` (no colour repeats). The cost axis is shown in a
    unit that suits its values (pJ, nJ, µJ, ...).
    """
    fig = Figure(figsize=(11.0, 5.5), dpi=110, layout="constrained")
    ax, side = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1.0]})
    side.set_axis_off()
    if not energy_j:
        ax.text(
            0.5,
            0.5,
            "no run has both a cost and an accuracy\n(cost model missing?)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return fig
    factor, xlabel = cost_scale(cost_key, energy_j)
    x = [e * factor for e in energy_j]
    y = [100 * a for a in accuracy]
    on_front = set(front)
    rest = [i for i in range(len(x)) if i not in on_front]
    if color_values is not None and rest:
        points = ax.scatter(
            [x[i] for i in rest],
            [y[i] for i in rest],
            c=[color_values[i] for i in rest],
            cmap="viridis",
            s=18,
            alpha=0.8,
            label="other runs",
        )
        fig.colorbar(points, ax=ax, label=color_label, pad=0.01)
    elif rest:
        ax.scatter(
            [x[i] for i in rest], [y[i] for i in rest], color="tab:gray", s=18, label="other runs"
        )
    order = sorted(front, key=lambda i: x[i])
    fx, fy = [x[i] for i in order], [y[i] for i in order]
    err = None
    if accuracy_std is not None:
        err = [100 * (accuracy_std[i] or 0.0) for i in order]
    ax.errorbar(
        fx,
        fy,
        yerr=err,
        fmt="-o",
        color="tab:red",
        capsize=3,
        label="Pareto front (± std over draws)",
    )
    for k, i in enumerate(order, start=1):
        ax.annotate(
            str(k),
            (x[i], y[i]),
            textcoords="offset points",
            xytext=(5, -10 if k % 2 else 5),
            fontsize=8,
            color="tab:red",
        )
    if digital is not None:
        ax.axhline(100 * digital, color="black", linestyle="--", linewidth=0.8, label="digital")
    if min(x) > 0 and max(x) / min(x) > 20:
        ax.set_xscale("log")
    ax.margins(x=0.08, y=0.08)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{accuracy_label} (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "accuracy versus cost")
    # the listing fills the side panel up to what fits; the rest is in the CSV
    wrapped, budget = [], 44
    for k, i in enumerate(order, start=1):
        block = textwrap.fill(f"{k}. {labels[i]}", 52, subsequent_indent="   ").splitlines()
        if len(wrapped) + len(block) > budget:
            wrapped.append(f"... {len(order) - k + 1} more in the CSV")
            break
        wrapped += block
    listing = side.text(
        0.0,
        1.0,
        "Pareto front\n" + "\n".join(wrapped),
        va="top",
        ha="left",
        fontsize=6.5,
        family="monospace",
        transform=side.transAxes,
    )
    listing.set_in_layout(False)  # sized by the panel, not sizing the plot
    return fig


def sweep_accuracy_vs_time(
    times_s: Sequence[float], curves: Mapping[str, Sequence[Optional[float]]], *, title: str = ""
) -> Figure:
    """Mean analog accuracy against drift time, one line per run (``None``: not evaluated)."""
    fig = Figure(figsize=(7.5, 5.0), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    # more curves than a qualitative palette has colours: one continuous colour map, no repeats
    many = len(curves) > 10
    cmap = colormaps["viridis"]
    for k, (label, values) in enumerate(curves.items()):
        pts = [(t, 100 * v) for t, v in zip(times_s, values) if v is not None]
        color = cmap(k / max(len(curves) - 1, 1)) if many else None
        if pts:
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                "-o",
                label=label,
                color=color,
                markersize=3 if many else 6,
                linewidth=0.8 if many else 1.5,
            )
    _time_axis(ax, times_s)
    ax.set_ylabel("analog test accuracy (%)")
    ax.grid(True, alpha=0.3)
    if not many:
        ax.legend(fontsize=7, loc="lower left")
    elif curves:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        fig.colorbar(
            ScalarMappable(Normalize(0, len(curves) - 1), cmap), ax=ax, label="run (in order)"
        )
    ax.set_title(title or "accuracy versus drift time")
    return fig
