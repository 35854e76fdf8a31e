"""Standard-normal samplers for the per-forward noise (ADC output noise, per-forward read noise).

An analog layer with ADC output noise draws one normal number per ADC read: a 1024x1024 layer at
batch 256 on 256x256 tiles needs 1 M draws per forward, and torch's CPU sampler (a serial
mt19937 feeding Box-Muller, 2.4 ns per draw on our 2-core Xeon) then costs 1.6x the layer's whole
matmul. Intel oneMKL's vector statistics library draws the same numbers 3.5x faster (0.69 ns per
draw: Philox4x32-10 counters, inverse-CDF transform, AVX-512), so on CPU tensors of float32 or
float64 :func:`fill_normal_` uses MKL when the ``mkl`` wheel is installed (the ``fast`` extra:
``pip install "aimc[fast]"``) and torch's sampler otherwise.

Backends (:func:`set_normal_sampler`, or the environment variable ``AIMC_NORMAL_SAMPLER`` read
at import):

- ``"auto"`` (default): MKL where it applies and loads, else torch.
- ``"torch"``: always torch (``Tensor.normal_``); CPU chunks drawn concurrently on a thread pool.
- ``"mkl"``: MKL; an error if it cannot be loaded. Non-CPU tensors and other dtypes use torch.

Both are exact N(0, 1) samplers to float precision and both are seeded only through the
``torch.Generator`` objects passed in (MKL's Philox key is drawn from them), so a seed gives the
same numbers every run. The two backends give *different* numbers for the same seed: results
record which one ran (:func:`normal_sampler`). References: Intel oneMKL Developer Reference,
"Random Number Generators" (``vslNewStreamEx``, ``VSL_BRNG_PHILOX4X32X10``,
``VSL_RNG_METHOD_GAUSSIAN_ICDF``); Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011 (Philox4x32-10).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

__all__ = ["SAMPLERS", "fill_normal_", "mkl_available", "normal_sampler", "set_normal_sampler"]

log = logging.getLogger(__name__)

SAMPLERS = ("auto", "torch", "mkl")

# oneMKL constants (mkl_vsl_defines.h, mkl_service.h)
_VSL_BRNG_PHILOX4X32X10 = 16 << 20
_VSL_RNG_METHOD_GAUSSIAN_ICDF = 2
_MKL_THREADING_SEQUENTIAL = 1
_MKL_INTERFACE_ILP64 = 1
_MAX_PER_CALL = 1 << 30  # MKL_INT is 32-bit in the LP64 interface

_choice = "auto"
_mkl: Optional[_MKL] = None
_mkl_error: Optional[str] = None
_mkl_tried = False
_load_lock = threading.Lock()


def _candidates() -> list[Path]:
    env = os.environ.get("AIMC_MKL_RT")
    if env:
        return [Path(env)]
    names = ["libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so", "mkl_rt.3.dll", "mkl_rt.2.dll"]
    dirs = []
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, os.environ.get("CONDA_PREFIX", "")]):
        if prefix:
            dirs += [Path(prefix) / "lib", Path(prefix) / "Library" / "bin"]
    return [d / n for d in dirs for n in names]


class _MKL:
    """The few oneMKL entry points the sampler calls, through ctypes (no build step)."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        # Our caller parallelizes; MKL must not start its own OpenMP/TBB team (torch runs GNU
        # OpenMP). Both calls must come before any other MKL call in the process to take effect.
        lib.MKL_Set_Threading_Layer.restype = ctypes.c_int
        lib.MKL_Set_Threading_Layer(ctypes.c_int(_MKL_THREADING_SEQUENTIAL))
        lib.MKL_Set_Interface_Layer.restype = ctypes.c_int
        layer = lib.MKL_Set_Interface_Layer(ctypes.c_int(0))  # LP64 unless already set
        self.int_t = ctypes.c_int64 if layer == _MKL_INTERFACE_ILP64 else ctypes.c_int
        for name in ("vslNewStreamEx", "vslDeleteStream", "vsRngGaussian", "vdRngGaussian"):
            getattr(lib, name).restype = ctypes.c_int
        self.lib, self.path = lib, path

    def fill(self, out: Tensor, key: int, sigma: float) -> None:
        """Fill the contiguous CPU tensor ``out`` with N(0, sigma^2) from a Philox stream keyed
        by the 64-bit ``key``."""
        lib = self.lib
        stream = ctypes.c_void_p()
        params = (ctypes.c_uint * 2)(key & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF)
        status = lib.vslNewStreamEx(
            ctypes.byref(stream), ctypes.c_int(_VSL_BRNG_PHILOX4X32X10), self.int_t(2), params
        )
        if status != 0:
            raise RuntimeError(f"oneMKL vslNewStreamEx failed with status {status}")
        try:
            if out.dtype == torch.float64:
                fn, scalar = lib.vdRngGaussian, ctypes.c_double
            else:
                fn, scalar = lib.vsRngGaussian, ctypes.c_float
            ptr, left, size = out.data_ptr(), out.numel(), out.element_size()
            while left > 0:
                n = min(left, _MAX_PER_CALL)
                status = fn(
                    ctypes.c_int(_VSL_RNG_METHOD_GAUSSIAN_ICDF),
                    stream,
                    self.int_t(n),
                    ctypes.c_void_p(ptr),
                    scalar(0.0),
                    scalar(sigma),
                )
                if status != 0:
                    raise RuntimeError(f"oneMKL v?RngGaussian failed with status {status}")
                ptr, left = ptr + n * size, left - n
        finally:
            lib.vslDeleteStream(ctypes.byref(stream))


def _load_mkl() -> Optional[_MKL]:
    global _mkl, _mkl_error, _mkl_tried
    if _mkl_tried:
        return _mkl
    with _load_lock:
        if not _mkl_tried:
            errors = []
            for path in _candidates():
                if not path.is_file():
                    continue
                try:
                    _mkl = _MKL(path)
                    log.debug("normal sampler: oneMKL from %s", path)
                    break
                except (OSError, AttributeError) as exc:
                    errors.append(f"{path}: {exc}")
            if _mkl is None:
                _mkl_error = "; ".join(errors) or (
                    "no libmkl_rt found under "
                    f"{sorted({str(p.parent) for p in _candidates()})} "
                    '(install the "fast" extra: pip install "aimc[fast]", or set AIMC_MKL_RT)'
                )
            _mkl_tried = True  # last: other threads read it without the lock
    return _mkl


def mkl_available() -> bool:
    """Whether oneMKL's sampler loads in this process.

    Examples:
        >>> isinstance(mkl_available(), bool)
        True
    """
    return _load_mkl() is not None


def set_normal_sampler(name: str) -> str:
    """Choose the backend of the per-forward normal draws: ``"auto"``, ``"torch"`` or ``"mkl"``;
    returns the previous choice (to restore it).

    Examples:
        >>> previous = set_normal_sampler("torch"); normal_sampler()
        'torch'
        >>> set_normal_sampler(previous)
        'torch'
    """
    global _choice
    if name not in SAMPLERS:
        raise ValueError(f"normal sampler must be one of {SAMPLERS}, got {name!r}")
    if name == "mkl" and not mkl_available():
        raise RuntimeError(f"normal sampler 'mkl' cannot load oneMKL: {_mkl_error}")
    previous, _choice = _choice, name
    return previous


def normal_sampler(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> str:
    """The backend that draws CPU normals now (``"mkl"`` or ``"torch"``); for other devices or
    dtypes (which always use torch) pass them.

    Examples:
        >>> normal_sampler("meta")
        'torch'
    """
    if _choice == "mkl" and not mkl_available():
        raise RuntimeError(f"normal sampler 'mkl' cannot load oneMKL: {_mkl_error}")
    if (
        _choice == "torch"
        or torch.device(device).type != "cpu"
        or dtype not in (torch.float32, torch.float64)
    ):
        return "torch"
    return "mkl" if mkl_available() else "torch"


# ---------------------------------------------------------------- torch's sampler on a thread pool
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_CHUNK_MIN = 1 << 16


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()))
        return _POOL


def _forget_pool_in_child() -> None:
    # A forked child (DataLoader workers, multiprocessing) inherits the executor object but not
    # its threads: it must start its own, or submitted draws would wait forever.
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def fill_normal_(out: Tensor, generators: Sequence[torch.Generator], sigma: float = 1.0) -> Tensor:
    """Fill the contiguous tensor ``out`` with N(0, sigma^2), in ``len(generators)`` chunks, each
    from its own generator; returns ``out``.

    The result depends only on the generators' states, the chunk count and the backend
    (:func:`normal_sampler`), never on thread counts. With oneMKL each chunk is one Philox stream
    keyed by 64 bits drawn from its generator; with torch each chunk is ``normal_`` on its
    generator (CPU chunks drawn concurrently, since torch releases the GIL; on other devices one
    generator draws it all).

    Examples:
        >>> gens = [torch.Generator().manual_seed(i) for i in range(2)]
        >>> fill_normal_(torch.empty(3, 4), gens).shape
        torch.Size([3, 4])
    """
    if not out.is_contiguous():
        raise ValueError("fill_normal_: out must be contiguous")
    if normal_sampler(out.device, out.dtype) == "mkl":
        mkl = _load_mkl()
        assert mkl is not None
        # Serial on this thread: at 0.7 ns per draw a thread pool only adds contention with
        # torch's OpenMP workers, which spin for a while after each parallel region.
        for part, gen in zip(out.view(-1).chunk(len(generators)), generators):
            key = int(torch.empty((), dtype=torch.int64).random_(generator=gen))
            mkl.fill(part, key, sigma)
        return out
    n_chunks = len(generators)
    if out.device.type != "cpu" or out.numel() < _CHUNK_MIN:
        n_chunks = 1
    if n_chunks == 1:
        return out.normal_(0.0, sigma, generator=generators[0])
    # Only the (serial) sampler runs in the worker threads: an elementwise op there would start
    # an OpenMP team per thread and oversubscribe the cores for later ops.
    parts = out.view(-1).chunk(n_chunks)
    futures = [
        _pool().submit(part.normal_, 0.0, sigma, generator=gen)
        for part, gen in zip(parts, generators)
    ]
    for f in futures:
        f.result()
    return out


_env = os.environ.get("AIMC_NORMAL_SAMPLER")
if _env:
    if _env not in SAMPLERS:
        raise ValueError(f"AIMC_NORMAL_SAMPLER must be one of {SAMPLERS}, got {_env!r}")
    _choice = _env
