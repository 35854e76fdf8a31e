"""Hardware-aware training weights: the tiles a train forward computes with.

A train forward does not read the programmed devices: it maps the *current* weights to tiles
and adds ``TrainingConfig.weight_noise`` drawn fresh per forward, as a detached perturbation
(``d(output) / d(w)`` is the identity, so the weights learn through the noise):

- ``"gaussian"``: additive ``N(0, weight_noise_std²)`` in normalized weight units;
- ``"device"``: the weights programmed onto a fresh device draw and read ``noise_t_s`` after
  programming (programming noise, drift, read noise), drift-compensated by the eval forward's
  rule, scaled by ``device_noise_scale``.

A layer read several times within one forward of a model (the hidden-to-hidden matrix of a
recurrent layer at every time step, a packed attention projection for query, key and value)
is one programmed array read again and again, so its noise must not change between those
reads: inside :meth:`TrainNoise.hold_noise` every train read takes the block's first draw.

:class:`TrainNoise` is the part of :class:`~aimc.tile.crossbar.Crossbar` that draws them (kept
in its own file; it uses the crossbar's mapping, device facts and ``"train"`` stream).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from typing import Any, Optional

import torch
from torch import Tensor

from aimc.tile.seeds import mix_seed

__all__ = ["TrainNoise"]

_TRAIN_KEY = zlib.crc32(b"train-noise")


class TrainNoise:
    """The hardware-aware training draws of a :class:`~aimc.tile.crossbar.Crossbar`.

    Uses from the crossbar: ``config``, ``seed``, ``generator``, ``normalized_tiles``,
    ``differential``, ``g_norm``, ``g_offset``, ``_targets``, ``_normalized``, ``layer_name``.
    """

    _train_draws: int = 0  # train-noise draws so far (keeps reseeded draws fresh)
    _train_gen: Optional[torch.Generator] = None
    _held: Optional[list] = None  # inside hold_noise: [] or [(w, delta, factor, comp)]

    @contextlib.contextmanager
    def hold_noise(self) -> Iterator[None]:
        """Inside the block, every train read uses one weight-noise draw: the first read draws
        it (from the ``"train"`` stream, as an unheld read would), later reads of the same
        weights reuse it; weights that changed meanwhile draw anew. One programmed array read
        several times within one forward (a recurrent layer's time steps) sees one device draw,
        as a feed-forward layer does per forward. A block inside a block uses the outer one's
        draw. Eval reads are not affected (they read the programmed devices).

        Examples:
            >>> import aimc
            >>> cfg = aimc.AnalogConfig(training=aimc.TrainingConfig(
            ...     hardware_aware=True, weight_noise="gaussian", weight_noise_std=0.1))
            >>> layer = aimc.nn.AnalogLinear(4, 2, config=cfg).train()
            >>> x = torch.ones(1, 4)
            >>> with layer.crossbar.hold_noise():
            ...     torch.equal(layer(x), layer(x))
            True
        """
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
        finally:
            self._held = None

    def train_read(self, matrix: Tensor, drift_gain=None) -> tuple[Tensor, Tensor, Any]:
        """``(w, scale, compensation)``: the normalized tile weights a train forward computes
        with (the current weights plus ``TrainingConfig.weight_noise``, gradient straight
        through), their scales and the drift-compensation factor to apply after the ADC.

        ``drift_gain(w0, wt, scale)``: the layer's compensation rule for tiles read at
        programming and at the read time (needed by device noise that drifts)."""
        v, sign, scale = self.normalized_tiles(matrix)
        w = v * sign if self.differential else v + self.g_offset
        gain = None if drift_gain is None else (lambda w0, wt: drift_gain(w0, wt, scale))
        w, comp = self.weight_noise(w, gain)
        return w, scale, comp

    def _train_generator(self) -> torch.Generator:
        """The ``"train"`` generator. Programming restarts the streams; when that happened
        after earlier draws, reseed from the draw count so noise stays fresh, not a replay."""
        gen = self.generator("train")
        if self._train_draws and gen is not self._train_gen:
            gen.manual_seed(mix_seed(int(self.seed[0]), _TRAIN_KEY, self._train_draws))
        self._train_gen = gen
        self._train_draws += 1
        return gen

    def weight_noise(self, w: Tensor, drift_gain=None) -> tuple[Tensor, Any]:
        """Normalized tile weights ``w`` plus ``TrainingConfig.weight_noise`` drawn fresh, and
        the drift-compensation factor (``None``, a float or per column ``[Gr, N]``).

        The noise is a detached perturbation: ``d(output) / d(w)`` is the identity. With
        device noise that drifts, the tiles hold the drifted (smaller) weights, as the chip's
        do, and the factor ``drift_gain(w0, wt)`` (see :meth:`device_read`) is applied after
        the ADC."""
        tc = self.config.training
        if tc.weight_noise == "none":
            return w, None
        held = self._held
        if held and held[0][0].shape == w.shape and torch.equal(held[0][0], w.detach()):
            _, delta, factor, comp = held[0]
            return self._noisy(w, delta, factor, comp)
        gen = self._train_generator()
        factor = comp = None
        with torch.no_grad():
            if tc.weight_noise == "gaussian":
                delta = torch.randn(w.shape, generator=gen, device=w.device, dtype=w.dtype)
                delta.mul_(tc.weight_noise_std)
            else:
                w_read, comp = self.device_read(w.detach(), tc.noise_t_s, gen, drift_gain)
                factor = _per_column(comp, w)
                delta = w_read * factor - w.detach() if factor is not None else w_read - w.detach()
                if tc.device_noise_scale != 1.0:
                    delta.mul_(tc.device_noise_scale)
        comp = comp if factor is not None else None  # a factor of None: nothing to undo
        if held is not None:
            held[:] = [(w.detach(), delta, factor, comp)]
        return self._noisy(w, delta, factor, comp)

    @staticmethod
    def _noisy(w: Tensor, delta: Tensor, factor: Any, comp: Any) -> tuple[Tensor, Any]:
        if factor is None:
            return w + delta, None
        return (w + delta) / factor, comp

    @torch.no_grad()
    def device_read(
        self, w: Tensor, t_s: float, generator: Optional[torch.Generator] = None, drift_gain=None
    ) -> tuple[Tensor, Any]:
        """One device draw of normalized tile weights ``w`` read at ``t_s`` (uncompensated),
        and the drift-compensation factor at ``t_s`` (``None`` when the layer does not
        compensate): ``drift_gain(w0, wt)`` of the expected tiles at programming and at
        ``t_s``, the rule the eval forward applies to its reference reads. ``w`` is mapped
        to conductances as ``Crossbar.program`` maps weights."""
        dev, cfg = self.config.device, self.config
        if self.differential:
            targets = self._targets(w.abs(), torch.sign(w))
        else:  # offset: w = v + g_offset, so g = g_norm * w
            targets = (self.g_norm * w).unsqueeze(0)
        state = dev.program(targets.clamp_min(0.0), generator=generator)
        g_t = dev.conductance(state, t_s)
        std = dev.read_noise_std(state, t_s)
        g_read = g_t
        if std is not None:
            noise = torch.randn(g_t.shape, generator=generator, device=g_t.device, dtype=g_t.dtype)
            g_read = g_t + std * noise
        w_read = self._normalized(g_read)
        if not (cfg.drift_compensation and dev.drifts and t_s > 0):
            return w_read, None
        if drift_gain is None:
            raise ValueError(
                f"{self.layer_name}: a drift-compensated device read needs the layer's "
                "drift_gain rule (AnalogLayerBase.train_drift_gain)"
            )
        w0 = self._normalized(dev.conductance(state, 0.0))
        return w_read, drift_gain(w0, self._normalized(g_t))


def _per_column(comp: Any, w: Tensor) -> Any:
    """A compensation factor (a float, or per column ``[groups, cols]``) shaped against tile
    weights ``w`` ``[S, groups, row tiles, rows, cols]``."""
    if comp is None or not isinstance(comp, Tensor):
        return comp
    return comp.view(1, comp.shape[0], 1, 1, comp.shape[1])
