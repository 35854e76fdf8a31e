"""Composing ``conf/`` in tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_config(overrides: list[str], *, hydra: bool = False):
    """``conf/config.yaml`` composed with ``overrides`` (and the ``hydra`` node when asked)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)
