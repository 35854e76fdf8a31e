"""``python -m experiments.sensitivity [overrides]``: rank the layers of the experiment's model.

Trains (or reuses the cached) digital model of the composed experiment, then runs
:func:`aimc.sensitivity` on its test images at ``eval.objective_time`` (default: the last drift
time) with the experiment's hardware (per-layer ``analog.layers`` too), and writes into the run
folder ``sensitivity.txt`` (the ranked table), ``sensitivity.csv``, ``sensitivity.png`` and
``sensitivity.json``, whose ``enqueue`` list seeds a search::

    python -m experiments.sensitivity adc.bits=6
    python -m experiments.run -m experiment=dse_mlp hydra.sweeper.seed_from=<run>/sensitivity.json
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import logging
import os
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

import aimc
from experiments.config import ConfigError, Experiment, build, write_hydra_record
from experiments.datasets import DatasetNotFoundError, batches, load_dataset
from experiments.models import build_model
from experiments.pipeline import (
    _calibration_batches,
    _check_layer_names,
    _digital_model,
    _NoLogger,
    seed_everything,
    write_json_atomic,
)

__all__ = ["run_sensitivity", "search_seeds", "main"]

log = logging.getLogger(__name__)


def search_seeds(report: aimc.SensitivityReport, k: int) -> list[dict[str, Any]]:
    """Trials for a search's queue: the 1, 2, ..., ``k`` most sensitive layers digital."""
    seeds = []
    for n in range(1, min(k, len(report.layers) - 1) + 1):
        top = set(report.most_sensitive(n))
        seeds.append({f"analog.layers.{name}.digital": name in top for name in report.ranking})
    return seeds


def run_sensitivity(
    exp: Experiment, output_dir: str, *, adc_bits_drop: int = 2, repeats=None, seed_layers: int = 2
) -> aimc.SensitivityReport:
    """Sensitivity of ``exp``'s model on its hardware; writes the files into ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    if exp.threads is not None:
        torch.set_num_threads(exp.threads)
    seed_everything(exp.seed)
    data = load_dataset(exp.dataset)
    model = build_model(exp.model_factory, data.in_shape, data.num_classes, **exp.model_kwargs)
    _check_layer_names(exp, model)
    _digital_model(exp, data, model, _NoLogger())
    model.eval()
    test = data.test.subset(exp.eval.max_samples, exp.seed + 3)
    names = [
        n
        for n, m in model.named_modules()
        if n
        and any(c in aimc.get_default_analog_module_mapping() for c in type(m).__mro__)
        and not any(fnmatch.fnmatchcase(n, p) for p in exp.digital_layers)
    ]
    report = aimc.sensitivity(
        model,
        list(batches(test, exp.eval.batch_size)),
        exp.analog,
        t_s=exp.eval.objective_time,
        repeats=exp.eval.repeats if repeats is None else repeats,
        adc_bits_drop=adc_bits_drop,
        layers=names,
        layer_configs=exp.layer_configs,
        calibration=_calibration_batches(exp, data),
        technology=exp.technology,
        example=data.test.batch(torch.arange(1))[0],
        seed=exp.eval.seed,
    )
    table = report.table()
    with open(os.path.join(output_dir, "sensitivity.txt"), "w") as f:
        f.write(table + "\n")
    rows = [dataclasses.asdict(layer) for layer in report.layers]
    with open(os.path.join(output_dir, "sensitivity.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["rank", *rows[0]])
        writer.writeheader()
        writer.writerows({"rank": i, **r} for i, r in enumerate(rows, start=1))
    report.plot().savefig(os.path.join(output_dir, "sensitivity.png"))
    write_json_atomic(
        os.path.join(output_dir, "sensitivity.json"),
        {
            **report.to_dict(),
            "config": exp.config,
            "overrides": exp.overrides,
            "enqueue": search_seeds(report, seed_layers),
        },
    )
    log.info("layer sensitivity:\n%s", table)
    return report


@hydra.main(config_path="../conf", config_name="sensitivity", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    settings = OmegaConf.to_container(cfg.sensitivity, resolve=True)
    run_cfg = cfg.copy()
    with open_dict(run_cfg):
        del run_cfg["sensitivity"]
    try:
        exp = build(run_cfg, overrides=list(hc.overrides.task))
        write_hydra_record(cfg, hc.runtime.output_dir)
        run_sensitivity(exp, hc.runtime.output_dir, **settings)
    except (ConfigError, DatasetNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    except (ValueError, TypeError) as err:  # aimc.sensitivity's argument checks
        raise SystemExit(f"error: {err}") from None
    log.info("results in %s", hc.runtime.output_dir)


if __name__ == "__main__":
    main()
