"""``python -m experiments.run [overrides]``: one experiment, or a sweep with ``-m``.

A thin Hydra entry point: compose ``conf/config.yaml`` with the command-line overrides, build the
typed objects (:func:`experiments.config.build`, which stops on a bad value naming its key) and
hand them to :func:`experiments.pipeline.run`, writing into Hydra's run folder.

Examples::

    python -m experiments.run                                  # digits, MLP, PCM, 8-bit DAC/ADC
    python -m experiments.run device=rram adc.bits=6 tile.rows=128
    python -m experiments.run -m adc.bits=4,6,8 device=pcm,rram hydra/launcher=joblib
    python -m experiments.run experiment=rram22 model=vgg8 dataset=cifar10 eval.cost_only=true
    python -m experiments.report outputs/multiruns/<date>/<time>
"""

from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.config import ConfigError, build_from_hydra, write_hydra_record
from experiments.cost import write_cost_report
from experiments.datasets import DatasetNotFoundError
from experiments.pipeline import run

log = logging.getLogger(__name__)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Run one experiment; returns the mean analog accuracy at the last drift time (for
    sweepers that optimize it)."""
    hc = HydraConfig.get()
    try:
        experiment = build_from_hydra(cfg)
        if experiment.eval.cost_only:  # the cost report only: no data, training or accuracy
            write_hydra_record(cfg, hc.runtime.output_dir)
            return float(write_cost_report(experiment, hc.runtime.output_dir)["energy_j"])
        output_dir = hc.runtime.output_dir
        results = run(
            experiment, output_dir, on_claimed=lambda: write_hydra_record(cfg, output_dir)
        )
    except (ConfigError, DatasetNotFoundError) as err:
        # a user error, not a bug: the message (naming the key) without a traceback
        raise SystemExit(f"error: {err}") from None
    log.info("results in %s", hc.runtime.output_dir)
    return results["analog"][-1]["accuracy_mean"]


if __name__ == "__main__":
    main()
