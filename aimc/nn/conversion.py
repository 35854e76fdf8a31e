"""An analog layer from its torch layer and back: ``from_digital`` / ``to_digital``.

One implementation for every analog layer, single- or multi-matrix: the analog layer is built
with the torch layer's hyper-parameters (:meth:`TorchConversion._torch_ctor`: positional in
torch's order for the single-matrix layers, torch's keywords for the multi-matrix ones), takes
its parameters by their torch names and is programmed once with them (construction inside
:func:`deferred_programming` programs nothing). ``to_digital`` builds the plain torch layer
with the digital master parameters. Both keep the train/eval mode."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Optional

import torch
from torch import Tensor, nn

from aimc.config import AnalogConfig
from aimc.tile.stage import Stage

__all__ = [
    "DigitalConversion",
    "TorchConversion",
    "copy_torch_parameters",
    "torch_parameter_names",
    "deferred_programming",
]

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


def _attribute(module: nn.Module, name: str):
    for part in name.split("."):
        module = getattr(module, part, None)
    return module


def torch_parameter_names(layer: nn.Module) -> list[str]:
    """The names of ``layer``'s parameters that its torch layer holds too: all but those of
    its pipeline stages (a learned input range); a multi-matrix layer's under torch's names."""
    own = {id(p) for m in layer.modules() if isinstance(m, Stage) for p in m.parameters()}
    return [name for name, p in layer.named_parameters() if id(p) not in own]


@torch.no_grad()
def copy_torch_parameters(src: nn.Module, dst: nn.Module, names: list[str]) -> None:
    """Copy the tensors ``names`` (parameters, on the torch side also any tensor attribute: a
    pruned layer's ``weight``) from ``src`` into ``dst``.

    Raises:
        ValueError: ``src`` lacks one of them.
    """
    for name in names:
        source = _attribute(src, name)
        if not isinstance(source, Tensor):
            raise ValueError(
                f"{type(src).__name__} has no parameter {name!r} for {type(dst).__name__}"
            )
        _attribute(dst, name).copy_(source)


def _like(module: nn.Module) -> Tensor:
    """The tensor whose device and dtype a conversion of ``module`` takes."""
    w = getattr(module, "weight", None)
    return w if isinstance(w, Tensor) else next(module.parameters())


class TorchConversion:
    """An analog layer from its torch layer ``_FLOAT_MODULE`` and back, for every analog layer
    (single- and multi-matrix): the check of the torch module, ``from_digital`` /
    ``to_digital`` and torch.ao's names for them, ``from_float`` / ``to_float``.

    A layer says how the torch layer is constructed (:meth:`_torch_ctor`) and how a seed
    reaches its tiles without programming them (:meth:`_seed_tiles`); it has ``program``.
    """

    _FLOAT_MODULE: type[nn.Module]

    @classmethod
    def _check_float_module(cls, module: nn.Module) -> None:
        if not isinstance(module, cls._FLOAT_MODULE):
            raise TypeError(
                f"{cls.__name__}.from_digital expects an {cls._FLOAT_MODULE.__name__}, "
                f"got {type(module).__name__}"
            )

    @staticmethod
    def _torch_ctor(module: nn.Module) -> tuple[tuple, dict[str, Any]]:
        """The constructor arguments ``(args, kwargs)`` (torch order and names) describing
        ``module`` (a torch layer or its analog version)."""
        raise NotImplementedError

    def _seed_tiles(self, seed: int) -> None:
        """Make ``seed`` the seed of the next programming (``from_digital(program=False)``)."""
        raise NotImplementedError

    @classmethod
    def from_digital(
        cls,
        module: nn.Module,
        config: Optional[AnalogConfig] = None,
        seed: Optional[int] = None,
        program: bool = True,
    ):
        """An analog layer with ``module``'s hyper-parameters, parameters and train/eval mode,
        programmed with a device draw from ``seed`` (default: ``config.seed``; a multi-matrix
        layer mixes it with each tile layer's name); ``program=False`` keeps the seed and
        defers the programming to the first analog forward."""
        cls._check_float_module(module)
        w = _like(module)
        args, kwargs = cls._torch_ctor(module)
        with deferred_programming():  # program once, with the real weights
            layer = cls(*args, **kwargs, config=config, device=w.device, dtype=w.dtype)
        copy_torch_parameters(module, layer, torch_parameter_names(layer))
        if program:
            layer.program(seed)
        elif seed is not None:
            layer._seed_tiles(seed)
        layer.train(module.training)
        return layer

    def to_digital(self) -> nn.Module:
        """The plain torch layer with this layer's hyper-parameters, digital master parameters
        and train/eval mode."""
        w = _like(self)
        args, kwargs = self._torch_ctor(self)
        module = self._FLOAT_MODULE(*args, **kwargs, device=w.device, dtype=w.dtype)
        copy_torch_parameters(self, module, [name for name, _ in module.named_parameters()])
        return module.train(self.training)

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
    """The conversion of a single-matrix layer (a part of
    :class:`~aimc.nn.base.AnalogLayerBase`): its constructor takes the torch layer's
    positional arguments (:meth:`_ctor_args`), and its crossbar holds the seed."""

    @staticmethod
    def _ctor_args(module: nn.Module) -> tuple:
        """The positional constructor arguments (torch order) describing ``module``."""
        raise NotImplementedError

    @classmethod
    def _torch_ctor(cls, module: nn.Module) -> tuple[tuple, dict[str, Any]]:
        return cls._ctor_args(module), {}

    def _seed_tiles(self, seed: int) -> None:
        self.crossbar.seed.fill_(seed)
