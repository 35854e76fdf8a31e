"""Layers built from several weight matrices, each on its own ``AnalogLinear`` tiles.

Attention and recurrent layers hold more than one weight matrix, and torch computes them with
functional kernels that read the raw parameters. Their analog versions keep torch's parameters
(same names, same objects, so a digital ``state_dict`` loads and optimizers see torch's names)
and give each matrix its own tile layer, an :class:`~aimc.nn.AnalogLinear` whose ``weight`` (and
``bias``) *is* that parameter. Everything else (gates, softmax, state updates) stays digital.

The tile layers are ordinary analog layers: :func:`aimc.analog_layers`, :func:`aimc.program`,
:func:`aimc.drift`, :func:`aimc.calibrate`, the mapper and the cost model see each of them under
its qualified name (``encoder.layers.0.self_attn.in_proj``, ``lstm.hh_l0``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Optional

import torch
from torch import Tensor, nn

from aimc.config import AnalogConfig
from aimc.nn.base import (
    _DEFER_PROGRAM,
    AnalogLayerBase,
    calibrate_layers,
    deferred_programming,
    name_seed,
)
from aimc.nn.conversion import TorchConversion
from aimc.nn.linear import AnalogLinear

__all__ = ["AnalogContainer"]

log = logging.getLogger(__name__)


def _forgive_alias_keys(module: nn.Module, incompatible_keys: Any) -> None:
    """``load_state_dict`` post-hook: a tile layer's ``weight``/``bias`` is the same parameter as
    a torch-named one (``in_proj.weight`` is ``in_proj_weight``); when the torch name was loaded,
    the alias is not missing."""
    missing = incompatible_keys.missing_keys
    for alias, torch_name in module._alias_keys:
        for key in list(missing):
            if key != alias and not key.endswith("." + alias):
                continue
            prefix = key[: len(key) - len(alias)]
            if prefix + torch_name not in missing:
                missing.remove(key)


class AnalogContainer(TorchConversion, nn.Module):
    """Base of the analog layers made of tile layers (not used directly).

    Subclasses call :meth:`_init_tiles` after torch's ``__init__`` with ``(tile name, weight,
    bias)`` triples; they say which torch module they replace (``_FLOAT_MODULE``) and its
    constructor arguments (``_ctor_kwargs``).
    """

    _FLOAT_MODULE: type[nn.Module]
    config: AnalogConfig

    # ------------------------------------------------------------------ construction
    def _init_tiles(
        self, config: Optional[AnalogConfig], tiles: list[tuple[str, Tensor, Optional[Tensor]]]
    ) -> None:
        cfg = AnalogLayerBase._resolve_config(config)
        self.config = cfg
        aliases = []
        for name, weight, bias in tiles:
            out_features, in_features = weight.shape
            with deferred_programming():  # programmed below, once the shared weights are in
                tile = AnalogLinear(
                    in_features,
                    out_features,
                    bias=bias is not None,
                    config=cfg,
                    device=weight.device,
                    dtype=weight.dtype,
                )
            for attr, param in (("weight", weight), ("bias", bias)):
                if param is None:
                    continue
                torch_name = self._param_name(param)
                if torch_name != f"{name}.{attr}":
                    aliases.append((f"{name}.{attr}", torch_name))
                setattr(tile, attr, param)
            tile.crossbar.seed.fill_(name_seed(cfg.seed, name))
            self._modules.pop(name, None)  # a replaced torch child: keep the tiles in order
            self.add_module(name, tile)
        self._alias_keys = tuple(aliases)
        self.register_load_state_dict_post_hook(_forgive_alias_keys)
        self.layer_name = type(self).__name__
        if not _DEFER_PROGRAM.get():  # from_digital programs once the real weights are in
            for _, tile in self.tile_layers():
                tile.program()

    def _param_name(self, param: Tensor) -> str:
        for name, p in self.named_parameters(remove_duplicate=False):
            if p is param:
                return name
        raise ValueError(f"{type(self).__name__}: a tile weight must be one of its parameters")

    @property
    def layer_name(self) -> str:
        return self.__dict__.get("_layer_name", type(self).__name__)

    @layer_name.setter
    def layer_name(self, name: str) -> None:
        self.__dict__["_layer_name"] = name
        for child, tile in self.tile_layers():
            tile.layer_name = f"{name}.{child}"

    def tile_layers(self) -> Iterator[tuple[str, AnalogLinear]]:
        """``(name, layer)`` of the tile layers this layer owns, in registration order."""
        for name, module in self.named_children():
            if isinstance(module, AnalogLayerBase):
                yield name, module

    # ------------------------------------------------------------------ conversion
    @staticmethod
    def _ctor_kwargs(module: nn.Module) -> dict[str, Any]:
        """The constructor keyword arguments (torch names) describing ``module``."""
        raise NotImplementedError

    @classmethod
    def _torch_ctor(cls, module: nn.Module) -> tuple[tuple, dict[str, Any]]:
        return (), cls._ctor_kwargs(module)

    def _seed_tiles(self, seed: int) -> None:
        for name, tile in self.tile_layers():
            tile.crossbar.seed.fill_(name_seed(seed, name))

    # ------------------------------------------------------------------ the tiles
    def program(self, seed: Optional[int] = None) -> None:
        """Program every tile layer (a new device draw; ``seed`` mixed with each tile's name)."""
        for name, tile in self.tile_layers():
            tile.program(None if seed is None else name_seed(seed, name))

    def drift_to(self, t_s: float) -> None:
        """Read every tile layer ``t_s`` seconds after programming from now on."""
        for _, tile in self.tile_layers():
            tile.drift_to(t_s)

    @contextlib.contextmanager
    def hold_noise(self) -> Iterator[None]:
        """Inside the block every tile layer trains with one weight-noise draw (see
        :meth:`~aimc.tile.train_noise.TrainNoise.hold_noise`): physically each matrix is one
        programmed array, read at every call. The recurrent layers hold it over each forward;
        wrap a loop over an analog cell's time steps in it for the same.

        Examples:
            >>> import torch, aimc
            >>> cfg = aimc.AnalogConfig(training=aimc.TrainingConfig(
            ...     hardware_aware=True, weight_noise="gaussian", weight_noise_std=0.1))
            >>> cell = aimc.nn.AnalogGRUCell(4, 8, config=cfg).train()
            >>> x, h = torch.randn(5, 2, 4), torch.zeros(2, 8)
            >>> with cell.hold_noise():
            ...     for x_t in x:
            ...         h = cell(x_t, h)
        """
        with contextlib.ExitStack() as stack:
            for _, tile in self.tile_layers():
                stack.enter_context(tile.crossbar.hold_noise())
            yield

    def _training_noise_held(self) -> contextlib.AbstractContextManager:
        """:meth:`hold_noise` for a training forward (eval reads draw no training noise)."""
        return self.hold_noise() if self.training else contextlib.nullcontext()

    def _runs_digital(self) -> bool:
        """Training without hardware-aware tiles: torch's own forward (identical numerics)."""
        if not self.training:
            return False
        tiles = [tile for _, tile in self.tile_layers()]
        if any(t.observing for t in tiles):
            return False
        return not any(t.config.training.hardware_aware for t in tiles)

    def _auto_calibrate(self, run: Callable[[], object]) -> None:
        """Set the unset converter ranges of the tile layers from one whole forward (``run``).

        A tile layer of a recurrent or attention layer is called several times per forward
        (every time step; once per distinct attention input); an uncalibrated analog layer
        fixes its ranges from the first batch it sees, which here would be one time step
        (often the all-zero initial state). So the first forward of this layer calibrates
        all of its uncalibrated tile layers over every call, as :func:`aimc.calibrate` does.
        """
        tiles = [tile for _, tile in self.tile_layers() if tile.uncalibrated]
        if not tiles or any("forward" in vars(tile) for tile in tiles):
            # nothing to do, or stand-in forwards (the cost model's digital twins count events
            # without touching the model): calibrating would only repeat the forward
            return
        with torch.no_grad():
            calibrate_layers(tiles, run)
        log.info("%s: converter ranges auto-calibrated on the first forward", self.layer_name)

    def _analog_repr(self) -> str:
        c = self.config
        dac = "ideal" if c.dac.bits is None else f"{c.dac.bits}b"
        adc = "ideal" if c.adc.bits is None else f"{c.adc.bits}b"
        names = ", ".join(name for name, _ in self.tile_layers())
        return f"tile_layers=[{names}], device={c.device.describe()}, dac={dac}, adc={adc}"
