"""An analog layer from its torch layer and back: ``from_digital`` / ``to_digital``.

The analog layer is built with the torch layer's hyper-parameters (its constructor takes them
in torch's order, :meth:`DigitalConversion._ctor_args`), takes its weights and is programmed
once with them (construction inside :func:`deferred_programming` programs nothing).
``to_digital`` builds the plain torch layer with the digital master weights.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Optional

import torch
from torch import nn

from aimc.config import AnalogConfig

__all__ = ["DigitalConversion", "TorchConversion", "deferred_programming"]

_DEFER_PROGRAM = contextvars.ContextVar("aimc_defer_program", default=False)


@contextlib.contextmanager
def deferred_programming():
    """Construct analog layers without programming them (``from_digital`` programs once the
    real weights are in)."""
    token = _DEFER_PROGRAM.set(True)
    try:
        yield
    finally:
        _DEFER_PROGRAM.reset(token)


@torch.no_grad()
def _copy_parameters(src: nn.Module, dst: nn.Module) -> None:
    dst.weight.copy_(src.weight)
    if src.bias is not None:
        dst.bias.copy_(src.bias)


class TorchConversion:
    """What every analog layer's conversion shares: the check of the torch module it is given
    and torch.ao's names ``from_float`` / ``to_float`` of ``from_digital`` / ``to_digital``."""

    _FLOAT_MODULE: type[nn.Module]

    @classmethod
    def _check_float_module(cls, module: nn.Module) -> None:
        if not isinstance(module, cls._FLOAT_MODULE):
            raise TypeError(
                f"{cls.__name__}.from_digital expects an {cls._FLOAT_MODULE.__name__}, "
                f"got {type(module).__name__}"
            )

    @classmethod
    def from_float(
        cls, module: nn.Module, config: Optional[AnalogConfig] = None, seed: Optional[int] = None
    ):
        """Alias of :meth:`from_digital` (the torch.ao name)."""
        return cls.from_digital(module, config, seed)

    def to_float(self) -> nn.Module:
        """Alias of :meth:`to_digital` (the torch.ao name)."""
        return self.to_digital()


class DigitalConversion(TorchConversion):
    """Conversion between an analog layer and its torch layer ``_FLOAT_MODULE`` (a part of
    :class:`~aimc.nn.base.AnalogLayerBase`; uses its ``weight``, ``bias``, ``program`` and
    ``crossbar``)."""

    @staticmethod
    def _ctor_args(module: nn.Module) -> tuple:
        """The positional constructor arguments (torch order) describing ``module``."""
        raise NotImplementedError

    @classmethod
    def from_digital(
        cls,
        module: nn.Module,
        config: Optional[AnalogConfig] = None,
        seed: Optional[int] = None,
        program: bool = True,
    ):
        """An analog layer with ``module``'s hyper-parameters and weights, programmed with a
        device draw from ``seed`` (default: ``config.seed``); ``program=False`` defers the
        programming to the first analog forward."""
        cls._check_float_module(module)
        w = module.weight
        with deferred_programming():  # program once, with the real weights
            layer = cls(*cls._ctor_args(module), config, device=w.device, dtype=w.dtype)
        _copy_parameters(module, layer)
        if program:
            layer.program(seed)
        elif seed is not None:
            layer.crossbar.seed.fill_(seed)
        layer.train(module.training)
        return layer

    def to_digital(self) -> nn.Module:
        """The plain torch layer with this layer's hyper-parameters and digital master weights."""
        w = self.weight
        module = self._FLOAT_MODULE(*self._ctor_args(self), device=w.device, dtype=w.dtype)
        _copy_parameters(self, module)
        return module.train(self.training)
