"""TensorBoard adapter: the only module of the project that imports ``torch.utils.tensorboard``.

:class:`TBLogger` writes one run's event file with a fixed tag scheme, so that dashboards of
different runs line up:

====================================  =======================================================
tag                                   value
====================================  =======================================================
``train/loss``, ``train/accuracy``    per epoch of digital training (step: epoch)
``finetune/loss``, ...                per epoch of hardware-aware fine-tuning
``accuracy/digital``                  test accuracy of the digital model
``accuracy/t=1h``                     analog test accuracy (mean over device draws) 1 h after
                                      programming; ``accuracy_std/t=1h`` its spread
``accuracy/vs_time``                  the same means with step = t in seconds
``energy_pj/total``                   energy per inference (pJ); ``energy_pj/layer.fc1`` per
                                      layer, ``energy_pj/component.adc`` per component
``latency_ns/total``, ``area_mm2/total``, ``tops_per_w/total``, ``energy_pj/digital_baseline``
``conductance_us/<layer>``            histogram of programmed conductances (µS)
``drift_exponent/<layer>``            histogram of per-device drift exponents
====================================  =======================================================

Example::

    from aimc.logging import TBLogger
    with TBLogger("runs/demo") as tb:
        tb.log_training(epoch=0, loss=0.5, accuracy=0.9)
        tb.log_accuracy([1.0, 3600.0], mean=[0.9, 0.88], std=[0.0, 0.01])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch

try:
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as _hparams_summary
except ImportError as exc:  # TensorBoard is part of the application extra, not the library
    raise ImportError(
        "aimc.logging needs TensorBoard; install it with pip install 'aimc[experiments]' "
        "(or pip install tensorboard)"
    ) from exc

__all__ = ["TBLogger", "time_tag"]

_UNITS = (("y", 31536000.0), ("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0))


def time_tag(t_s: float) -> str:
    """A short label of a time after programming: ``1s``, ``1h``, ``1d``, ``1y``, ``2.5h``.

    The largest unit in which ``t_s`` is at least 1 is chosen; the number keeps 3 significant
    digits.

    Examples:
        >>> [time_tag(t) for t in (0.0, 1.0, 90.0, 3600.0, 86400.0, 31536000.0)]
        ['0s', '1s', '1.5min', '1h', '1d', '1y']
        >>> time_tag(0.025)
        '0.025s'
    """
    t_s = float(t_s)
    if not math.isfinite(t_s) or t_s < 0:
        raise ValueError(f"time_tag needs a finite time >= 0 s, got {t_s}")
    if t_s == 0:
        return "0s"
    for unit, seconds in _UNITS:
        if t_s >= seconds:
            return f"{t_s / seconds:.3g}{unit}"
    return f"{t_s:.3g}s"


def _hparam_value(value: Any) -> Any:
    if isinstance(value, bool):  # torch would write it as the number 0/1
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


class TBLogger:
    """Writes one run's TensorBoard events with the project's tag scheme (see the module doc).

    Args:
        log_dir: folder of the event file (created when missing).
        flush_secs: how often pending events are written to disk.
    """

    def __init__(self, log_dir: str, *, flush_secs: int = 30) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir), flush_secs=flush_secs)

    @property
    def log_dir(self) -> str:
        """The folder the events are written to."""
        return self.writer.log_dir

    # --- scalars ---------------------------------------------------------------------------------
    def scalar(self, tag: str, value: float, step: int = 0) -> None:
        """One scalar ``value`` under ``tag`` at ``step``."""
        self.writer.add_scalar(tag, float(value), global_step=int(step))

    def scalars(self, values: Mapping[str, float], step: int = 0, prefix: str = "") -> None:
        """Every ``tag: value`` of ``values`` (``prefix`` prepended to the tags) at ``step``."""
        for tag, value in values.items():
            if value is not None:
                self.scalar(prefix + tag, value, step)

    def log_training(
        self, epoch: int, *, loss: float, accuracy: Optional[float] = None, phase: str = "train"
    ) -> None:
        """Loss and accuracy of one training epoch: ``<phase>/loss``, ``<phase>/accuracy``."""
        self.scalar(f"{phase}/loss", loss, epoch)
        if accuracy is not None:
            self.scalar(f"{phase}/accuracy", accuracy, epoch)

    def log_accuracy(
        self,
        times_s: Sequence[float],
        mean: Sequence[float],
        std: Optional[Sequence[float]] = None,
        *,
        digital: Optional[float] = None,
    ) -> None:
        """Analog accuracy at each time after programming: ``accuracy/t=<time>`` (mean),
        ``accuracy_std/t=<time>`` and ``accuracy/vs_time`` (step = t in seconds)."""
        if len(times_s) != len(mean) or (std is not None and len(std) != len(mean)):
            raise ValueError(
                f"log_accuracy needs one mean (and std) per time, got {len(times_s)} times, "
                f"{len(mean)} means, {None if std is None else len(std)} stds"
            )
        if digital is not None:
            self.scalar("accuracy/digital", digital)
        for k, (t, m) in enumerate(zip(times_s, mean)):
            label = time_tag(t)
            self.scalar(f"accuracy/t={label}", m)
            self.scalar("accuracy/vs_time", m, step=int(round(t)))
            if std is not None:
                self.scalar(f"accuracy_std/t={label}", std[k])

    def log_energy(
        self,
        total_j: float,
        *,
        layers_j: Optional[Mapping[str, float]] = None,
        components_j: Optional[Mapping[str, float]] = None,
        digital_baseline_j: Optional[float] = None,
    ) -> None:
        """Energy per inference in pJ: ``energy_pj/total``, ``energy_pj/layer.<name>``,
        ``energy_pj/component.<name>`` and ``energy_pj/digital_baseline``."""
        self.scalar("energy_pj/total", total_j * 1e12)
        for name, value in (layers_j or {}).items():
            self.scalar(f"energy_pj/layer.{name}", value * 1e12)
        for name, value in (components_j or {}).items():
            self.scalar(f"energy_pj/component.{name}", value * 1e12)
        if digital_baseline_j is not None:
            self.scalar("energy_pj/digital_baseline", digital_baseline_j * 1e12)

    def log_cost(
        self,
        *,
        latency_s: Optional[float] = None,
        area_mm2: Optional[float] = None,
        tops_per_w: Optional[float] = None,
    ) -> None:
        """``latency_ns/total``, ``area_mm2/total`` and ``tops_per_w/total`` (``None``: skipped)."""
        if latency_s is not None:
            self.scalar("latency_ns/total", latency_s * 1e9)
        if area_mm2 is not None:
            self.scalar("area_mm2/total", area_mm2)
        if tops_per_w is not None:
            self.scalar("tops_per_w/total", tops_per_w)

    # --- distributions, figures, text, hparams ------------------------------------------------
    def histogram(self, tag: str, values: torch.Tensor, step: int = 0) -> None:
        """A histogram of ``values`` (any shape; NaN and infinite entries dropped)."""
        flat = values.detach().reshape(-1).float().cpu()
        flat = flat[torch.isfinite(flat)]
        if flat.numel():
            self.writer.add_histogram(tag, flat, global_step=int(step))

    def log_device_state(
        self,
        layer: str,
        *,
        conductance_us: Optional[torch.Tensor] = None,
        drift_exponent: Optional[torch.Tensor] = None,
        step: int = 0,
    ) -> None:
        """Histograms ``conductance_us/<layer>`` and ``drift_exponent/<layer>`` of one layer."""
        if conductance_us is not None:
            self.histogram(f"conductance_us/{layer}", conductance_us, step)
        if drift_exponent is not None:
            self.histogram(f"drift_exponent/{layer}", drift_exponent, step)

    def figure(self, tag: str, figure: Any, step: int = 0, *, close: bool = True) -> None:
        """A matplotlib ``figure`` rendered as an image (closed afterwards unless ``close``)."""
        self.writer.add_figure(tag, figure, global_step=int(step), close=close)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """Markdown ``text`` (tables render when written as markdown)."""
        self.writer.add_text(tag, text, global_step=int(step))

    def log_hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Config fields against result metrics, in the HPARAMS tab of this same run.

        ``metrics`` tags (e.g. ``hparam/accuracy``) are written as scalars as well, as the tab
        reads them from the run's scalars. Booleans become ``"true"``/``"false"`` and values that
        are not int/float/str (``None``, lists) become strings.
        """
        clean = {k: _hparam_value(v) for k, v in hparams.items()}
        values = {k: float(v) for k, v in metrics.items() if v is not None}
        for summary in _hparams_summary(clean, values):
            self.writer.file_writer.add_summary(summary)
        for tag, value in values.items():
            self.scalar(tag, value)

    # --- lifetime --------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write pending events to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()

    def __enter__(self) -> TBLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
