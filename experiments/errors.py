"""The user errors the entry points print as one line (no traceback): a config value that
cannot run, and a dataset that is not on the machine."""

from __future__ import annotations

__all__ = ["ConfigError", "DatasetNotFoundError"]


class ConfigError(ValueError):
    """A config value that cannot run; the message starts with the key (``adc.bits=-1: ...``)."""


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files missing from ``dataset.root`` and not downloadable."""
