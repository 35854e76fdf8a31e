"""The Ray launcher, registered with Hydra (see :class:`experiments.ray_launcher.RayLauncher`)."""

from experiments.ray_launcher import RayLauncher as _RayLauncher


class RayLauncher(_RayLauncher):
    """Sweep jobs and search trials as Ray tasks (``hydra/launcher=aimc_ray``)."""
