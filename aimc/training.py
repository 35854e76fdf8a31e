"""Hardware-aware training: the user-loop helpers (the noise itself is the crossbar stage's).

Turn it on per layer with ``AnalogConfig(training=TrainingConfig(hardware_aware=True, ...))``,
convert, and train with any torch optimizer: the train forward of every analog layer runs the
tiled analog path (DAC/ADC quantization and clipping with straight-through gradients, ADC output
noise) on the current weights, plus the configured weight noise, fresh each batch
(:meth:`aimc.tile.Crossbar.train_read`). After each
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
from collections.abc import Callable, Iterable
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc.nn.base import AnalogLayerBase

__all__ = ["clip_weights", "fine_tune"]


# ---------------------------------------------------------------------- user-loop helpers
@torch.no_grad()
def clip_weights(model: nn.Module) -> int:
    """Clamp the weights of every analog layer whose config sets ``TrainingConfig.clip_sigma``
    to ``±clip_sigma · std(weight)`` (per layer). Call it after each optimizer step.

    Returns:
        The number of layers clipped.
    """
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
