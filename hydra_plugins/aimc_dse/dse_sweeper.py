"""The ``dse`` sweeper, registered with Hydra (see :class:`experiments.dse.DSESweeper`)."""

from experiments.dse import DSESweeper as _DSESweeper


class DSESweeper(_DSESweeper):
    """Optuna search over the experiment (``python -m experiments.run -m hydra/sweeper=dse``)."""
