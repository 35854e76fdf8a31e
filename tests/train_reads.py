"""Recording of hardware-aware training reads, shared by the tests of held weight noise."""

from __future__ import annotations

import torch

from aimc.tile.crossbar import Crossbar


def record_train_reads(monkeypatch) -> list[tuple[Crossbar, torch.Tensor]]:
    """Every train read's noisy tile weights, with the crossbar that made it."""
    reads: list[tuple[Crossbar, torch.Tensor]] = []
    train_read = Crossbar.train_read

    def recording(self, matrix, drift_gain=None):
        w, scale, comp = train_read(self, matrix, drift_gain)
        reads.append((self, w.detach().clone()))
        return w, scale, comp

    monkeypatch.setattr(Crossbar, "train_read", recording)
    return reads
