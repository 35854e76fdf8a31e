"""Hardware-aware training noise: one draw per crossbar and forward, however often it is read."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import aimc
from aimc.tile.crossbar import Crossbar
from tests.train_reads import record_train_reads

_HWA = aimc.AnalogConfig(
    training=aimc.TrainingConfig(
        hardware_aware=True, weight_noise="gaussian", weight_noise_std=0.05
    ),
    seed=3,
)


class _Twice(nn.Module):
    """One linear layer applied twice (shared weights), and a second one applied once."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(6, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.shared(torch.relu(self.shared(x)))))


class _Raises(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layer(x)
        raise RuntimeError("boom")


def _reads_of(reads, crossbar: Crossbar) -> list[torch.Tensor]:
    return [w for cb, w in reads if cb is crossbar]


@pytest.mark.parametrize("noise", ["gaussian", "device"])
def test_a_shared_module_sees_one_draw_per_forward_of_the_converted_model(noise, monkeypatch):
    tc = aimc.TrainingConfig(hardware_aware=True, weight_noise=noise, weight_noise_std=0.05)
    cfg = aimc.AnalogConfig(training=tc, seed=3)
    torch.manual_seed(0)
    digital, x = _Twice(), torch.randn(4, 6)
    reads = record_train_reads(monkeypatch)
    runs = []
    for _ in range(2):  # two models from one seed
        model = aimc.convert_to_analog(digital, cfg)
        aimc.calibrate(model, [x])
        model.train()
        shared = model.shared.crossbar
        per_forward = []
        for _ in range(2):
            reads.clear()
            model(x).sum().backward()  # gradients flow through the held draw
            calls = _reads_of(reads, shared)
            assert len(calls) == 2 and torch.equal(calls[0], calls[1])  # one draw, two calls
            assert len(_reads_of(reads, model.head.crossbar)) == 1
            per_forward.append(calls[0])
        assert not torch.equal(per_forward[0], per_forward[1])  # the next forward draws anew
        assert model.shared.weight.grad.abs().sum() > 0
        runs.append(per_forward)
    for a, b in zip(*runs):  # seeded: the same draws again
        assert torch.equal(a, b)


def test_without_the_per_forward_hold_every_call_draws(monkeypatch):
    torch.manual_seed(0)
    model = aimc.convert_to_analog(_Twice(), _HWA)
    aimc.calibrate(model, [torch.randn(4, 6)])
    model.train()
    reads = record_train_reads(monkeypatch)
    handle = aimc.hold_noise_per_forward(model)  # installing again replaces the hooks
    model(torch.randn(4, 6))
    calls = _reads_of(reads, model.shared.crossbar)
    assert len(calls) == 2 and torch.equal(calls[0], calls[1])
    handle.remove()
    reads.clear()
    model(torch.randn(4, 6))
    calls = _reads_of(reads, model.shared.crossbar)
    assert len(calls) == 2 and not torch.equal(calls[0], calls[1])


def test_hold_noise_holds_a_hand_built_model_over_a_block(monkeypatch):
    torch.manual_seed(0)
    layer = aimc.AnalogLinear(6, 6, config=_HWA)
    model = nn.Sequential(layer, nn.ReLU(), layer)  # no hook: built by hand
    x = torch.randn(3, 6)
    aimc.calibrate(model, [x])
    model.train()
    reads = record_train_reads(monkeypatch)
    model(x)
    free = _reads_of(reads, layer.crossbar)
    assert len(free) == 2 and not torch.equal(free[0], free[1])
    reads.clear()
    with aimc.hold_noise(model):
        model(x)
        model(x)
    held = _reads_of(reads, layer.crossbar)
    assert len(held) == 4 and all(torch.equal(w, held[0]) for w in held)
    assert layer.crossbar._held is None  # released after the block


def test_eval_models_get_no_hook_and_a_raising_forward_releases_the_hold():
    plain = aimc.convert_to_analog(_Twice(), aimc.AnalogConfig())
    assert not plain._forward_pre_hooks and not plain._forward_hooks
    layer = aimc.AnalogLinear(6, 6, config=_HWA)
    aimc.calibrate(layer, [torch.randn(2, 6)])
    model = _Raises(layer.train())
    aimc.hold_noise_per_forward(model)
    with pytest.raises(RuntimeError, match="boom"):
        model(torch.randn(2, 6))
    assert layer.crossbar._held is None
