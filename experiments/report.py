"""``python -m experiments.report DIR``: a sweep folder → CSV, Pareto front and plot.

Every ``results.json`` below ``DIR`` (a Hydra multirun folder, or any folder of runs) becomes one
row of ``DIR/report.csv``: the swept fields (the group options and values that differ between
runs), the digital accuracy, the analog accuracy (mean and std over device draws) at each drift
time, and energy, latency, area and TOPS/W per inference. ``DIR/pareto.csv`` keeps the runs on the
Pareto front of accuracy (at ``--at``, default the longest drift time) against energy per
inference, ``DIR/pareto.png`` plots them, and the plot and table also go to TensorBoard in
``DIR/tensorboard_report``.

Examples::

    python -m experiments.report outputs/multiruns/2026-01-01/12-00-00
    python -m experiments.report outputs/multiruns/2026-01-01/12-00-00 --at 1d
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from aimc.logging import time_tag
from experiments.dse_report import best_text, fmt_cell, search_report

__all__ = ["Run", "load_runs", "swept_fields", "pareto_front", "parse_time", "make_report", "main"]

RESULTS = "results.json"
_GROUPS = (
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
    "experiment",
)
_IGNORED = ("paths.", "dataset.root", "dataset.download", "logger.", "threads")
_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "y": 31536000.0}


@dataclass
class Run:
    """One run's results and where they are."""

    path: str
    results: dict[str, Any]
    flat: dict[str, Any] = field(default_factory=dict)

    @property
    def times(self) -> list[float]:
        return [r["t_s"] for r in self.results.get("analog", [])]

    def accuracy_at(self, t_s: float) -> tuple[Optional[float], Optional[float]]:
        return self.metric_at(t_s, "accuracy")

    def perplexity_at(self, t_s: float) -> tuple[Optional[float], Optional[float]]:
        """A language model's perplexity (mean, std over draws) at ``t_s``; ``None`` if not."""
        return self.metric_at(t_s, "perplexity")

    @property
    def reports_perplexity(self) -> bool:
        return any("perplexity_mean" in row for row in self.results.get("analog", []))

    def metric_at(self, t_s: float, what: str) -> tuple[Optional[float], Optional[float]]:
        """``(mean, std)`` over draws of ``what`` (``"accuracy"``, ``"perplexity"``) at ``t_s``."""
        for row in self.results.get("analog", []):
            if math.isclose(row["t_s"], t_s, rel_tol=1e-9, abs_tol=1e-12):
                return row.get(f"{what}_mean"), row.get(f"{what}_std")
        return None, None

    def cost(self, key: str) -> Optional[float]:
        cost = self.results.get("cost") or {}
        value = cost.get(key)
        return float(value) if isinstance(value, (int, float)) else None


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = json.dumps(node) if isinstance(node, list) else node
    return out


def _order_key(path: str) -> tuple:
    # numeric job folders (0, 1, ..., 10) sort as numbers
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[\\/]", path))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def results_problem(results: Any) -> Optional[str]:
    """What keeps ``results`` (a parsed ``results.json``) from being a row, or ``None``."""
    if not isinstance(results, dict):
        return f"holds a JSON {type(results).__name__}, not an object of results"
    for key, kind in (("config", dict), ("choices", dict), ("overrides", list), ("analog", list)):
        if key not in results:
            return f"has no {key!r} field"
        if not isinstance(results[key], kind):
            return f"field {key!r} is a {type(results[key]).__name__}, not a {kind.__name__}"
    if not _is_number(results.get("digital_accuracy")):
        return "field 'digital_accuracy' is missing or not a number"
    for i, row in enumerate(results["analog"]):
        if not isinstance(row, dict):
            return f"analog[{i}] is not an object"
        for key in ("t_s", "accuracy_mean", "accuracy_std"):
            if not _is_number(row.get(key)):
                return f"analog[{i}].{key} is missing or not a number"
    if results.get("cost") is not None and not isinstance(results["cost"], dict):
        return f"field 'cost' is a {type(results['cost']).__name__}, not an object or null"
    return None


def load_runs(folder: str) -> list[Run]:
    """Every readable, well-formed ``results.json`` under ``folder``, in job order; others are
    skipped with a line on stderr naming the file and what is wrong with it."""
    runs = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in ("tensorboard", "tensorboard_report", ".hydra")]
        if RESULTS not in files:
            continue
        path = os.path.join(root, RESULTS)
        try:
            with open(path) as f:
                results = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            print(f"skipping {path}: {err}", file=sys.stderr)
            continue
        problem = results_problem(results)
        if problem is not None:
            print(f"skipping {path}: {problem}", file=sys.stderr)
            continue
        flat = {f"{k}": v for k, v in (results.get("choices") or {}).items()}
        flat.update(_flatten(results.get("config") or {}))
        rel = os.path.relpath(root, folder)
        runs.append(Run(path=rel, results=results, flat=flat))
    runs.sort(key=lambda r: _order_key(r.path))
    return runs


def _override_keys(runs: Sequence[Run]) -> list[str]:
    keys: list[str] = []
    for run in runs:
        for item in run.results.get("overrides") or []:
            key = item.split("=", 1)[0].lstrip("+~")
            if key not in keys and not key.startswith("hydra"):
                keys.append(key)
    return keys


def swept_fields(runs: Sequence[Run]) -> list[str]:
    """The fields that differ between runs: group options (``device``) when they differ, else
    the single values (``adc.bits``), in the order of the command-line overrides."""
    if not runs:
        return []
    keys = list(dict.fromkeys(k for r in runs for k in r.flat))

    def differs(key: str) -> bool:
        return len({json.dumps(r.flat.get(key), sort_keys=True) for r in runs}) > 1

    groups = [g for g in _GROUPS if differs(g)]
    fields = [
        k
        for k in keys
        if k not in _GROUPS
        and differs(k)
        and not k.startswith(_IGNORED)
        and not any(k.startswith(g + ".") for g in groups)
    ]
    swept = groups + fields
    if len(runs) == 1:  # a single run: what its command line changed
        swept = [k for k in _override_keys(runs) if k in runs[0].flat]
    order = {k: i for i, k in enumerate(_override_keys(runs))}
    return sorted(swept, key=lambda k: order.get(k, len(order)))


def pareto_front(
    energy: Sequence[Optional[float]], accuracy: Sequence[Optional[float]]
) -> list[int]:
    """Indices of the runs no other run beats in both lower energy and higher accuracy, sorted
    by energy (runs without an energy or an accuracy are left out)."""
    points = [
        (e, -a, i)
        for i, (e, a) in enumerate(zip(energy, accuracy))
        if e is not None and a is not None and math.isfinite(e) and math.isfinite(a)
    ]
    front, best = [], -math.inf
    for _energy, neg_a, i in sorted(points):
        if -neg_a > best:
            front.append(i)
            best = -neg_a
    return front


def parse_time(text: str) -> float:
    """Seconds from ``"3600"``, ``"1h"``, ``"1d"``, ``"1y"``, ``"90s"`` or ``"2.5min"``."""
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(s|min|h|d|y)?\s*", str(text))
    if not match:
        raise ValueError(f"--at must be seconds or a time like 1h, 1d, 1y; got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def make_report(
    folder: str, at: Optional[str] = None, tensorboard: bool = True, tolerance_pp: float = 0.5
) -> dict[str, Any]:
    """Write ``report.csv``, ``pareto.csv``, ``pareto.png`` (and TensorBoard events) in
    ``folder``; returns the paths, the swept fields and the front.

    A design-space search (``optuna.db`` in ``folder``) gets the search report instead
    (:func:`experiments.dse_report.search_report`: trials, front with hypervolume, best design
    within ``tolerance_pp`` of digital).
    """
    if os.path.isfile(os.path.join(folder, "optuna.db")):
        return search_report(folder, tolerance_pp=tolerance_pp, tensorboard=tensorboard)
    runs = load_runs(folder)
    if not runs and not os.path.isfile(os.path.join(folder, "optuna.db")):
        raise FileNotFoundError(f"no {RESULTS} under {os.path.abspath(folder)}")
    times = sorted({t for r in runs for t in r.times})
    t_at = parse_time(at) if at is not None else max(times)
    swept = swept_fields(runs)
    metrics = ["accuracy"]
    if any(r.reports_perplexity for r in runs):  # language models: perplexity beside accuracy
        metrics.append("perplexity")
    header = ["run", *swept, *(f"digital_{m}" for m in metrics)]
    for t in times:
        for m in metrics:
            header += [f"{m}@{time_tag(t)}", f"{m}_std@{time_tag(t)}"]
    cost_keys = ["energy_j", "latency_s", "area_mm2", "tops_per_w", "digital_baseline_energy_j"]
    header += [*cost_keys, "pareto"]

    energy = [r.cost("energy_j") for r in runs]
    acc = [r.accuracy_at(t_at)[0] for r in runs]
    front = pareto_front(energy, acc)
    rows = []
    for i, run in enumerate(runs):
        row = {"run": run.path}
        row.update({f"digital_{m}": run.results.get(f"digital_{m}") for m in metrics})
        row.update({k: run.flat.get(k) for k in swept})
        for t in times:
            for m in metrics:
                mean, std = run.metric_at(t, m)
                row[f"{m}@{time_tag(t)}"] = mean
                row[f"{m}_std@{time_tag(t)}"] = std
        row.update({k: run.cost(k) for k in cost_keys})
        row["pareto"] = i in front
        rows.append(row)

    paths = {
        k: os.path.join(folder, n)
        for k, n in (
            ("csv", "report.csv"),
            ("pareto_csv", "pareto.csv"),
            ("png", "pareto.png"),
            ("time_png", "accuracy_vs_time.png"),
        )
    }
    for key, subset in (("csv", rows), ("pareto_csv", [rows[i] for i in front])):
        with open(paths[key], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows({k: fmt_cell(v) for k, v in row.items()} for row in subset)

    from experiments.plots import pareto, sweep_accuracy_vs_time

    labels = [" ".join(f"{k}={run.flat.get(k)}" for k in swept) or run.path for run in runs]
    usable = [i for i in range(len(runs)) if energy[i] is not None and acc[i] is not None]
    fig = pareto(
        [energy[i] for i in usable],
        [acc[i] for i in usable],
        [labels[i] for i in usable],
        [usable.index(i) for i in front],
        accuracy_std=[runs[i].accuracy_at(t_at)[1] for i in usable],
        digital=runs[0].results.get("digital_accuracy"),
        accuracy_label=f"analog accuracy at t={time_tag(t_at)}",
        title=f"{len(runs)} runs of {_short(folder)}",
    )
    fig.savefig(paths["png"])
    curves = {labels[i]: [run.accuracy_at(t)[0] for t in times] for i, run in enumerate(runs)}
    fig_t = sweep_accuracy_vs_time(times, curves, title=f"{len(runs)} runs of {_short(folder)}")
    fig_t.savefig(paths["time_png"])
    if tensorboard:
        from aimc.logging import TBLogger

        with TBLogger(os.path.join(folder, "tensorboard_report")) as tb:
            tb.figure("report/pareto", fig)
            tb.figure("report/accuracy_vs_time", fig_t)
            tb.text("report/table", _markdown(header, rows))
            for k in front:
                tb.scalar("report/pareto_accuracy", acc[k], step=front.index(k))
    if len(usable) < len(runs):
        print(
            f"{len(runs) - len(usable)} run(s) without energy or accuracy at "
            f"t={time_tag(t_at)} are left out of the Pareto front",
            file=sys.stderr,
        )
    return {
        "runs": len(runs),
        "swept": swept,
        "front": [runs[i].path for i in front],
        "t_s": t_at,
        **paths,
    }


def _short(folder: str) -> str:
    parts = os.path.abspath(folder).split(os.sep)
    return "/".join(parts[-2:])


def _markdown(header: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(fmt_cell(row.get(h))) for h in header) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.report",
        description="Aggregate a sweep folder into report.csv, pareto.csv and pareto.png.",
    )
    parser.add_argument("folder", help="a sweep (multirun) folder, or any folder of runs")
    parser.add_argument(
        "--at",
        default=None,
        help="drift time of the Pareto accuracy: seconds or 1h/1d/1y "
        "(default: the longest time evaluated)",
    )
    parser.add_argument("--no-tensorboard", action="store_true", help="skip the TB events")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.5,
        help="search report: the best design is the cheapest within this many percentage "
        "points of the digital accuracy (default 0.5)",
    )
    args = parser.parse_args(argv)
    try:
        out = make_report(
            args.folder,
            at=args.at,
            tensorboard=not args.no_tensorboard,
            tolerance_pp=args.tolerance,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if "hypervolume" in out:  # a search
        hv = out["hypervolume"]
        print(f"{out['trials']} trials ({out['complete']} complete); Pareto front: {out['front']}")
        print(f"hypervolume {hv:.4f}" if hv is not None else "hypervolume: n/a")
        print(best_text(out["best"]))
        for key in ("csv", "pareto_csv", "png", "best_json", "best_txt"):
            print(f"wrote {out[key]}")
        return 0
    print(f"{out['runs']} runs; swept: {', '.join(out['swept']) or '(nothing)'}")
    print(f"Pareto front at t={time_tag(out['t_s'])}: {', '.join(out['front']) or '(empty)'}")
    for key in ("csv", "pareto_csv", "png", "time_png"):
        print(f"wrote {out[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
