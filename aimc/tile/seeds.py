"""Seeds of the analog layers' random draws: stable mixing of integers and layer names."""

from __future__ import annotations

import zlib

__all__ = ["mix_seed", "name_seed", "N_RNG_CHUNKS"]

N_RNG_CHUNKS = 4  # generators per noise source; fixed, so results never depend on thread counts


def mix_seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed (splitmix64 finalizer); stable across runs.

    Examples:
        >>> mix_seed(0, 1) == mix_seed(0, 1) != mix_seed(1, 0)
        True
    """
    z = 0x9E3779B97F4A7C15
    for p in parts:
        z = (z ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
    return z & 0x7FFFFFFFFFFFFFFF


def name_seed(seed: int, name: str) -> int:
    """The seed of the layer called ``name`` in a model programmed with ``seed``."""
    return mix_seed(seed, zlib.crc32(name.encode()))
