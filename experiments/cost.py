"""``python -m experiments.cost [overrides]``: the cost report of a configuration, no data.

The same Hydra configuration as :mod:`experiments.run` (every override works); the model gets
its seeded initial weights and a seeded uniform input of the dataset's shape, so no dataset
file, training or device programming is needed. Prints the cost table and writes
``cost.json`` (the report) and ``cost.txt`` (the table) into Hydra's run folder.
``python -m experiments.run ... eval.cost_only=true`` does the same.

Examples::

    python -m experiments.cost experiment=rram22 model=vgg8 dataset=cifar10 \
        eval.replication=balanced
    python -m experiments.cost experiment=isaac model=lenet5 dataset=mnist
"""

from __future__ import annotations

import json
import logging
import os

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.config import ConfigError, Experiment, build_from_hydra, write_hydra_record
from experiments.pipeline import cost_report

log = logging.getLogger(__name__)


def write_cost_report(experiment: Experiment, output_dir: str) -> dict:
    """Estimate ``experiment``'s cost without data; print the table and write ``cost.json``
    and ``cost.txt`` into ``output_dir``. Returns the summary."""
    summary, report = cost_report(experiment)
    if report is None:
        raise ConfigError("the cost model (aimc.estimate_cost) is not available")
    os.makedirs(output_dir, exist_ok=True)
    table = report.table()
    print(table)
    with open(os.path.join(output_dir, "cost.txt"), "w") as fh:
        fh.write(table + "\n")
    tmp = os.path.join(output_dir, "cost.json.tmp")
    with open(tmp, "w") as fh:
        json.dump({"summary": summary, "report": report.to_dict()}, fh, indent=1, default=str)
    os.replace(tmp, os.path.join(output_dir, "cost.json"))
    log.info("cost report in %s", output_dir)
    return summary


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Print and write the cost report; returns the energy of one inference (J)."""
    try:
        experiment = build_from_hydra(cfg)
        output_dir = HydraConfig.get().runtime.output_dir
        write_hydra_record(cfg, output_dir)
        summary = write_cost_report(experiment, output_dir)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    return float(summary["energy_j"])


if __name__ == "__main__":
    main()
