"""Whether the weights on the tiles are still the layer's weights.

Every eval forward must notice an edit of the weights since programming, including edits
through ``.data`` and permutations, which bump no version counter, and then reprogram. Two
fingerprints serve it:

- :func:`edit_fingerprint`, checked at every forward: integer sums of the weights' bit patterns
  (one pass over the weights, no copy of them kept);
- :func:`weight_fingerprint`, a persistent buffer of three sums saved with the state, checked
  once after a reload or a move, before the per-forward one is taken again.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BLOCK", "STRIDE", "edit_fingerprint", "weight_fingerprint"]

BLOCK = 1024  # words per block sum
STRIDE = BLOCK + 8  # the class sums take every STRIDE-th word (a multiple of 8: aligned loads)


def _words(weight: Tensor) -> Tensor:
    """The weights' bit patterns as signed integers, flattened: 32-bit words (two per float64
    weight), or words of the weight's own size when it is narrower."""
    w = weight.detach().reshape(-1)
    return w.view({1: torch.int8, 2: torch.int16}.get(w.element_size(), torch.int32))


def edit_fingerprint(weight: Tensor) -> Tensor:
    """Sums modulo ``2**32`` of the bit patterns ("words") of ``weight``, flattened: one per
    block of ``BLOCK`` consecutive words, then ``STRIDE`` (> ``BLOCK``) class sums, class ``m``
    holding the words at positions ``p`` with ``p mod STRIDE = m``. An int32 vector of
    ``ceil(words / BLOCK) + STRIDE`` entries (4 bytes per 1024 float32 weights, plus 4 KB).

    Integer addition modulo ``2**32`` is exact and does not depend on the summation order
    (threads, device), so unchanged weights always give the same vector: no false alarm. Two
    different words differ modulo ``2**32``. Hence detection is certain (not probabilistic) for

    - any edit of at most three words (for float32, three weights), however small: one ulp, a
      sign, a NaN payload. An unnoticed edit leaves every touched block and class with at
      least two changed words, so it needs four;
    - any edit inside one block (two words of a block are less than ``STRIDE`` apart, so in
      different classes), and every exchange of two unequal words: for float32 and narrower
      weights (one word each), every transposition of two weights;
    - the exchange of two different blocks ``k`` blocks apart (two rows of a 1024-wide
      weight) when ``k`` is prime to 129: block ``i``'s words fall in classes shifted by
      ``8 i``, so an unnoticed exchange needs a difference of the two blocks that repeats with
      period ``gcd(8 k, STRIDE)``, and for ``k`` prime to 129 = 3 * 43 that period is 8,
      shorter than the 8 classes the blocks leave empty, which forces no difference.

    Other edits go unnoticed only when their changes cancel modulo ``2**32`` in every block and
    every class they touch at once: for a training step, added noise or a typical permutation,
    thousands of exact cancellations; the smallest is four words ``+d, -d`` at positions
    ``p, p + 1`` and ``-d, +d`` at ``p + STRIDE, p + STRIDE + 1``.

    Examples:
        >>> w = torch.randn(3, 700)
        >>> e = w.clone()
        >>> e.view(torch.int32)[2, 5] += 1  # one ulp
        >>> torch.equal(edit_fingerprint(w), edit_fingerprint(e))
        False
    """
    b = _words(weight)
    n = b.numel()
    blocks = -(-n // BLOCK)
    out = torch.empty(blocks + STRIDE, dtype=torch.int32, device=b.device)  # no concatenation
    full = n // BLOCK
    if full:
        torch.sum(b[: full * BLOCK].view(full, BLOCK), 1, dtype=torch.int32, out=out[:full])
    if full < blocks:
        torch.sum(b[full * BLOCK :], 0, keepdim=True, dtype=torch.int32, out=out[full:blocks])
    classes = out[blocks:]
    full, tail = divmod(n, STRIDE)
    if full:
        torch.sum(b[: full * STRIDE].view(full, STRIDE), 0, dtype=torch.int32, out=classes)
    else:
        classes.zero_()
    if tail:
        classes[:tail] += b[full * STRIDE :]
    return out


def weight_fingerprint(weight: Tensor) -> Tensor:
    """Three float64 sums of ``weight`` (as int64 bits): the sum, the sum of squares and a sum
    weighted by fixed pseudo-random normal coefficients, so that a permutation or an edit that
    keeps the first two changes the third (equal only for equal weights, but for exact
    cancellations of probability zero)."""
    w = weight.detach().double().flatten()
    gen = torch.Generator(device="cpu").manual_seed(0x5EED)
    coeff = torch.randn(w.numel(), generator=gen, dtype=torch.float64).to(w.device)
    return torch.stack([w.sum(), (w * w).sum(), (w * coeff).sum()]).view(torch.int64)
