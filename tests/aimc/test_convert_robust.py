"""Conversion keeps what the digital model means: subclasses, sharing, hooks, reparametrizations,
and says which weight-bearing modules stay digital."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import aimc
from aimc.nn import AnalogLinear

IDEAL = aimc.AnalogConfig.ideal()


def _inputs(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- subclasses ------------------------------------------------------------------------------
class ScaledLinear(nn.Linear):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.full((self.out_features,), 2.0))

    def forward(self, x):
        return super().forward(x) * self.gain


class ReluLinear(nn.Linear):
    def forward(self, x):
        return torch.relu(super().forward(x))


class PlainSubclass(nn.Linear):
    """No own forward, no extra parameters: the analog layer does exactly what it does."""


@pytest.mark.parametrize("cls", [ScaledLinear, ReluLinear])
def test_a_subclass_with_its_own_behaviour_is_refused_saying_how_to_register(cls):
    net = nn.Sequential(nn.Linear(4, 4), cls(4, 3))
    with pytest.raises(TypeError) as err:
        aimc.convert_to_analog(net, IDEAL)
    message = str(err.value)
    assert message.startswith(f"convert_to_analog: 1 is a {cls.__qualname__}")
    assert "exclude=['1']" in message and f"{cls.__name__}: AnalogLinear" in message


def test_a_registered_or_excluded_subclass_converts_as_asked():
    net = nn.Sequential(ReluLinear(4, 3))
    mapping = {**aimc.get_default_analog_module_mapping(), ReluLinear: AnalogLinear}
    assert isinstance(aimc.convert_to_analog(net, IDEAL, mapping=mapping)[0], AnalogLinear)
    kept = aimc.convert_to_analog(net, IDEAL, exclude=["0"])
    assert type(kept[0]) is ReluLinear
    x = _inputs(5, 4)
    torch.testing.assert_close(kept(x), net(x))


def test_a_subclass_without_own_behaviour_converts_and_matches():
    net = nn.Sequential(PlainSubclass(4, 3)).eval()
    analog = aimc.convert_to_analog(net, IDEAL).eval()
    x = _inputs(5, 4)
    torch.testing.assert_close(analog(x), net(x))


# --- sharing ----------------------------------------------------------------------------------
class SharedTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = self.a
        self.head = nn.Sequential(self.a)

    def forward(self, x):
        return self.head(self.b(self.a(x)))


def test_a_module_used_in_several_places_becomes_one_analog_layer():
    net = SharedTwice().eval()
    analog = aimc.convert_to_analog(net, IDEAL).eval()
    assert isinstance(analog.a, AnalogLinear)
    assert analog.b is analog.a and analog.head[0] is analog.a
    assert len(list(aimc.analog_layers(analog))) == 1
    x = _inputs(3, 4)
    torch.testing.assert_close(analog(x), net(x))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.enc = nn.Linear(6, 6)
        self.dec = nn.Linear(6, 6)
        self.dec.weight = self.enc.weight  # Linear-Linear
        self.out = nn.Linear(6, 10, bias=False)
        self.out.weight = self.emb.weight  # Embedding-Linear

    def forward(self, tokens):
        return self.out(self.dec(self.enc(self.emb(tokens))))


def test_tied_weights_stay_one_parameter():
    net = Tied()
    analog = aimc.convert_to_analog(net, IDEAL)
    assert analog.dec.weight is analog.enc.weight
    assert analog.out.weight is analog.emb.weight
    names = [n for n, _ in analog.named_parameters()]
    assert names == [n for n, _ in net.named_parameters()]
    tokens = torch.tensor([[1, 2, 3]])
    analog.train()
    analog(tokens).sum().backward()  # one gradient per parameter, summed over its uses
    assert analog.emb.weight.grad is not None and analog.enc.weight.grad is not None
    with torch.no_grad():  # an edit of the tied parameter reaches every analog use of it
        analog.enc.weight.mul_(0.5)
    analog.eval()
    reference = copy.deepcopy(net)
    reference.load_state_dict(analog.state_dict(), strict=False)
    reference.dec.weight = reference.enc.weight
    torch.testing.assert_close(analog(tokens), reference(tokens), rtol=1e-5, atol=1e-5)


def test_in_place_conversion_keeps_the_optimizers_parameters():
    net = nn.Sequential(nn.Linear(4, 3))
    params = list(net.parameters())
    analog = aimc.convert_to_analog(net, IDEAL, inplace=True)
    assert list(analog.parameters()) == params


# --- hooks ------------------------------------------------------------------------------------
def test_every_kind_of_hook_is_carried_over():
    net = nn.Sequential(nn.Linear(4, 3))
    calls = []
    lin = net[0]
    lin.register_full_backward_hook(lambda m, gi, go: calls.append("full_backward"))
    lin.register_forward_hook(
        lambda m, args, kwargs, out: calls.append("kw") or None, with_kwargs=True
    )
    lin.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append("pre_kw") or None, with_kwargs=True
    )
    lin.register_forward_hook(lambda m, args, out: calls.append("always"), always_call=True)
    lin.register_state_dict_post_hook(lambda m, sd, prefix, meta: calls.append("sd"))
    lin._register_state_dict_hook(lambda m, sd, prefix, meta: calls.append("sd_legacy"))
    lin.register_load_state_dict_post_hook(lambda m, keys: calls.append("load_post"))
    analog = aimc.convert_to_analog(net, IDEAL)
    analog.train()
    x = _inputs(2, 4).requires_grad_()
    analog(x).sum().backward()
    state = analog.state_dict()
    analog.load_state_dict(state)
    for kind in ("full_backward", "kw", "pre_kw", "always", "sd", "sd_legacy", "load_post"):
        assert kind in calls, kind
    assert isinstance(analog[0], AnalogLinear)


# --- legacy reparametrizations ------------------------------------------------------------------
def _pruned():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    prune.l1_unstructured(net[0], "weight", amount=0.5)
    return net


def test_pruning_without_remove_keeps_its_mask():
    net = _pruned().eval()
    analog = aimc.convert_to_analog(net, IDEAL).eval()
    x = _inputs(5, 6)
    torch.testing.assert_close(analog(x), net(x))
    assert "0.weight_mask" in analog.state_dict() and "0.weight_orig" in analog.state_dict()
    analog.train()  # training keeps pruned weights at zero
    opt = torch.optim.SGD(analog.parameters(), lr=0.5)
    analog(x).sum().backward()
    opt.step()
    analog.eval()
    analog(x)
    assert bool((analog[0].weight[analog[0].weight_mask == 0] == 0).all())
    prune.remove(analog[0], "weight")  # bakes the mask in, as on the digital layer
    assert isinstance(analog[0].weight, nn.Parameter)
    torch.testing.assert_close(analog.eval()(x), analog(x))


def test_legacy_weight_norm_converts_and_matches():
    torch.manual_seed(0)
    with pytest.warns(FutureWarning):
        net = nn.Sequential(nn.utils.weight_norm(nn.Linear(5, 4)))
    net.eval()
    analog = aimc.convert_to_analog(net, IDEAL).eval()
    x = _inputs(3, 5)
    torch.testing.assert_close(analog(x), net(x))
    with torch.no_grad():
        analog[0].weight_g.mul_(2.0)  # the recomputed weight reaches the tiles
    torch.testing.assert_close(analog(x) - analog[0].bias, 2 * (net(x) - net[0].bias))


def test_parametrized_weight_norm_converts_and_matches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(5, 4))).eval()
    analog = aimc.convert_to_analog(net, IDEAL).eval()
    x = _inputs(3, 5)
    torch.testing.assert_close(analog(x), net(x))


# --- what stays digital ---------------------------------------------------------------------
class Mixer(nn.Module):
    """A module of the user's own holding a matrix (no analog counterpart)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(2, 2))


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.emb = nn.Embedding(10, 4)
        self.bil = nn.Bilinear(4, 4, 2)
        self.mix = Mixer()
        self.bag = nn.EmbeddingBag(10, 4)
        self.norm = nn.LayerNorm(4)
        self.skip = nn.Linear(4, 4)


def test_the_report_lists_every_weight_bearing_module_left_digital():
    analog = aimc.convert_to_analog(Mixed(), IDEAL, exclude=["skip"])
    report = aimc.conversion_report(analog)
    lines = report.splitlines()
    assert lines[1].startswith("fc ") and "AnalogLinear" in lines[1]
    assert "left digital (5 weight-bearing module(s)):" in report
    for name, kind in (
        ("emb", "Embedding"),
        ("bil", "Bilinear"),
        ("mix", "Mixer"),
        ("bag", "EmbeddingBag"),
    ):
        line = next(row for row in lines if row.startswith(name + " "))
        assert kind in line and "digital: no analog layer for" in line
    assert "digital: excluded (exclude pattern 'skip')" in report
    assert "norm" not in report  # a 1-D scale is digital periphery, not a matrix


def test_the_conversion_logs_what_stays_digital(caplog):
    caplog.set_level("INFO", logger="aimc.convert")
    aimc.convert_to_analog(Mixed(), IDEAL)
    assert "stay digital" in caplog.text and "emb: no analog layer" in caplog.text


def test_an_excluded_attention_reports_its_projection_as_digital_with_its_parent():
    net = nn.Sequential(nn.MultiheadAttention(8, 2))
    report = aimc.conversion_report(aimc.convert_to_analog(net, IDEAL, exclude=["0"]))
    assert "digital: excluded (exclude pattern '0')" in report
    line = next(row for row in report.splitlines() if row.startswith("0.out_proj "))
    assert "its digital parent 0 uses the weights in its own forward" in line
