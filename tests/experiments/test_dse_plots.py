"""Figures of a search stay readable with many runs: numbered front, no repeated colours,
cost axes in a unit that suits the values."""

from __future__ import annotations

import random

import pytest
from matplotlib.text import Annotation

from experiments.plots import cost_scale, pareto, sweep_accuracy_vs_time
from experiments.report import pareto_front


@pytest.mark.parametrize(
    ("key", "values", "factor", "label"),
    [
        ("energy_j", [2.5e-8, 4e-8], 1e9, "energy per inference (nJ)"),
        ("energy_j", [3e-12, 9e-12, 2e-11], 1e12, "energy per inference (pJ)"),
        ("energy_j", [2e-6], 1e6, "energy per inference (µJ)"),
        ("latency_s", [2.7e-7], 1e9, "latency per inference (ns)"),
        ("area_mm2", [0.8], 1.0, "area (mm²)"),
    ],
)
def test_cost_scale(key, values, factor, label):
    got_factor, got_label = cost_scale(key, values)
    assert got_factor == pytest.approx(factor) and got_label == label


def test_pareto_plot_of_60_runs_numbers_the_front_and_lists_it_aside():
    rng = random.Random(0)
    energy = [rng.uniform(1e-8, 5e-8) for _ in range(60)]
    acc = [rng.uniform(0.8, 0.97) for _ in range(60)]
    front = pareto_front(energy, acc)
    labels = [f"adc.bits={rng.randint(3, 8)} tile.rows={rng.choice([64, 128])}" for _ in acc]
    fig = pareto(
        energy,
        acc,
        labels,
        front,
        accuracy_std=[0.01] * 60,
        digital=0.97,
        color_values=list(range(60)),
        color_label="trial number",
    )
    ax, side = fig.axes[0], fig.axes[1]
    notes = [c for c in ax.get_children() if isinstance(c, Annotation)]
    assert sorted(n.get_text() for n in notes) == sorted(str(k + 1) for k in range(len(front)))
    listing = side.texts[0].get_text()
    assert all(labels[i] in listing.replace("\n   ", " ") for i in front)
    assert "(nJ)" in ax.get_xlabel()
    assert any(a.get_label() == "trial number" for a in fig.axes[2:3]) or len(fig.axes) == 3


def test_many_accuracy_curves_get_distinct_colours():
    times = [1.0, 3600.0, 86400.0]
    curves = {f"run {k}": [0.9, 0.89 - k * 1e-3, 0.88] for k in range(15)}
    fig = sweep_accuracy_vs_time(times, curves)
    colours = [tuple(line.get_color()) for line in fig.axes[0].get_lines()]
    assert len(colours) == 15 and len(set(colours)) == 15
