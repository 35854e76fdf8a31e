"""aimc's Hydra plugins: the design-space-exploration sweeper (``hydra/sweeper=dse``) and a
Ray launcher (``hydra/launcher=aimc_ray``). Hydra finds them in the ``hydra_plugins`` namespace
package; the code lives in :mod:`experiments.dse` and :mod:`experiments.ray_launcher`."""
