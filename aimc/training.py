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

One forward reads each crossbar with one set of conductances: every call of a layer within one
forward of the model sees the same weight-noise draw (a module applied twice, a recurrent
layer's time steps, query, key and value of one projection), and the next forward draws anew.
``convert_to_analog`` arranges that for the model it returns when any of its layers trains
hardware-aware (:func:`hold_noise_per_forward`); :func:`hold_noise` holds the draws over any
block of code (a model built from analog layers by hand, a wider scope than one forward).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc.nn.base import AnalogLayerBase
from aimc.tile.crossbar import Crossbar

__all__ = ["clip_weights", "fine_tune", "hold_noise", "hold_noise_per_forward"]


# ---------------------------------------------------------------------- one draw per forward
@contextlib.contextmanager
def hold_noise(model: nn.Module) -> Iterator[None]:
    """Inside the block, every crossbar of ``model`` trains with one weight-noise draw.

    A physical crossbar holds one set of conductances while it is read: a layer called several
    times (a shared or tied module, a loop over an analog cell) is one programmed array read
    several times, so its hardware-aware training noise must not change between those calls.
    Inside the block, each crossbar's first train read draws its noise from its seeded
    ``"train"`` stream, as an unheld read would, and later reads of the same weights reuse it
    (weights changed meanwhile draw anew); after the block every call draws again. Two layers
    that merely share a parameter are two arrays and keep two draws. Blocks nest (an inner
    block keeps the outer draw); eval reads are not affected (they read the programmed devices,
    with read noise per read as configured).

    Args:
        model: any module; its analog layers (and the tile layers of recurrent and attention
            layers) are held.

    Examples:
        >>> import torch, aimc
        >>> cfg = aimc.AnalogConfig(training=aimc.TrainingConfig(
        ...     hardware_aware=True, weight_noise="gaussian", weight_noise_std=0.1))
        >>> layer = aimc.AnalogLinear(4, 4, config=cfg).train()
        >>> x = torch.ones(1, 4)
        >>> with aimc.hold_noise(layer):
        ...     torch.equal(layer(x), layer(x))
        True
    """
    with contextlib.ExitStack() as stack:
        for module in model.modules():
            if isinstance(module, Crossbar):
                stack.enter_context(module.hold_noise())
        yield


# the open holds of each model with a per-forward hold, innermost last (a forward may recurse)
_OPEN_HOLDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _hold_before_forward(module: nn.Module, args) -> None:
    stack = contextlib.ExitStack()
    if module.training:  # eval reads draw no training noise
        stack.enter_context(hold_noise(module))
    _OPEN_HOLDS.setdefault(module, []).append(stack)


def _release_after_forward(module: nn.Module, args, output) -> None:
    open_holds = _OPEN_HOLDS.get(module)
    if open_holds:
        open_holds.pop().close()


class _Handles:
    """Removes the two hooks of :func:`hold_noise_per_forward`."""

    def __init__(self, *handles) -> None:
        self.handles = handles

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def hold_noise_per_forward(model: nn.Module) -> _Handles:
    """Hold the training weight noise of ``model`` over each of its forwards (see
    :func:`hold_noise`): every call of a layer inside one forward of ``model`` sees one draw
    per crossbar, and the next forward draws anew. Installs a forward pre-hook and an
    always-called forward hook on ``model`` (released even when the forward raises);
    installing it again replaces the earlier hooks. ``convert_to_analog`` installs it on the
    model it returns when any layer trains hardware-aware.

    Returns:
        A handle whose ``remove()`` takes the hooks off again (a draw per call from then on).

    Examples:
        >>> import torch, aimc
        >>> cfg = aimc.AnalogConfig(training=aimc.TrainingConfig(
        ...     hardware_aware=True, weight_noise="gaussian", weight_noise_std=0.1))
        >>> layer = aimc.AnalogLinear(4, 4, config=cfg).train()
        >>> twice = torch.nn.Sequential(layer, layer)
        >>> handle = aimc.hold_noise_per_forward(twice)
        >>> out = twice(torch.ones(1, 4))  # both calls of the layer: one draw
        >>> handle.remove()
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"hold_noise_per_forward expects an nn.Module, got {type(model).__name__}")
    for hooks in (model._forward_pre_hooks, model._forward_hooks):  # installed before: replace
        for key in [
            k for k, h in hooks.items() if h in (_hold_before_forward, _release_after_forward)
        ]:
            del hooks[key]
            model._forward_hooks_always_called.pop(key, None)
    return _Handles(
        model.register_forward_pre_hook(_hold_before_forward),
        model.register_forward_hook(_release_after_forward, always_call=True),
    )


def trains_hardware_aware(model: nn.Module) -> bool:
    """Whether any crossbar of ``model`` trains hardware-aware (with its tiles in the loop)."""
    return any(
        isinstance(m, Crossbar) and m.config.training.hardware_aware for m in model.modules()
    )


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
