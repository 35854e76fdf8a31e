"""Drift compensation: one global (or per-column) gain measured with a reference read.

The chip keeps the read-out of fixed reference inputs taken right after programming and, at
read time t, fits the gain that maps today's read-out of the same inputs onto it:
``f = <ref0, ref0> / <ref0, ref_t>``. Unlike a ratio of sums of ``|outputs|``, zero-mean read and
relaxation noise in ``ref_t`` does not bias this least-squares gain (``E|a + n| > |a|`` would
make that ratio too small).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from aimc.tile.seeds import mix_seed

__all__ = ["N_REF", "drift_gain", "reference_signs", "reference_amplitude"]

N_REF = 32  # reference vectors of the compensation read


def drift_gain(ref0: Tensor, ref_t: Tensor, mode: str) -> Tensor | float:
    """The gain ``<ref0, ref0> / <ref0, ref_t>`` of read-outs ``[groups, M, cols]``: one number
    (``mode="global"``) or one per column ``[groups, cols]`` (``"column"``); 1 where the
    reference read is not positive.

    Examples:
        >>> drift_gain(torch.ones(1, 2, 3), torch.full((1, 2, 3), 0.5), "global")
        2.0
    """
    if mode == "global":
        den = float((ref0 * ref_t).sum())
        return float((ref0 * ref0).sum()) / den if den > 0 else 1.0
    num, den = (ref0 * ref0).sum(1), (ref0 * ref_t).sum(1)
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.ones_like(num))


def reference_signs(seed: int, groups: int, rows: int, like: Tensor) -> Tensor:
    """``N_REF`` random ±1 input vectors ``[N_REF, groups, rows]`` fixed by the layer's seed."""
    gen = torch.Generator(device="cpu").manual_seed(mix_seed(seed, 7))
    signs = torch.randint(0, 2, (N_REF, groups, rows), generator=gen) * 2.0 - 1.0
    return signs.to(like.device, like.dtype)


def reference_amplitude(peak: float, full_scale: float, dac_levels: Optional[int]) -> float:
    """The reference input amplitude that puts the largest ideal partial sum ``peak`` at half
    the ADC full scale (neither saturated nor lost in the LSB), on the DAC grid."""
    alpha = min(1.0, 0.5 * full_scale / peak)
    if dac_levels:
        alpha = max(1.0, math.floor(alpha * dac_levels)) / dac_levels
    return alpha
