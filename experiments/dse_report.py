"""The report of a design-space search (a sweep folder holding ``optuna.db``).

:func:`search_report` reads the Optuna study and the trials' ``results.json`` and writes into the
folder:

- ``trials.csv``: every trial (state, parameters, objectives at the fidelity it ran, the
  high-fidelity accuracy ± std of the re-run Pareto trials, run folder, Pareto flag);
- ``pareto.csv`` and ``pareto.png``: the front (high-fidelity numbers where re-run, error bars:
  std over device draws), every other trial coloured by trial number, the hypervolume;
- ``best.json`` and ``best.txt``: the lowest-cost front design whose accuracy is within
  ``tolerance_pp`` percentage points of the digital model (else the most accurate one), with
  its overrides and per-layer configuration (analog or digital, device, tile, DAC/ADC bits,
  energy share);
- ``tensorboard_report/``: the plot, the tables and one HParams run per trial.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from aimc.logging import time_tag

__all__ = [
    "hypervolume_2d",
    "search_report",
    "load_study",
    "best_design",
    "layer_table",
    "best_text",
    "fmt_cell",
]

STORAGE_FILE = "optuna.db"


def fmt_cell(value: Any) -> Any:
    """A table cell of a report: floats to 6 significant digits, ``None`` empty."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` (both coordinates minimized) up to ``reference``; points
    at or beyond the reference in either coordinate add nothing."""
    pts = sorted((a, b) for a, b in points if a < reference[0] and b < reference[1])
    area, best_b = 0.0, reference[1]
    xs = [a for a, _ in pts] + [reference[0]]
    for i, (_, b) in enumerate(pts):  # sweep the first coordinate, keep the best second
        best_b = min(best_b, b)
        area += (xs[i + 1] - xs[i]) * (reference[1] - best_b)
    return area


def load_study(folder: str) -> Any:
    """The Optuna study in ``folder/optuna.db`` (the only one, or the one named ``dse``)."""
    import optuna

    path = os.path.join(folder, STORAGE_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {STORAGE_FILE} in {os.path.abspath(folder)}")
    storage = f"sqlite:///{os.path.abspath(path)}"
    names = optuna.get_all_study_names(storage)
    name = names[0] if len(names) == 1 else "dse"
    return optuna.load_study(study_name=name, storage=storage)


def _read(folder: str, run: Optional[str]) -> Optional[dict[str, Any]]:
    if not run:
        return None
    try:
        with open(os.path.join(folder, run, "results.json")) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def layer_table(folder: str, run: str) -> list[dict[str, Any]]:
    """Per layer of a run (from its ``results.json`` and ``cost.json``): analog or digital,
    device, tile, DAC and ADC bits, energy (J) and its share, area (mm²)."""
    results = _read(folder, run) or {}
    try:
        with open(os.path.join(folder, run, "cost.json")) as f:
            cost_layers = json.load(f).get("layers") or []
    except (OSError, json.JSONDecodeError):
        cost_layers = []
    config = results.get("config") or {}
    per_layer = _layer_overrides((config.get("analog") or {}).get("layers") or {})
    device = (results.get("choices") or {}).get("device")
    rows = []
    for layer in cost_layers:
        name = layer.get("name", "")
        own = next((f for p, f in per_layer.items() if fnmatch.fnmatchcase(name, p)), {})
        analog = layer.get("kind") == "analog"

        def pick(group: str, key: str, own: Mapping[str, Any] = own) -> Any:
            return (own.get(group) or {}).get(key, (config.get(group) or {}).get(key))

        rows.append(
            {
                "layer": name,
                "module": layer.get("module", ""),
                "kind": layer.get("kind", ""),
                "device": (own.get("device") or device) if analog else "",
                "tile": f"{pick('tile', 'rows')}x{pick('tile', 'cols')}" if analog else "",
                "dac_bits": pick("dac", "bits") if analog else "",
                "adc_bits": pick("adc", "bits") if analog else "",
                "energy_j": float(layer.get("energy_j") or 0.0),
                "area_mm2": float(layer.get("area_mm2") or 0.0),
            }
        )
    total = sum(r["energy_j"] for r in rows) or 1.0
    for r in rows:
        r["energy_share"] = r["energy_j"] / total
    return rows


def _layer_overrides(node: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    groups = {"device", "tile", "dac", "adc", "mapping", "digital"}
    out: dict[str, dict[str, Any]] = {}
    fields = {k: v for k, v in node.items() if k in groups}
    if fields and prefix:
        out[prefix] = fields
    for key, value in node.items():
        if key not in groups and isinstance(value, Mapping):
            out.update(_layer_overrides(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def best_design(
    trials: Sequence[dict[str, Any]], digital: Optional[float], tolerance_pp: float, cost_key: str
) -> Optional[dict[str, Any]]:
    """The lowest-cost trial within ``tolerance_pp`` points of ``digital`` accuracy (else the
    most accurate trial); among ``trials`` rows with ``accuracy`` and ``cost_key``."""
    usable = [t for t in trials if t.get("accuracy") is not None and t.get(cost_key) is not None]
    if not usable:
        return None
    if digital is not None:
        close = [t for t in usable if 100 * (digital - t["accuracy"]) <= tolerance_pp + 1e-9]
        if close:
            return min(close, key=lambda t: t[cost_key])
    return max(usable, key=lambda t: t["accuracy"])


def search_report(
    folder: str,
    *,
    tolerance_pp: float = 0.5,
    reference: Optional[tuple[float, float]] = None,
    tensorboard: bool = True,
) -> dict[str, Any]:
    """Write the search report into ``folder`` (see the module doc); returns paths and figures:
    ``{"trials", "complete", "front", "hypervolume", "reference", "best", "csv", ...}``.

    ``reference``: the hypervolume's reference point ``(error rate, cost)`` (default: error 1
    and 1.1 x the largest cost among the trials); give the same one to compare searches.
    """
    from optuna.trial import TrialState

    study = load_study(folder)
    objectives: dict[str, str] = dict(study.user_attrs.get("objectives") or {})
    if not objectives:
        names = study.metric_names or [f"objective{i}" for i in range(len(study.directions))]
        objectives = {n: d.name.lower() for n, d in zip(names, study.directions)}
    cost_keys = [k for k in objectives if k != "accuracy"]
    cost_key = cost_keys[0] if cost_keys else "energy_j"
    front_numbers = {t.number for t in study.best_trials} if study.trials else set()
    params = sorted({k for t in study.trials for k in t.params})
    rows: list[dict[str, Any]] = []
    digital = None
    for t in study.trials:
        full = study.user_attrs.get(f"full_{t.number}") or {}
        objective = t.user_attrs.get("objective") or t.user_attrs.get("cost") or {}
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        row.update({p: t.params.get(p) for p in params})
        values = dict(zip(objectives, t.values)) if t.values else {}
        best = full or objective
        row["accuracy"] = best.get("accuracy", values.get("accuracy"))
        row["accuracy_std"] = best.get("accuracy_std")
        row["repeats"] = best.get("repeats")
        row["test_images"] = best.get("test_images")
        row["fidelity"] = "high" if full else ("low" if objective.get("repeats") else "")
        for key in ("energy_j", "latency_s", "area_mm2", "tops_per_w"):
            row[key] = best.get(key, values.get(key))
        row["accuracy_low"] = objective.get("accuracy")
        row["pareto"] = t.number in front_numbers
        row["run"] = full.get("run") or t.user_attrs.get("run") or ""
        row["note"] = t.user_attrs.get("error") or (
            f"pruned: {t.user_attrs['pruned_by']}" if "pruned_by" in t.user_attrs else ""
        )
        results = _read(folder, row["run"])
        if results is not None and digital is None:
            digital = results.get("digital_accuracy")
        rows.append(row)
    complete = [r for r in rows if r["state"] == TrialState.COMPLETE.name]
    t_s = next(
        (
            (t.user_attrs.get("objective") or {}).get("t_s")
            for t in study.trials
            if t.user_attrs.get("objective")
        ),
        None,
    )
    front = [r for r in complete if r["pareto"]]

    # hypervolume of the front: (error rate, cost), both minimized
    hv, ref = None, reference
    if "accuracy" in objectives and cost_keys and complete:
        costs = [r[cost_key] for r in complete if r[cost_key] is not None]
        if ref is None and costs:
            ref = (1.0, 1.1 * max(costs))
        if ref is not None:
            pts = [(1.0 - r["accuracy"], r[cost_key]) for r in front if r["accuracy"] is not None]
            hv = hypervolume_2d(pts, ref) / (ref[0] * ref[1])

    paths = {
        k: os.path.join(folder, n)
        for k, n in (
            ("csv", "trials.csv"),
            ("pareto_csv", "pareto.csv"),
            ("png", "pareto.png"),
            ("best_json", "best.json"),
            ("best_txt", "best.txt"),
        )
    }
    header = list(rows[0]) if rows else ["trial"]
    for key, subset in (
        ("csv", rows),
        ("pareto_csv", sorted(front, key=lambda r: r[cost_key] or 0)),
    ):
        with open(paths[key], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows({k: fmt_cell(v) for k, v in r.items()} for r in subset)

    # precise numbers only where there are some: the re-run (high-fidelity) front trials
    precise = [r for r in front if r["fidelity"] == "high"]
    best = best_design(precise or front or complete, digital, tolerance_pp, cost_key)
    best_out: dict[str, Any] = {"tolerance_pp": tolerance_pp, "digital_accuracy": digital}
    if best is not None:
        trial = study.trials[best["trial"]]
        best_out.update(
            trial=best["trial"],
            accuracy=best["accuracy"],
            accuracy_std=best["accuracy_std"],
            **{k: best[k] for k in ("energy_j", "latency_s", "area_mm2", "tops_per_w")},
            params=trial.params,
            overrides=trial.user_attrs.get("overrides"),
            run=best["run"],
            layers=layer_table(folder, best["run"]) if best["run"] else [],
        )
    with open(paths["best_json"], "w") as f:
        json.dump(best_out, f, indent=2)
        f.write("\n")
    with open(paths["best_txt"], "w") as f:
        f.write(best_text(best_out) + "\n")

    fig = None
    if "accuracy" in objectives and complete:
        from experiments.plots import pareto

        usable = [r for r in complete if r["accuracy"] is not None and r[cost_key] is not None]
        index = {r["trial"]: i for i, r in enumerate(usable)}
        # a front design is labelled by the parameters that differ along the front
        varying = [p for p in params if len({repr(r.get(p)) for r in front}) > 1] or params
        labels = [_label(r, varying) for r in usable]
        title = f"{len(rows)} trials ({len(complete)} complete)"
        if hv is not None:
            title += f"; hypervolume {hv:.4f}"
        fig = pareto(
            [r[cost_key] for r in usable],
            [r["accuracy"] for r in usable],
            labels,
            [index[r["trial"]] for r in front if r["trial"] in index],
            accuracy_std=[r["accuracy_std"] for r in usable],
            accuracy_label=f"accuracy at t={time_tag(t_s)}" if t_s is not None else "accuracy",
            cost_key=cost_key,
            digital=digital,
            color_values=[r["trial"] for r in usable],
            color_label="trial number",
            title=title,
        )
        fig.savefig(paths["png"])
    if tensorboard:
        _tensorboard(folder, study, rows, params, fig, objectives)
    return {
        "trials": len(rows),
        "complete": len(complete),
        "front": [r["trial"] for r in front],
        "hypervolume": hv,
        "reference": ref,
        "best": best_out,
        "cost_key": cost_key,
        "rows": rows,
        **paths,
    }


def _label(row: Mapping[str, Any], params: Sequence[str]) -> str:
    parts = []
    for p in params:
        value = row.get(p)
        short = p.replace("analog.layers.", "").replace("mapping.", "map.")
        parts.append(f"{short}={value}")
    return " ".join(parts)


def best_text(best: Mapping[str, Any]) -> str:
    if "trial" not in best:
        return "no complete trial"
    digital = best.get("digital_accuracy")
    lines = [
        f"best design: trial {best['trial']} (lowest cost within {best['tolerance_pp']} pp of "
        f"digital {100 * digital:.2f}%)"
        if digital is not None
        else f"best: trial {best['trial']}",
        f"accuracy {100 * best['accuracy']:.2f}%"
        + (f" ± {100 * best['accuracy_std']:.2f}" if best.get("accuracy_std") is not None else ""),
        ", ".join(_quantity(k, best.get(k)) for k in ("energy_j", "latency_s", "area_mm2")),
        "overrides: " + " ".join(best.get("overrides") or []),
        "",
    ]
    layers = best.get("layers") or []
    if layers:
        head = ("layer", "module", "kind", "device", "tile", "dac_bits", "adc_bits", "energy")
        table = [head] + [
            (
                r["layer"],
                r["module"],
                r["kind"],
                str(r["device"]),
                str(r["tile"]),
                str(r["dac_bits"]),
                str(r["adc_bits"]),
                f"{r['energy_share']:.1%}",
            )
            for r in layers
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(lines)


def _quantity(key: str, value: Any) -> str:
    from experiments.plots import cost_scale

    if not isinstance(value, (int, float)):
        return f"{key} n/a"
    factor, label = cost_scale(key, [value])
    name, _, unit = label.partition(" (")
    return f"{name} {value * factor:.4g} {unit.rstrip(')')}"


def _tensorboard(folder, study, rows, params, fig, objectives) -> None:
    from aimc.logging import TBLogger

    base = os.path.join(folder, "tensorboard_report")
    with TBLogger(base) as tb:
        if fig is not None:
            tb.figure("search/pareto", fig)
        head = ["trial", "state", *params, "accuracy", "accuracy_std", "energy_j", "pareto"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(str(fmt_cell(r.get(h))) for h in head) + " |" for r in rows]
        tb.text("search/trials", "\n".join(lines))
    for r in rows:
        if r["state"] != "COMPLETE":
            continue
        metrics = {
            f"hparam/{k}": r[k]
            for k in ("accuracy", "accuracy_std", "energy_j", "latency_s", "area_mm2")
            if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])
        }
        if isinstance(metrics.get("hparam/energy_j"), float):
            metrics["hparam/energy_pj"] = metrics.pop("hparam/energy_j") * 1e12
        with TBLogger(os.path.join(base, f"trial_{r['trial']:04d}")) as tb:
            tb.log_hparams({p: r.get(p) for p in params} | {"pareto": r["pareto"]}, metrics)
