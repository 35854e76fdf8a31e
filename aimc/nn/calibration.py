"""Calibration of a layer's converter ranges, and the record of which weights they belong to.

``aimc.calibrate`` runs :func:`calibrate_layers`: two passes over the user's batches, the first
switching the DAC observers on (inputs of the digital op), the second the ADC observers
(partial sums through an ideal ADC with those DAC ranges); each pass loads what its observers
saw into the ranges. Ranges set from data follow the weights: :class:`CalibratedRanges` keeps
the fingerprint of the weights they were set for and warns once when the layer is reprogrammed
with other weights.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from aimc.nn.base import AnalogLayerBase

__all__ = ["calibrate_layers", "CalibratedRanges"]


@contextlib.contextmanager
def _observing(layers: Sequence[AnalogLayerBase], stage: str):
    """Switch the observer of each layer's ``stage`` (``"dac"``/``"adc"``) on, in eval mode;
    load what it saw into the stage's range when the block ends without an error."""
    states = [(layer, layer.training) for layer in layers]
    try:
        for layer in layers:
            getattr(layer, stage).enable_observer()
            layer.eval()
        yield
        for layer in layers:
            getattr(layer, stage).load_observed()
            layer._mark_calibrated()
    finally:
        for layer, training in states:
            getattr(layer, stage).disable_observer()
            layer.train(training)


@torch.no_grad()
def calibrate_layers(layers: Sequence[AnalogLayerBase], run: Callable[[], object]) -> None:
    """The two calibration passes of ``aimc.calibrate`` over whatever ``run()`` feeds
    ``layers`` (every call of a layer during ``run`` counts): the DAC observers record the
    inputs of the digital op, then the ADC observers the partial sums (ideal ADC) with those
    DAC ranges. Reads after it start afresh."""
    with _observing(layers, "dac"):
        run()
    with _observing(layers, "adc"):
        run()
    for layer in layers:
        layer.crossbar.forget_reads()


class CalibratedRanges:
    """The weights a layer's data-set converter ranges belong to (a part of
    :class:`~aimc.nn.base.AnalogLayerBase`; uses its ``dac``, ``adc``, ``crossbar`` and
    ``layer_name``)."""

    def _weight_dependent_ranges(self) -> list[str]:
        """The converter ranges that were set from data (they follow the weights)."""
        out = []
        if getattr(self.dac, "config", None) is not None and self.dac.config.range_mode == (
            "calibrated"
        ):
            if self.dac.scalar("range", float) > 0:
                out.append("DAC input range")
        adc_cfg = getattr(self.adc, "config", None)
        if adc_cfg is not None and adc_cfg.range_mode == "calibrated":
            if self.adc.scalar("full_scale", lambda b: float(b.min())) > 0:
                out.append("ADC full scale")
        return out

    def _mark_calibrated(self) -> None:
        """The ranges now belong to the weights on the tiles."""
        self.__dict__["_ranges_for"] = self.crossbar.fingerprint.clone()

    def _check_ranges(self) -> None:
        held = self.__dict__.get("_ranges_for")
        if held is None or torch.equal(held, self.crossbar.fingerprint):
            return
        ranges = self._weight_dependent_ranges()
        if ranges:
            warnings.warn(
                f"{self.layer_name}: the weights changed since aimc.calibrate set its "
                f"{' and '.join(ranges)}; they were set for the old weights (stale, outputs "
                "may clip or lose resolution). Call aimc.calibrate(model, batches) again after "
                "changing the weights",
                UserWarning,
                stacklevel=4,
            )
        self._mark_calibrated()  # warned once for this change
