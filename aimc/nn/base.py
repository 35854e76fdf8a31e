"""Shared sequencing of the analog layers: x → dac → crossbar → adc → accumulate → y.

A layer owns its digital master weights (``weight``, ``bias``: real parameters) and composes
four stage modules (:mod:`aimc.tile`), each owning its state: ``dac`` (input range, observer),
``crossbar`` (programmed device state, weight scales, read time, seed), ``adc`` (full scale,
noise, observer, saturation counter) and ``accumulate`` (shift-add, row-tile sum, rescale).
Subclasses only say how their input becomes tile rows (``_tiles_forward``) and how their weight
becomes a ``[groups, rows, cols]`` matrix (``weight_matrix``).

Three parts of the base live in their own files: :mod:`aimc.nn.conversion` (``from_digital`` /
``to_digital``), :mod:`aimc.nn.calibration` (converter calibration and the weights its ranges
belong to) and :mod:`aimc.nn.compensation` (the reference reads of drift compensation).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn

from aimc.config import AnalogConfig
from aimc.nn.calibration import CalibratedRanges, calibrate_layers
from aimc.nn.compensation import DriftCompensation
from aimc.nn.conversion import _DEFER_PROGRAM, DigitalConversion, deferred_programming
from aimc.tile.accumulate import Accumulate, ReadoutWeights
from aimc.tile.adc import ADC, IdentityADC
from aimc.tile.checkpoint import rename_flat_keys
from aimc.tile.crossbar import Crossbar
from aimc.tile.dac import DAC, Drive, IdentityDAC
from aimc.tile.geometry import TileGeometry
from aimc.tile.readout import Convert, batched_read
from aimc.tile.seeds import mix_seed, name_seed

__all__ = [
    "AnalogLayerBase",
    "calibrate_layers",
    "deferred_programming",
    "mix_seed",
    "name_seed",
]

log = logging.getLogger(__name__)

_STAGES = ("dac", "crossbar", "adc", "accumulate")


class AnalogLayerBase(DigitalConversion, CalibratedRanges, DriftCompensation, nn.Module):
    """Base of the analog layers (not used directly)."""

    config: AnalogConfig
    geometry: TileGeometry
    dac: DAC | IdentityDAC
    crossbar: Crossbar
    adc: ADC | IdentityADC
    accumulate: Accumulate

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _resolve_config(config: Optional[AnalogConfig]) -> AnalogConfig:
        if config is None:
            return AnalogConfig()
        if not isinstance(config, AnalogConfig):
            raise TypeError(f"config must be an aimc.AnalogConfig, got {type(config).__name__}")
        return config

    def _init_analog(self, config: AnalogConfig, geometry: TileGeometry) -> None:
        """Build the stages of ``config`` on ``geometry`` and program the current weights."""
        self.config, self.geometry = config, geometry
        kw = dict(device=self.weight.device, dtype=self.weight.dtype)
        adc_needed = config.adc.bits is not None or config.adc.noise > 0
        dac_needed = config.dac.bits is not None or adc_needed
        learn = config.training.learn_input_range
        self.dac = DAC(config.dac, learn_range=learn, **kw) if dac_needed else IdentityDAC()
        self.crossbar = Crossbar(config, geometry, **kw)
        per_row = 1.0 if self.crossbar.differential else 1.0 + self.crossbar.g_offset
        if adc_needed:
            pr = config.tile.parallel_rows
            self.adc = ADC(config.adc, geometry, max_row_current=per_row, parallel_rows=pr, **kw)
        else:
            self.adc = IdentityADC()
        m = config.mapping
        self.accumulate = Accumulate(m.encoding, m.weight_bits, m.slices, self.crossbar.g_offset)
        self.layer_name = type(self).__name__
        if not _DEFER_PROGRAM.get():
            self.program()

    @property
    def layer_name(self) -> str:
        """The layer's name in messages (its qualified name once converted)."""
        return self.__dict__.get("_layer_name", type(self).__name__)

    @layer_name.setter
    def layer_name(self, name: str) -> None:
        self.__dict__["_layer_name"] = name
        for stage in _STAGES:
            if stage in self._modules:
                self._modules[stage].layer_name = name

    # ------------------------------------------------------------------ what subclasses say
    def weight_matrix(self, weight: Optional[Tensor] = None) -> Tensor:
        """The weight as ``[groups, in_rows, out_cols]`` (rows are inputs)."""
        raise NotImplementedError

    def _digital_forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _tiles_forward(self, xq: Tensor, w: Tensor, scale: Tensor) -> Tensor:
        """Accumulated outputs of tiles ``w`` (weight scales ``scale``) for normalized row
        drives ``xq`` (bit planes stacked on the batch axis), before the range rescale."""
        raise NotImplementedError

    def _read_tiles(self, drive: Drive, w: Tensor, scale: Tensor) -> Tensor:
        """The tiles' accumulated outputs for ``drive`` (input cycles shift-added, before the
        range rescale): the batched read-out where it applies, else stage by stage."""
        y = None
        if not self.training and not (torch.is_grad_enabled() and drive.x.requires_grad):
            y = batched_read(self.adc, lambda cv, lsbs: self._tiles_batched(drive, w, cv, lsbs))
        if y is None:  # the general path
            y = self.accumulate.planes(self._tiles_forward(drive.x, w, scale), drive.plane_weights)
        return y

    def _tiles_batched(self, drive: Drive, w: Tensor, convert: Convert, lsbs: list[float]):
        """The batched read-out (:mod:`aimc.tile.readout`) of ``drive`` on tiles ``w``: what
        ``_tiles_forward`` and the plane shift-add give, or ``None`` where it does not apply."""
        return None

    def _readout_weights(self, lsbs: list[float], reads: int = 1) -> ReadoutWeights:
        """The accumulation weights of this forward's batched read-out."""
        cycles = self.dac.cycle_weights()
        return self.accumulate.readout_weights(lsbs, cycles, self.crossbar.weight_scale, reads)

    def _place_columns(self, comp: Tensor, y: Tensor) -> Tensor:
        """A per-column factor ``[groups, cols]`` shaped to broadcast against outputs ``y``."""
        raise NotImplementedError

    def _add_bias(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def _rescale_bias(self, y: Tensor, x_range, comp, accumulate: Accumulate) -> Tensor:
        """``y`` times the DAC range and the drift compensation (``accumulate.rescale``), plus
        the bias."""
        return self._add_bias(accumulate.rescale(y, x_range, comp))

    def mvm_count(self, x: Tensor) -> int:
        """Matrix-vector products (input vectors per group) one forward of ``x`` runs."""
        raise NotImplementedError

    def _rows_of(self, xn: Tensor) -> Tensor:
        """Per-MVM tile-row inputs ``[M, groups, in_rows]`` of normalized inputs ``xn``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ programming and time
    @property
    def t_s(self) -> float:
        """Time since programming (s) at which the layer is read."""
        return self.crossbar.t_s

    @property
    def programmed(self) -> bool:
        return self.crossbar.programmed

    def program(self, seed: Optional[int] = None) -> None:
        """Program the current weights onto the tiles (a new device draw), and read at t = 0.

        Args:
            seed: seed of this programming's draws (and of later read noise); default: the
                layer's current seed.
        """
        if not bool(torch.isfinite(self.weight).all()):
            raise ValueError(f"{self.layer_name}.weight contains NaN or inf; cannot program it")
        w = self.weight.detach()
        self.crossbar.program(w, self.weight_matrix(w), seed)

    def drift_to(self, t_s: float) -> None:
        """Read the layer ``t_s`` seconds after programming from now on."""
        self.crossbar.drift_to(t_s)

    def device_state(self) -> dict[str, Tensor]:
        """The programmed per-device state (``"g"``: conductances in µS, ...), tile layout
        ``[pair, S, groups, row tiles, rows, cols]``."""
        return self.crossbar.device_state()

    def _ensure_programmed(self) -> None:
        """Reprogram when the weights changed since programming (keeping the read time), and
        warn once when converter ranges calibrated for other weights are now stale."""
        if self.crossbar.holds(self.weight):
            return
        t = self.crossbar.t_s
        log.debug("%s: weights changed since programming; reprogramming", self.layer_name)
        self.program()
        if t:
            self.drift_to(t)
        self._check_ranges()

    # ------------------------------------------------------------------ forward
    @property
    def observing(self) -> bool:
        """Whether a converter's calibration observer is on (``aimc.calibrate`` is running)."""
        return self.dac.observing or self.adc.observing

    @property
    def uncalibrated(self) -> bool:
        """Whether a calibrated-range converter has no range yet (set by ``aimc.calibrate``,
        else from the first batch)."""
        return self.dac.uncalibrated or self.adc.uncalibrated

    def _check_finite(self, x: Tensor) -> None:
        """Refuse NaN or inf inputs. On the CPU a sum is one cheap pass and only a non-finite
        sum needs the elementwise check; on an accelerator the check is asynchronous (a device
        assertion), so a forward never waits for the device."""
        xd = x.detach()
        if xd.device.type != "cpu":
            msg = f"{self.layer_name}: input contains NaN or inf"
            torch._assert_async(torch.isfinite(xd).all(), msg)
            return
        if not bool(torch.isfinite(xd.sum())) and not bool(torch.isfinite(xd).all()):
            raise ValueError(f"{self.layer_name}: input contains NaN or inf")

    def forward(self, x: Tensor) -> Tensor:
        """Forward of a batched input (subclasses reshape other ranks around it)."""
        if torch.jit.is_tracing():
            raise RuntimeError(
                f"{self.layer_name}: torch.jit cannot record an analog layer (its forward keeps "
                "Python-side state: the programmed reads, converter ranges and noise streams); "
                "use torch.compile(model) instead"
            )
        self._check_dtype(x)
        stages = self._modules  # the stage modules, without nn.Module's attribute lookup
        dac, crossbar, adc = stages["dac"], stages["crossbar"], stages["adc"]
        training = self.training
        if training and not self.config.training.hardware_aware and not self.observing:
            return self._digital_forward(x)
        self._check_finite(x)
        if dac.observing:  # calibration records input statistics of the digital op
            dac.observe(x)
            return self._digital_forward(x)
        if training:
            w, scale, comp = crossbar.train_read(self.weight_matrix(), self.train_drift_gain)
        else:
            with torch.no_grad():
                self._ensure_programmed()
                crossbar.begin_draw()
                t = crossbar.t_s
                w = crossbar.read(t)
                # an ADC still without a range takes it from this batch first: the reference
                # read of the compensation follows
                pending = adc.uncalibrated and not adc.observing
                comp = None if pending else self._compensation(t)
            scale = crossbar.weight_scale
        uncalibrated = not training and "_ranges_for" not in self.__dict__
        drive = dac(x)
        y = self._read_tiles(drive, w, scale)
        if not training and pending:
            with torch.no_grad():
                comp = self._compensation(t)
        if isinstance(comp, Tensor):
            comp = self._place_columns(comp, y)
        y = self._rescale_bias(y, drive.range, comp, stages["accumulate"])
        if uncalibrated and self._weight_dependent_ranges():  # set from this first batch
            self._mark_calibrated()
        if not training and y.requires_grad and self.weight.requires_grad:
            y.register_hook(self._warn_eval_backward)
        return y

    def _warn_eval_backward(self, grad: Tensor) -> None:
        warnings.warn(
            f"{self.layer_name}: backward through an eval forward: the tiles are read as "
            "programmed, so the weight gets no gradient (weight.grad stays None) and only the "
            "input does. Train in model.train() (TrainingConfig(hardware_aware=True) for the "
            "analog forward)",
            UserWarning,
            stacklevel=2,
        )

    def _check_dtype(self, x: Tensor) -> None:
        """Refuse an input torch's layer refuses: a dtype other than the weight's."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.layer_name}: input must be a Tensor, got {type(x).__name__}")
        want = self.weight.dtype
        if x.dtype != want and not torch.is_autocast_enabled(x.device.type):
            raise RuntimeError(
                f"{self.layer_name}: input dtype {x.dtype} does not match the layer's weight "
                f"dtype {want} (torch's {self._FLOAT_MODULE.__name__} refuses it too); convert "
                f"the input (x.to({want})) or the model (model.to({x.dtype}))"
            )

    def _read_out(
        self,
        p: Tensor,
        dims: dict[str, int],
        scale: Tensor,
        xsum: Optional[Tensor] = None,
        *,
        in_lsb: bool = False,
        observed: bool = False,
        out: Optional[Tensor] = None,
        gens: Optional[Sequence[torch.Generator]] = None,
    ) -> Tensor:
        """Partial sums ``p`` through the ADC and the accumulation (see :class:`Accumulate`);
        ``gens``: the ADC's noise streams when the caller has them already."""
        if gens is None:
            gens = self._adc_generators()
        kw = dict(in_lsb=in_lsb, observed=observed, defer_lsb=xsum is None)
        q, lsb = self.adc(p, dims["s"], gens, **kw)
        return self.accumulate(q, lsb, dims, scale, xsum, out)

    def _adc_generators(self) -> Sequence[torch.Generator]:
        """The ``"adc"`` streams of this read (none when the ADC draws no output noise: making
        the generators is per-read work worth skipping in a time loop)."""
        cfg = getattr(self.adc, "config", None)
        return self.crossbar.generators("adc") if cfg is not None and cfg.noise > 0 else ()

    # ------------------------------------------------------------------ cost-model view
    @torch.no_grad()
    def normalized_input(self, x: Tensor) -> Tensor:
        """The DAC's normalized, quantized input (values in ``[-1, 1]``), before bit planes."""
        return self.dac.normalize(x)

    @torch.no_grad()
    def row_activity(self, x: Tensor) -> Tensor:
        """Sum over the MVMs of ``x`` of ``|normalized input|`` per row: ``[groups, in_rows]``."""
        return self._rows_of(self.normalized_input(x)).abs().sum(0)

    @torch.no_grad()
    def row_conductance_sums(self) -> Tensor:
        """Sum over each row's devices (all columns, pairs, slices) of the target G (µS) of
        the current weights: ``[groups, in_rows]``. Needs no programming (cost model)."""
        w = self.weight.detach()
        return self.crossbar.row_conductance_sums(self.weight_matrix(w))

    # ------------------------------------------------------------------ state dict
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        rename_flat_keys(state_dict, prefix, self)
        self.__dict__.pop("_ranges_for", None)  # loaded ranges belong to the loaded weights
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
