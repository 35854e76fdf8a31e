"""Whether the weights on the tiles are still the layer's weights."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["weight_fingerprint"]


def weight_fingerprint(weight: Tensor) -> Tensor:
    """Three float64 sums of ``weight`` (as int64 bits): the sum, the sum of squares and a sum
    weighted by fixed pseudo-random normal coefficients, so that a permutation or an edit that
    keeps the first two changes the third (equal only for equal weights, but for exact
    cancellations of probability zero)."""
    w = weight.detach().double().flatten()
    gen = torch.Generator(device="cpu").manual_seed(0x5EED)
    coeff = torch.randn(w.numel(), generator=gen, dtype=torch.float64).to(w.device)
    return torch.stack([w.sum(), (w * w).sum(), (w * coeff).sum()]).view(torch.int64)
