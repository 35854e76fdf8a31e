"""The ``dse`` sweeper, registered with Hydra (see :class:`experiments.dse.DSESweeper`)."""

from experiments import dse  # the module, not the class: Hydra lists the classes it finds here


class DSESweeper(dse.DSESweeper):
    """Optuna search over the experiment (``python -m experiments.run -m hydra/sweeper=dse``)."""
