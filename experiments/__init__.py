"""Hydra experiments around aimc: ``python -m experiments.run``, ``python -m experiments.report``.

The ``conf/`` folder at the repository root holds the configs; :func:`experiments.config.build`
turns a composed config into typed objects and :func:`experiments.pipeline.run` runs them, so both
are usable without Hydra.
"""

from __future__ import annotations

__all__: list[str] = []
