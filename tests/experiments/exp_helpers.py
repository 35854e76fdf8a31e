"""Helpers of the experiment tests: composing ``conf/`` and tiny, fast run settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"

# A run of a few seconds: 2 epochs on 300 digits, 2 device draws at 2 drift times, 1 thread.
TINY = [
    "train.epochs=2",
    "eval.repeats=2",
    "eval.times=[1.0,86400.0]",
    "dataset.max_train=300",
    "dataset.max_test=100",
    "threads=1",
]


def compose_config(overrides: list[str], *, hydra: bool = False):
    """``conf/config.yaml`` composed with ``overrides`` (and the ``hydra`` node when asked)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def tiny(tmp_path: Path) -> list[str]:
    """Tiny run overrides with every output (runs, cache, data) under ``tmp_path``."""
    return [*TINY, f"paths.root_dir={tmp_path}"]


class WithBilinear(torch.nn.Module):
    """A digits classifier that also holds a layer with no analog counterpart (nn.Bilinear)."""

    def __init__(self, in_shape, num_classes):
        super().__init__()
        n = 1
        for d in in_shape:
            n *= d
        self.fc = torch.nn.Linear(n, num_classes)
        self.mix = torch.nn.Bilinear(num_classes, num_classes, num_classes)

    def forward(self, x):
        y = self.fc(x.flatten(1))
        return y + 0.01 * self.mix(y, y)


def run_module(module: str, *args: str, timeout: float = 300, **popen):
    """``python -m module args...`` from the repository root (this checkout's code first);
    ``subprocess.run`` capturing text output, or a ``Popen`` when ``popen`` options are given."""
    env = dict(os.environ, HYDRA_FULL_ERROR="1", PYTHONPATH=str(REPO), RAY_DEDUP_LOGS="0")
    cmd = [sys.executable, "-m", module, *args]
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, env=env, **popen)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
