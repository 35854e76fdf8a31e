"""A Hydra launcher that runs the jobs of a sweep (or the trials of a search) as Ray tasks.

``hydra/launcher=aimc_ray`` starts a local Ray instance (``init.num_cpus`` workers' worth of
CPUs); ``hydra/launcher=ray_cluster`` joins a running cluster (``ray start --head`` on one
machine, ``ray start --address=<head>:6379`` on the others). Each job runs
:func:`hydra.core.utils.run_job` in a Ray worker, in the launching folder, with the launching
folder on ``PYTHONPATH`` so that the workers import the same code; every worker must see the
repository and the output folder at the same paths (a shared filesystem across machines).

Why not ``hydra-ray-launcher``: its last release pulls ``ray[default]``, ``boto3`` and
``aiohttp`` for its AWS autoscaler path and predates current Ray; what a local or joined
cluster needs is the few lines below on plain ``ray``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

__all__ = ["RayLauncher"]

log = logging.getLogger(__name__)


def _execute(
    hydra_context: HydraContext,
    sweep_config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
    cwd: str,
) -> JobReturn:
    """One job in a Ray worker: Hydra's global state restored, then ``run_job``."""
    os.chdir(cwd)
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


class RayLauncher(Launcher):
    """Jobs as Ray tasks.

    Args:
        init: keyword arguments of ``ray.init`` (``address: auto`` joins a running cluster,
            ``null`` starts a local one; ``num_cpus`` sizes a local one).
        remote: resources of each job (``num_cpus``, ``num_gpus``, ``memory``...), as
            ``ray.remote`` options.
    """

    def __init__(
        self,
        init: Optional[Mapping[str, Any]] = None,
        remote: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.init = dict(init or {})
        self.remote = dict(remote or {})
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def _start(self) -> None:
        import ray

        if ray.is_initialized():
            return
        init = {k: v for k, v in self.init.items() if v is not None}
        runtime_env = dict(init.pop("runtime_env", None) or {})
        env = dict(runtime_env.get("env_vars") or {})
        paths = [os.getcwd(), *filter(None, [os.environ.get("PYTHONPATH")])]
        env.setdefault("PYTHONPATH", os.pathsep.join(paths))
        runtime_env["env_vars"] = env
        ray.init(runtime_env=runtime_env, **init)
        log.info("Ray: %s", ray.cluster_resources())

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import ray

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        self._start()
        log.info("Launching %d jobs on Ray", len(job_overrides))
        execute = (
            ray.remote(_execute).options(**self.remote) if self.remote else ray.remote(_execute)
        )
        state = Singleton.get_state()
        refs = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
                sweep_config.hydra.job.num = idx
            refs.append(
                execute.remote(
                    self.hydra_context, sweep_config, self.task_function, state, os.getcwd()
                )
            )
        return ray.get(refs)
