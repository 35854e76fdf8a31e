"""Whether the weights on the tiles are still the layer's weights."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["same_weights", "weight_fingerprint"]

_NUMPY_DTYPES = (torch.float32, torch.float64, torch.float16)


def same_weights(a: Tensor, b: Tensor) -> bool:
    """``torch.equal`` of two tensors of one shape, dtype and device. On the CPU numpy's
    comparison, with the same semantics and several times faster there (it runs before every
    eval read of every layer).

    Examples:
        >>> same_weights(torch.zeros(2), -torch.zeros(2))
        True
    """
    if a.device.type == "cpu" and a.dtype in _NUMPY_DTYPES:
        return bool(np.array_equal(a.numpy(), b.numpy()))
    return torch.equal(a, b)


def weight_fingerprint(weight: Tensor) -> Tensor:
    """Three float64 sums of ``weight`` (as int64 bits): the sum, the sum of squares and a sum
    weighted by fixed pseudo-random normal coefficients, so that a permutation or an edit that
    keeps the first two changes the third (equal only for equal weights, but for exact
    cancellations of probability zero)."""
    w = weight.detach().double().flatten()
    gen = torch.Generator(device="cpu").manual_seed(0x5EED)
    coeff = torch.randn(w.numel(), generator=gen, dtype=torch.float64).to(w.device)
    return torch.stack([w.sum(), (w * w).sum(), (w * coeff).sum()]).view(torch.int64)
