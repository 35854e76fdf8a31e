"""The Ray launcher, registered with Hydra (see :class:`experiments.ray_launcher.RayLauncher`)."""

from experiments import ray_launcher  # the module: Hydra lists the classes it finds here


class RayLauncher(ray_launcher.RayLauncher):
    """Sweep jobs and search trials as Ray tasks (``hydra/launcher=aimc_ray``)."""
