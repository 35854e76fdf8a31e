"""Figures of a run and of a sweep (matplotlib ``Figure`` objects, no pyplot state, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

from matplotlib.figure import Figure

from aimc.logging import time_tag

__all__ = ["accuracy_vs_time", "energy_breakdown", "pareto", "sweep_accuracy_vs_time"]


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


def pareto(
    energy_j: Sequence[float],
    accuracy: Sequence[float],
    labels: Sequence[str],
    front: Sequence[int],
    *,
    accuracy_label: str = "test accuracy",
    title: str = "",
) -> Figure:
    """Accuracy against energy per inference for every run; the Pareto front joined by a line."""
    fig = Figure(figsize=(7.5, 5.0), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    if not energy_j:
        ax.text(
            0.5,
            0.5,
            "no run has both an energy and an accuracy\n(cost model missing?)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return fig
    x = [e * 1e12 for e in energy_j]
    y = [100 * a for a in accuracy]
    on_front = set(front)
    ax.scatter(
        [x[i] for i in range(len(x)) if i not in on_front],
        [y[i] for i in range(len(y)) if i not in on_front],
        color="tab:gray",
        label="run",
    )
    fx = [x[i] for i in front]
    fy = [y[i] for i in front]
    ax.plot(fx, fy, "-o", color="tab:red", label="Pareto front")
    for i, label in enumerate(labels):
        ax.annotate(label, (x[i], y[i]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if min(x) > 0 and max(x) / min(x) > 20:
        ax.set_xscale("log")
    ax.margins(x=0.15, y=0.08)  # room for the labels of the outermost points
    ax.set_xlabel("energy per inference (pJ)")
    ax.set_ylabel(f"{accuracy_label} (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "accuracy versus energy")
    return fig


def sweep_accuracy_vs_time(
    times_s: Sequence[float], curves: Mapping[str, Sequence[Optional[float]]], *, title: str = ""
) -> Figure:
    """Mean analog accuracy against drift time, one line per run (``None``: not evaluated)."""
    fig = Figure(figsize=(7.5, 5.0), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for label, values in curves.items():
        pts = [(t, 100 * v) for t, v in zip(times_s, values) if v is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", label=label)
    _time_axis(ax, times_s)
    ax.set_ylabel("analog test accuracy (%)")
    ax.grid(True, alpha=0.3)
    if len(curves) <= 12:
        ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title or "accuracy versus drift time")
    return fig
