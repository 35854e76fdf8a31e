"""Seeds of the analog layers' random draws: stable mixing of integers and layer names, and
the named random streams of a layer (:class:`DrawStreams`)."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from typing import Optional

import torch

__all__ = ["mix_seed", "name_seed", "N_RNG_CHUNKS", "DrawStreams"]

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


class DrawStreams:
    """The named random streams of a layer, every one seeded from its ``seed`` buffer (a part of
    :class:`~aimc.tile.crossbar.Crossbar`, kept here with the seeding rules).

    The host (a :class:`~aimc.tile.stage.Stage`) holds ``seed`` (a one-element int64 buffer),
    ``_gens`` (the generators made so far, by name), ``_draws`` (eval forwards since
    programming) and ``_draw_key``.
    """

    def generator(self, kind: str, index: int = 0) -> torch.Generator:
        """The generator of draws ``kind`` (``"program"``, ``"read"``, ``"adc"``, ``"train"``),
        seeded from ``seed``; programming restarts every stream. ``"read"`` and ``"adc"``
        streams also start afresh at every eval forward (:meth:`begin_draw`), seeded from the
        forward's draw number, so a copy or a reloaded state draws the same numbers."""
        return self._stream(f"{kind}{index}", kind in ("read", "adc"))

    def _stream(self, key: str, per_draw: bool, seed: Optional[int] = None) -> torch.Generator:
        dev = self._buffers["seed"].device
        gen = self._gens.get(key)
        if gen is None or gen.device != dev:
            gen = torch.Generator(device=dev)
            parts = self._draw_key if per_draw else ()
            if seed is None:
                seed = self.scalar("seed", _first_int)
            gen.manual_seed(mix_seed(seed, _key_crc(key), *parts))
            self._gens[key] = gen
        return gen

    def begin_draw(self) -> None:
        """Start the ``"read"``/``"adc"`` streams of the next eval forward (seeded by its
        number since programming)."""
        draws = self._draws
        self._set_draw_key((draws,))
        self.__dict__["_draws"] = draws + 1  # a plain number (no Module.__setattr__ per read)

    def _set_draw_key(self, key: tuple[int, ...]) -> None:
        self.__dict__["_draw_key"] = key
        gens = self._gens
        if gens:
            for name in [k for k in gens if k.startswith(("read", "adc"))]:
                del gens[name]

    @contextlib.contextmanager
    def draw_scope(self, *key: int) -> Iterator[None]:
        """Inside the block, ``"read"``/``"adc"`` streams are seeded by ``key`` (a reference
        read or a per-time read: the same numbers whenever it is redone); the forward's own
        streams restart after it."""
        saved = self._draw_key
        self._set_draw_key((1 << 40, *key))
        try:
            yield
        finally:
            self._set_draw_key(saved)

    def generators(self, kind: str) -> list[torch.Generator]:
        """The ``N_RNG_CHUNKS`` generators of one chunked draw (``randn_chunked``)."""
        keys = _CHUNK_KEYS.get(kind)
        if keys is None:
            keys = _CHUNK_KEYS.setdefault(kind, [f"{kind}{i}" for i in range(N_RNG_CHUNKS)])
        per_draw = kind in ("read", "adc")
        seed = self.scalar("seed", _first_int)  # once for all chunks
        return [self._stream(key, per_draw, seed) for key in keys]


_CHUNK_KEYS: dict[str, list[str]] = {}  # stream names of the chunked draws, per kind
_CRCS: dict[str, int] = {}


def _key_crc(key: str) -> int:
    crc = _CRCS.get(key)
    if crc is None:
        crc = _CRCS.setdefault(key, zlib.crc32(key.encode()))
    return crc


def _first_int(buf: torch.Tensor) -> int:
    return int(buf[0])
