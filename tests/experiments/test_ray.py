"""Trials of a search spread over a local Ray cluster of 2 workers (hydra/launcher=aimc_ray)."""

from __future__ import annotations

import pytest
from exp_helpers import TINY, run_module

pytest.importorskip("ray")
optuna = pytest.importorskip("optuna")


def test_search_trials_run_on_two_ray_workers(tmp_path):
    sweep = tmp_path / "search"
    proc = run_module(
        "experiments.run",
        "-m",
        "hydra/sweeper=dse",
        "hydra/launcher=aimc_ray",
        "hydra.launcher.init.num_cpus=2",  # a local cluster: 2 one-CPU workers
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.fidelity.promote=0",
        "hydra.sweeper.report=false",
        "hydra.sweeper.params={adc.bits:'choice(4,8)',tile.rows:'choice(32,64)'}",
        *TINY,
        f"paths.root_dir={tmp_path}",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "Launching 2 jobs on Ray" in log and "'CPU': 2.0" in log
    assert "(_execute pid=" in log  # the runs logged from Ray worker processes
    study = optuna.load_study(study_name="dse", storage=f"sqlite:///{sweep}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t in study.trials:
        assert (sweep / t.user_attrs["run"] / "results.json").is_file()
