"""Hardware-aware training: what a train-mode forward injects on top of the tiled path.

Turn it on per layer with ``AnalogConfig(training=TrainingConfig(hardware_aware=True, ...))``,
convert, and train with any torch optimizer: the train forward of every analog layer runs the
tiled analog path (DAC/ADC quantization and clipping with straight-through gradients, ADC output
noise) on the current weights, plus the configured weight noise, fresh each batch. After each
optimizer step, :func:`clip_weights` applies ``TrainingConfig.clip_sigma``. ``model.eval()``
then reprograms the trained weights on the next forward, so the model is evaluated on the same
hardware it was trained for::

    cfg = aimc.AnalogConfig(device="pcm", training=aimc.TrainingConfig(
        hardware_aware=True, weight_noise="device", noise_t_s=86400.0, clip_sigma=2.5))
    analog = aimc.convert_to_analog(model, cfg)
    aimc.calibrate(analog, batches)
    opt = torch.optim.Adam(analog.parameters(), lr=1e-3)
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(analog(x), y).backward()
        opt.step()
        aimc.training.clip_weights(analog)
    analog.eval()                                  # programs the trained weights when next read
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from aimc.nn.base import AnalogLayerBase

__all__ = [
    "perturb_train_tiles",
    "device_weight_noise",
    "device_read",
    "input_range",
    "init_training_state",
    "clip_weights",
    "fine_tune",
]

_TRAIN_KEY = zlib.crc32(b"train-noise")
_MIN_GAIN = 0.01  # floor of the learned DAC range gain (a range cannot shrink to zero)


# ---------------------------------------------------------------------- layer hooks
def init_training_state(layer: AnalogLayerBase) -> None:
    """Register what a layer's training config needs: the learned DAC range gain
    ``dac_range_gain`` (a scalar parameter, 1 at the start) when ``learn_input_range``."""
    if layer.config.training.learn_input_range:
        w = layer.weight
        layer.dac_range_gain = nn.Parameter(torch.ones((), device=w.device, dtype=w.dtype))


def input_range(layer: AnalogLayerBase) -> Tensor:
    """The calibrated DAC range of ``layer`` in input units, times its learned gain if any.

    With a learned gain the result carries its gradient: the DAC divides by it (straight-through
    rounding, zero gradient where inputs saturate) and the digital periphery multiplies by it,
    which is the LSQ/PACT range gradient.
    """
    gain = getattr(layer, "dac_range_gain", None)
    if gain is None:
        return layer.dac_range
    return layer.dac_range * gain.clamp_min(_MIN_GAIN)


def _train_generator(layer: AnalogLayerBase) -> torch.Generator:
    """The layer's ``"train"`` generator. Programming resets the layer's generators; when that
    happened after earlier draws, reseed from the draw count so noise stays fresh, not a replay."""
    from aimc.nn.base import mix_seed

    gen = layer._generator("train")
    draws = getattr(layer, "_train_draws", 0)
    if draws and gen is not getattr(layer, "_train_gen", None):
        gen.manual_seed(mix_seed(int(layer.program_seed[0]), _TRAIN_KEY, draws))
    layer._train_gen = gen
    layer._train_draws = draws + 1
    return gen


def perturb_train_tiles(layer: AnalogLayerBase, w: Tensor) -> Tensor:
    """Normalized tile weights ``w`` ``[S, groups, row tiles, rows, cols]`` as a train-mode
    forward sees them: ``w`` plus ``TrainingConfig.weight_noise``, drawn fresh each call.

    The noise is a detached perturbation, so ``d(output) / d(w)`` is the identity.
    """
    tc = layer.config.training
    if tc.weight_noise == "none":
        return w
    gen = _train_generator(layer)
    factor = None
    with torch.no_grad():
        if tc.weight_noise == "gaussian":
            delta = torch.randn(w.shape, generator=gen, device=w.device, dtype=w.dtype)
            delta.mul_(tc.weight_noise_std)
        else:
            w_read, factor = device_read(layer, w.detach(), tc.noise_t_s, gen)
            delta = w_read * factor - w.detach() if factor is not None else w_read - w.detach()
            if tc.device_noise_scale != 1.0:
                delta.mul_(tc.device_noise_scale)
    if factor is not None:
        # The chip compensates drift after the ADC, so the tiles hold the drifted (smaller)
        # weights and the ADC sees the smaller currents; the layer's forward applies the factor
        # to its output, as the eval forward does.
        layer._train_compensation = (
            float(factor) if factor.numel() == 1 else factor.reshape(factor.shape[1], -1)
        )
        return (w + delta) / factor
    return w + delta


@torch.no_grad()
def device_weight_noise(
    layer: AnalogLayerBase, w: Tensor, t_s: float, generator: Optional[torch.Generator] = None
) -> Tensor:
    """One device draw of the normalized tile weights ``w``, read ``t_s`` seconds after
    programming, minus ``w``.

    ``w`` is mapped to conductance targets as ``layer.program`` maps it, programmed with the
    layer's device model, read at ``t_s`` (``conductance`` then ``read_noise_std``) and, when the
    layer compensates drift, rescaled by the ratio of summed ``|w|`` at programming and at
    ``t_s`` (globally or per column, as configured): the expectation of the reference read.
    """
    w_read, factor = device_read(layer, w, t_s, generator)
    return (w_read if factor is None else w_read * factor) - w


@torch.no_grad()
def device_read(
    layer: AnalogLayerBase, w: Tensor, t_s: float, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Optional[Tensor]]:
    """One device draw of ``w`` read at ``t_s`` (uncompensated), and the drift-compensation
    factor the layer would apply at ``t_s`` (``None`` when it does not compensate); see
    :func:`device_weight_noise`."""
    dev, cfg = layer.config.device, layer.config
    gmin, dg = float(dev.g_min), layer._g_norm
    if layer._differential:
        v, sign = w.abs(), torch.sign(w)
        targets = torch.stack([gmin + dg * v * (sign > 0), gmin + dg * v * (sign < 0)])
    else:  # offset: w = v + g_min / dg, so g = dg * w
        targets = (dg * w).unsqueeze(0)
    state = dev.program(targets.clamp_min(0.0), generator=generator)

    def normalized(g: Tensor) -> Tensor:
        return (g[0] - g[1]) / dg if layer._differential else g[0] / dg

    g_t = dev.conductance(state, t_s)
    std = dev.read_noise_std(state, t_s)
    if std is not None:
        noise = torch.randn(g_t.shape, generator=generator, device=g_t.device, dtype=g_t.dtype)
        g_read = g_t + std * noise
    else:
        g_read = g_t
    w_read = normalized(g_read)
    if not (cfg.drift_compensation and dev.drifts and t_s > 0):
        return w_read, None
    w0, wt = normalized(dev.conductance(state, 0.0)).abs(), normalized(g_t).abs()
    if cfg.drift_compensation_mode == "global":
        f = w0.sum() / wt.sum().clamp_min(1e-30)
    else:  # per weight column: sum over slices, row tiles and rows
        num, den = w0.sum(dim=(0, 2, 3), keepdim=True), wt.sum(dim=(0, 2, 3), keepdim=True)
        f = torch.where(den > 0, num / den.clamp_min(1e-30), torch.ones_like(num))
    return w_read, f


# ---------------------------------------------------------------------- user-loop helpers
@torch.no_grad()
def clip_weights(model: nn.Module) -> int:
    """Clamp the weights of every analog layer whose config sets ``TrainingConfig.clip_sigma``
    to ``±clip_sigma · std(weight)`` (per layer). Call it after each optimizer step.

    Returns:
        The number of layers clipped.
    """
    from aimc.nn.base import AnalogLayerBase

    clipped = 0
    for module in model.modules():
        if not isinstance(module, AnalogLayerBase):
            continue
        sigma = module.config.training.clip_sigma
        if sigma is None or module.weight.numel() < 2:
            continue
        bound = float(sigma * module.weight.std())
        module.weight.clamp_(-bound, bound)
        clipped += 1
    return clipped


def fine_tune(
    model: nn.Module,
    loader: Iterable,
    epochs: int,
    lr: float,
    *,
    optimizer: str = "adam",
    schedule: str = "constant",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    loss_fn: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
) -> list[float]:
    """Train ``model`` on ``(input, target)`` batches of ``loader`` for ``epochs`` epochs, with
    :func:`clip_weights` after every step. Any model works; analog layers configured
    ``hardware_aware`` train through the chip's noise and converters.

    Args:
        model: the model; left in the train/eval mode it had.
        loader: a re-iterable of ``(input, target)`` batches (a ``DataLoader``).
        epochs: passes over ``loader`` (>= 0).
        lr: learning rate (> 0).
        optimizer: ``"adam"`` or ``"sgd"``.
        schedule: learning rate over the epochs: ``"constant"`` (``lr`` throughout) or
            ``"cosine"`` (``lr · (1 + cos(π e / epochs)) / 2`` in epoch ``e = 0 .. epochs - 1``,
            annealed towards 0). Noisy hardware-aware training gains from the annealing: the
            gradients carry the weight noise, and a small final rate averages it out.
        momentum: SGD momentum.
        weight_decay: L2 penalty of the optimizer.
        loss_fn: ``loss_fn(output, target)``; default cross-entropy.

    Returns:
        The mean training loss of each epoch.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fine_tune: epochs must be an int >= 0, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"fine_tune: lr must be > 0, got {lr!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"fine_tune: optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"fine_tune: schedule must be 'constant' or 'cosine', got {schedule!r}")
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    was_training = model.training
    model.train()
    history = []
    try:
        for epoch in range(epochs):
            if schedule == "cosine":
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
            total, n = 0.0, 0
            for x, y in loader:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                clip_weights(model)
                total += float(loss.detach()) * len(x)
                n += len(x)
            history.append(total / max(n, 1))
    finally:
        model.train(was_training)
    return history
