"""Design-space search: NSGA-II against random search of the same budget, and what it finds.

Usage:
    python benchmarks/dse.py [--trials 40] [--models mlp lenet5] [--out benchmarks/results/dse]

For each model (the default MLP and LeNet-5, both on the embedded digits data set) it runs,
through the Hydra CLI exactly as a user would:

1. ``python -m experiments.sensitivity``: the layer whose accuracy drops most when it alone is
   analog (PCM, 8-bit DAC/ADC, one year after programming);
2. ``python -m experiments.run -m experiment=dse_<model>`` twice, with
   ``hydra.sweeper.sampler=nsga2`` and ``=random``, ``--trials`` trials each (same seed, same
   search space, same fidelities);
3. ``python -m experiments.run`` of the uniform all-analog 8-bit design (8-bit DAC and ADC,
   256 x 256 tiles, the largest of the search space, not the default HERMES core) at the high
   fidelity.

It prints a Markdown table: each search's hypervolume of (error rate, energy per inference)
with one reference point for both searches of a model (error 1, 1.1 x the largest energy seen),
normalized to the reference box; the wall time; the lowest-energy design within 0.5
percentage points of the digital accuracy at 1 year (from the NSGA-II search's report, its
numbers from the high-fidelity re-run) and its energy over the uniform 8-bit design's; and the
most sensitive layer. Raw numbers go to ``<out>/dse.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from experiments.dse_report import hypervolume_2d, search_report  # noqa: E402

MODELS = {"mlp": [], "lenet5": ["model=lenet5", "train.epochs=15"]}


def _run(args: list[str], log: str) -> float:
    start = time.perf_counter()
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.run(
            [sys.executable, "-m", *args],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=REPO),
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(args)}; see {log}")
    return time.perf_counter() - start


def _points(folder: str) -> list[tuple[float, float]]:
    """(error rate, energy) of every complete trial, at the fidelity the search ran."""
    import optuna

    study = optuna.load_study(study_name="dse", storage=f"sqlite:///{folder}/optuna.db")
    names = list(study.user_attrs["objectives"])
    out = []
    for t in study.trials:
        if t.state.name == "COMPLETE":
            values = dict(zip(names, t.values))
            out.append((1.0 - values["accuracy"], values["energy_j"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "dse"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="print the table of <out>/dse.json")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    if args.table:
        with open(os.path.join(out, "dse.json")) as f:
            print(_table(json.load(f), args.trials))
        return
    os.makedirs(out, exist_ok=True)
    root = [f"paths.root_dir={out}", f"threads={args.threads}"]
    results: dict = {}
    for model in args.models:
        extra = MODELS[model]
        r: dict = {"model": model}
        sens_dir = os.path.join(out, model, "sensitivity")
        _run(
            ["experiments.sensitivity", *extra, *root, f"hydra.run.dir={sens_dir}"],
            sens_dir + ".log",
        )
        with open(os.path.join(sens_dir, "sensitivity.json")) as f:
            sens = json.load(f)
        r["sensitivity"] = [
            {k: layer[k] for k in ("name", "drop", "drop_low_bits", "energy_share")}
            for layer in sens["layers"]
        ]
        for sampler in ("nsga2", "random"):
            folder = os.path.join(out, model, sampler)
            wall = _run(
                [
                    "experiments.run",
                    "-m",
                    f"experiment=dse_{model}",
                    *root,
                    f"hydra.sweep.dir={folder}",
                    f"hydra.sweeper.sampler={sampler}",
                    f"hydra.sweeper.n_trials={args.trials}",
                ],
                folder + ".log",
            )
            r[sampler] = {"wall_s": wall, "points": _points(folder)}
        energy_max = max(e for s in ("nsga2", "random") for _, e in r[s]["points"])
        reference = (1.0, 1.1 * energy_max)
        for sampler in ("nsga2", "random"):
            hv = hypervolume_2d(r[sampler]["points"], reference)
            r[sampler]["hypervolume"] = hv / (reference[0] * reference[1])
            folder = os.path.join(out, model, sampler)
            report = search_report(folder, reference=reference, tensorboard=False)
            r[sampler]["best"] = {
                k: report["best"].get(k)
                for k in ("trial", "accuracy", "accuracy_std", "energy_j", "overrides", "layers")
            }
            r[sampler]["digital_accuracy"] = report["best"].get("digital_accuracy")
        uniform_dir = os.path.join(out, model, "uniform8")
        _run(
            [
                "experiments.run",
                *extra,
                *root,
                "tile.cols=256",
                f"hydra.run.dir={uniform_dir}",
                "logger=none",
            ],
            uniform_dir + ".log",
        )
        with open(os.path.join(uniform_dir, "results.json")) as f:
            uniform = json.load(f)
        r["uniform8"] = {
            "accuracy": uniform["objective"]["accuracy"],
            "accuracy_std": uniform["objective"]["accuracy_std"],
            "energy_j": uniform["objective"]["energy_j"],
            "digital_accuracy": uniform["digital_accuracy"],
        }
        results[model] = r
        with open(os.path.join(out, "dse.json"), "w") as f:
            json.dump(results, f, indent=2)
    print(_table(results, args.trials))


def _table(results: dict, trials: int) -> str:
    lines = [
        f"| model | search ({trials} trials) | hypervolume | wall time | best design within "
        "0.5 pp of digital at 1 y | its energy / uniform 8-bit | most sensitive layer |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, r in results.items():
        uni = r["uniform8"]
        top = r["sensitivity"][0]
        for sampler in ("nsga2", "random"):
            s = r[sampler]
            best = s["best"]
            if best.get("energy_j") and best.get("accuracy") is not None:
                within = 100 * (s["digital_accuracy"] - best["accuracy"]) <= 0.5 + 1e-9
                design = (
                    f"{100 * best['accuracy']:.2f} ± {100 * (best['accuracy_std'] or 0):.2f} %, "
                    f"{best['energy_j'] * 1e9:.3g} nJ (digital {100 * s['digital_accuracy']:.2f} %)"
                )
                if not within:
                    design = f"none; the most accurate: {design}"
                ratio = f"{best['energy_j'] / uni['energy_j']:.3f}"
            else:
                design, ratio = "none", "-"
            lines.append(
                f"| {model} | {sampler} | {s['hypervolume']:.4f} | {s['wall_s']:.0f} s | {design} "
                f"| {ratio} | {top['name']} ({100 * top['drop']:+.2f} pp) |"
            )
        lines.append(
            f"| {model} | uniform 8-bit | - | - | {100 * uni['accuracy']:.2f} ± "
            f"{100 * uni['accuracy_std']:.2f} %, {uni['energy_j'] * 1e9:.3g} nJ | 1 | |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
