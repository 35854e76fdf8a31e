"""Hardware-aware training: config, noise injection, clipping, straight-through gradients."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import aimc
import device_models
from aimc.nn import AnalogConv2d, AnalogLinear
from aimc.tile.crossbar import weight_fingerprint
from aimc.training import clip_weights, fine_tune
from device_models.converters import adc_readout, quantize_dac


def perturb_train_tiles(layer, w):
    """The tile weights a train forward computes with: ``w`` plus the configured noise."""
    return layer.crossbar.weight_noise(w)[0]


def device_weight_noise(layer, w, t_s, generator):
    """One device draw of ``w`` read at ``t_s`` and drift-compensated, minus ``w``."""
    gain = lambda w0, wt: layer.train_drift_gain(w0, wt, layer.crossbar.weight_scale)  # noqa: E731
    w_read, factor = layer.crossbar.device_read(w, t_s, generator, gain)
    if isinstance(factor, torch.Tensor):
        factor = factor.view(1, factor.shape[0], 1, 1, factor.shape[1])
    return (w_read if factor is None else w_read * factor) - w


def _hwa(**kw) -> aimc.TrainingConfig:
    return aimc.TrainingConfig(hardware_aware=True, **kw)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 4)
    )


def _data(model_kind: str, n: int = 32, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    shape = (n, 12) if model_kind == "mlp" else (n, 1, 5, 5)
    x = torch.randn(shape, generator=gen)
    y = torch.randint(0, 4, (n,), generator=gen)
    return x, y


_MODELS = {"mlp": _mlp, "cnn": _cnn}


def _sgd_steps(model: nn.Module, x, y, steps: int, clip: bool = True) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    losses = []
    for k in range(steps):
        xb, yb = x[k % 4 :: 4], y[k % 4 :: 4]
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        if clip:
            clip_weights(model)
        losses.append(float(loss.detach()))
    return losses


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(weight_noise="uniform"), "TrainingConfig.weight_noise"),
        (dict(weight_noise="gaussian"), "TrainingConfig.weight_noise_std"),
        (dict(weight_noise_std=-0.1), "TrainingConfig.weight_noise_std"),
        (dict(device_noise_scale=-1.0), "TrainingConfig.device_noise_scale"),
        (dict(noise_t_s=-5.0), "TrainingConfig.noise_t_s"),
        (dict(noise_t_s=math.inf), "TrainingConfig.noise_t_s"),
        (dict(clip_sigma=0.0), "TrainingConfig.clip_sigma"),
        (dict(clip_sigma=-2.0), "TrainingConfig.clip_sigma"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        _hwa(**kwargs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(hardware_aware=1), "TrainingConfig.hardware_aware"),
        (dict(learn_input_range="yes"), "TrainingConfig.learn_input_range"),
        (dict(weight_noise_std="0.1"), "TrainingConfig.weight_noise_std"),
        (dict(clip_sigma=True), "TrainingConfig.clip_sigma"),
    ],
)
def test_bad_types_name_the_field(kwargs, field):
    with pytest.raises(TypeError, match=field):
        aimc.TrainingConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(weight_noise="device"), dict(learn_input_range=True)])
def test_forward_injection_needs_hardware_aware(kwargs):
    with pytest.raises(ValueError, match="needs hardware_aware=True"):
        aimc.TrainingConfig(**kwargs)


def test_defaults_are_off_and_dict_builds_it():
    tc = aimc.TrainingConfig()
    assert (tc.hardware_aware, tc.weight_noise, tc.clip_sigma, tc.learn_input_range) == (
        False,
        "none",
        None,
        False,
    )
    cfg = aimc.AnalogConfig(training={"hardware_aware": True, "weight_noise": "device"})
    assert cfg.training == _hwa(weight_noise="device")


# ---------------------------------------------------------------------- off == plain training
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_defaults_reproduce_plain_training_step_for_step(kind):
    digital = _MODELS[kind]()
    analog = aimc.convert_to_analog(digital, aimc.AnalogConfig(device="pcm"))
    x, y = _data(kind)
    loss_d = _sgd_steps(digital, x, y, 6)
    loss_a = _sgd_steps(analog, x, y, 6)
    assert loss_a == loss_d
    for (name, p), (name_a, q) in zip(digital.named_parameters(), analog.named_parameters()):
        assert name == name_a
        torch.testing.assert_close(q, p, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_hardware_aware_ideal_hardware_follows_plain_training(kind):
    """Ideal device, converters and no noise: the tiled train path is the digital op up to
    float rounding (weights are divided by their scale and multiplied back)."""
    digital = _MODELS[kind]()
    analog = aimc.convert_to_analog(digital, aimc.AnalogConfig.ideal(training=_hwa()))
    x, y = _data(kind)
    _sgd_steps(digital, x, y, 4)
    _sgd_steps(analog, x, y, 4)
    for p, q in zip(digital.parameters(), analog.parameters()):
        torch.testing.assert_close(q, p)


# ---------------------------------------------------------------------- noise on
_NOISES = [
    dict(weight_noise="gaussian", weight_noise_std=0.05),
    dict(weight_noise="device", noise_t_s=86400.0),
    dict(weight_noise="device", noise_t_s=3600.0, learn_input_range=True, clip_sigma=2.5),
]


@pytest.mark.parametrize(
    "kind, noise", [(k, n) for k in ("mlp", "cnn") for n in _NOISES[: 3 if k == "mlp" else 2]]
)
def test_noisy_training_has_finite_gradients_and_loss_falls(kind, noise):
    cfg = aimc.AnalogConfig(device="pcm", training=_hwa(**noise))
    analog = aimc.convert_to_analog(_MODELS[kind](), cfg)
    x, y = _data(kind, n=64)
    aimc.calibrate(analog, [x])
    opt = torch.optim.Adam(analog.parameters(), lr=0.02)
    analog.train()
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = F.cross_entropy(analog(x), y)
        loss.backward()
        for name, p in analog.named_parameters():
            assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        opt.step()
        clip_weights(analog)
        losses.append(float(loss.detach()))
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3


@pytest.mark.parametrize("noise", _NOISES[:2])
def test_noise_is_fresh_each_batch_and_seeded(noise):
    cfg = aimc.AnalogConfig(device="pcm", training=_hwa(**noise), seed=3)
    x, _ = _data("mlp")

    def outputs(seed):
        model = aimc.convert_to_analog(_mlp(), dataclasses.replace(cfg, seed=seed)).train()
        with torch.no_grad():
            return [model(x) for _ in range(3)]

    a, b, c = outputs(3), outputs(3), outputs(4)
    for ya, yb in zip(a, b):
        torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    assert not torch.equal(a[0], a[1])  # fresh each batch
    assert not torch.equal(a[0], c[0])  # another seed, another draw


def test_training_draws_stay_fresh_across_reprogramming():
    """Eval forwards between batches reprogram the layer (which resets its generators); the
    training noise must not replay the same sequence afterwards."""
    cfg = aimc.AnalogConfig(
        device="pcm", training=_hwa(weight_noise="gaussian", weight_noise_std=0.1)
    )
    layer = AnalogLinear.from_digital(nn.Linear(12, 4), cfg).train()
    x = torch.randn(8, 12)
    with torch.no_grad():
        y0 = layer(x)
        layer.weight.add_(0.0)  # bump the version: the next eval forward reprograms
        layer.eval()(x)
        y1 = layer.train()(x)
    assert not torch.equal(y0, y1)


def test_noise_is_a_detached_perturbation_gradcheck():
    """``d perturbed / d w`` is the identity: gradcheck (float64) with the noise draw pinned."""
    cfg = aimc.AnalogConfig(
        device="pcm", training=_hwa(weight_noise="gaussian", weight_noise_std=0.2)
    )
    layer = AnalogLinear(6, 3, config=cfg, dtype=torch.float64).train()
    w = torch.rand(1, 1, 1, 256, 3, dtype=torch.float64, requires_grad=True)

    def perturbed(w):
        layer.crossbar.forget()
        layer.crossbar._train_draws = 0
        return perturb_train_tiles(layer, w)

    assert not torch.equal(perturbed(w), w)
    assert torch.autograd.gradcheck(perturbed, (w,))


def test_weight_gradient_does_not_see_the_noise():
    """Ideal converters: the weight gradient of a noisy forward equals the noiseless one."""
    lin = nn.Linear(12, 4)
    x, c = torch.randn(8, 12), torch.randn(8, 4)
    grads = []
    for noise in (dict(), dict(weight_noise="gaussian", weight_noise_std=0.3)):
        layer = AnalogLinear.from_digital(lin, aimc.AnalogConfig.ideal(training=_hwa(**noise)))
        (layer.train()(x) * c).sum().backward()
        grads.append(layer.weight.grad)
    torch.testing.assert_close(grads[1], grads[0])


@pytest.mark.statistical
def test_gaussian_noise_std_in_normalized_units():
    std = 0.07
    layer = AnalogLinear(
        64,
        32,
        config=aimc.AnalogConfig(
            device="pcm", training=_hwa(weight_noise="gaussian", weight_noise_std=std)
        ),
    )
    w = torch.zeros(1, 1, 1, 256, 32)
    d = perturb_train_tiles(layer, w)
    n = d.numel()
    assert abs(float(d.mean())) < 4 * std / math.sqrt(n)
    # std of a sample std: std / sqrt(2 n)
    assert abs(float(d.std()) - std) < 4 * std / math.sqrt(2 * n)


@pytest.mark.statistical
def test_device_noise_follows_the_device_programming_spread():
    """At t = 0 without read noise or drift, the perturbation of a differential weight is the
    programming spread of its two devices: ``sqrt(σ(g+)² + σ(g-)²) / (g_max - g_min)``."""
    dev = device_models.PCM(g_min=2.0, drift_scale=0.0, read_noise_scale=0.0)
    cfg = aimc.AnalogConfig(device=dev, training=_hwa(weight_noise="device", noise_t_s=0.0))
    layer = AnalogLinear(64, 32, config=cfg)
    w = torch.full((1, 1, 1, 256, 32), 0.5, dtype=torch.float64)
    layer = layer.double()
    d = device_weight_noise(layer, w, 0.0, torch.Generator().manual_seed(0))
    dg = dev.g_max - dev.g_min
    g_pos = torch.tensor([dev.g_min + 0.5 * dg], dtype=torch.float64)
    s_pos = float(dev.prog_noise_std(g_pos))
    s_neg = float(dev.prog_noise_std(torch.tensor([dev.g_min], dtype=torch.float64)))
    want = math.sqrt(s_pos**2 + s_neg**2) / dg
    n = d.numel()
    assert abs(float(d.mean())) < 4 * want / math.sqrt(n)
    assert abs(float(d.std()) - want) < 4 * want / math.sqrt(2 * n)


@pytest.mark.statistical
def test_device_noise_grows_with_read_time_and_is_drift_compensated():
    cfg = aimc.AnalogConfig(device="pcm", training=_hwa(weight_noise="device"))
    layer = AnalogLinear(64, 32, config=cfg)
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(1, 1, 1, 256, 32) * 2 - 1
    spread = []
    for t in (0.0, 3600.0, 3.15e7):
        d = device_weight_noise(layer, w, t, gen)
        spread.append(float(d.std()))
        # compensated: the summed |w| keeps its scale (uncompensated PCM loses ~half in a year)
        ratio = float((w + d).abs().sum() / w.abs().sum())
        assert abs(ratio - 1) < 0.05, (t, ratio)
    assert spread[0] < spread[1] < spread[2]


# ---------------------------------------------------------------------- clipping
def test_clip_weights_bounds_hold():
    cfg = aimc.AnalogConfig(device="pcm", training=aimc.TrainingConfig(clip_sigma=1.5))
    model = aimc.convert_to_analog(
        _mlp(), aimc.AnalogConfig(device="pcm"), layer_configs={"2": cfg}
    )
    model.add_module("extra", nn.Linear(4, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10).add_(torch.randn_like(p) ** 3)
    before = copy.deepcopy(model.state_dict())
    bound = 1.5 * float(model[2].weight.detach().std())
    assert float(model[2].weight.detach().abs().max()) > bound
    assert clip_weights(model) == 1
    assert float(model[2].weight.detach().abs().max()) <= bound * (1 + 1e-6)
    inside = before["2.weight"].abs() <= bound
    torch.testing.assert_close(model[2].weight[inside], before["2.weight"][inside])
    for key in ("0.weight", "extra.weight", "2.bias"):  # unclipped layers and biases untouched
        torch.testing.assert_close(model.state_dict()[key], before[key], rtol=0, atol=0)


# ---------------------------------------------------------------------- straight-through
def test_dac_ste_is_identity_inside_and_zero_outside():
    x = torch.tensor([-3.0, -0.9, -0.26, 0.0, 0.4, 1.5, 2.2], requires_grad=True)
    quantize_dac(x, 2.0, levels=127).sum().backward()
    inside = x.detach().abs() <= 2.0
    want = torch.where(inside, torch.full_like(x, 1 / 2.0), torch.zeros_like(x))
    torch.testing.assert_close(x.grad, want, rtol=0, atol=0)


def test_adc_ste_is_identity_inside_and_zero_outside():
    i = torch.tensor([-5.0, -0.7, 0.1, 0.33, 0.99, 1.7], requires_grad=True)
    adc_readout(i, 1.0, levels=31).sum().backward()
    want = (i.detach().abs() <= 1.0).to(i.dtype)
    torch.testing.assert_close(i.grad, want, rtol=0, atol=0)


def test_converter_ranges_gradcheck_float64():
    """Without rounding (ideal levels) the DAC normalization and clipping are smooth inside the
    range: gradcheck holds there (points kept away from the clipping kinks)."""
    x = torch.tensor([-1.3, -0.4, 0.2, 0.7, 1.1], dtype=torch.float64, requires_grad=True)
    r = torch.tensor(1.6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: quantize_dac(x, r, None), (x, r))
    assert torch.autograd.gradcheck(lambda i: adc_readout(i, 2.0, None), (x,))


def test_hardware_aware_layer_input_gradient_is_straight_through():
    """8-bit DAC/ADC: the input gradient is the digital one where the DAC does not clip and 0
    where it does (the ADC full scale is set wide enough not to clip)."""
    lin = nn.Linear(40, 6)
    cfg = aimc.AnalogConfig(
        device="ideal",
        dac=aimc.DACConfig(bits=8),
        adc=aimc.ADCConfig(bits=8, range_fraction=2.0),
        training=_hwa(),
    )
    layer = AnalogLinear.from_digital(lin, cfg).train()
    layer.dac.range.fill_(1.0)
    x = (torch.randn(16, 40) * 0.8).requires_grad_()
    c = torch.randn(16, 6)
    (layer(x) * c).sum().backward()
    xd = x.detach().clone().requires_grad_()
    (lin(xd) * c).sum().backward()
    inside = x.detach().abs() <= 1.0
    assert 0 < int((~inside).sum()) < x.numel()
    torch.testing.assert_close(x.grad[inside], xd.grad[inside])
    assert bool((x.grad[~inside] == 0).all())


# ---------------------------------------------------------------------- learned input range
def test_learned_input_range_is_a_parameter_that_opens_a_clipping_range():
    torch.manual_seed(0)
    lin = nn.Linear(32, 8)
    cfg = aimc.AnalogConfig(device="ideal", training=_hwa(learn_input_range=True))
    layer = AnalogLinear.from_digital(lin, cfg).train()
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["weight", "bias", "dac.range_gain"]
    x = torch.randn(256, 32)
    layer.dac.range.fill_(0.3)  # far too small: most inputs clip
    with torch.no_grad():
        target = lin(x)
    opt = torch.optim.Adam([layer.dac.range_gain], lr=0.05)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = F.mse_loss(layer(x), target)
        loss.backward()
        assert bool(torch.isfinite(layer.dac.range_gain.grad))
        opt.step()
        losses.append(float(loss.detach()))
    assert float(layer.dac.range_gain.detach()) > 2.0
    assert losses[-1] < 0.5 * losses[0]
    # the eval forward uses the learned range too, and it survives a state_dict round trip
    twin = AnalogLinear.from_digital(lin, cfg)
    twin.load_state_dict(layer.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(twin.eval()(x), layer.eval()(x))
    assert float(twin.dac.full_scale(x)[0].detach()) == pytest.approx(
        0.3 * float(twin.dac.range_gain.detach())
    )


# ---------------------------------------------------------------------- the trained state
def test_fine_tuned_model_is_programmed_and_read_with_its_trained_weights():
    torch.manual_seed(0)
    cfg = aimc.AnalogConfig(
        device="pcm", training=_hwa(weight_noise="device", clip_sigma=3.0), seed=5
    )
    analog = aimc.convert_to_analog(_mlp(), cfg)
    x, y = _data("mlp", n=64)
    aimc.calibrate(analog, [x])
    w_before = analog[0].weight.detach().clone()
    history = fine_tune(analog, [(x[:32], y[:32]), (x[32:], y[32:])], epochs=3, lr=0.01)
    assert len(history) == 3 and history[-1] < history[0]
    assert not torch.equal(analog[0].weight, w_before)

    # the same trained weights converted afresh, with the same seeds and calibration
    digital = _mlp()
    with torch.no_grad():
        for name in ("0", "2"):
            digital.get_submodule(name).weight.copy_(analog.get_submodule(name).weight)
            digital.get_submodule(name).bias.copy_(analog.get_submodule(name).bias)
    fresh = aimc.convert_to_analog(digital, cfg)
    for model in (analog, fresh):
        aimc.calibrate(model, [x])
        aimc.program(model, seed=11)
        aimc.drift(model, 86400.0)
    with torch.no_grad():
        torch.testing.assert_close(analog.eval()(x), fresh.eval()(x), rtol=0, atol=0)
    for _, layer in aimc.analog_layers(analog):
        assert torch.equal(weight_fingerprint(layer.weight), layer.crossbar.fingerprint)


def test_eval_after_training_reprograms_the_changed_weights():
    cfg = aimc.AnalogConfig(
        device="pcm", training=_hwa(weight_noise="gaussian", weight_noise_std=0.02)
    )
    analog = aimc.convert_to_analog(_mlp(), cfg)
    x, y = _data("mlp")
    g_before = analog[0].crossbar.dev_g.clone()
    fine_tune(analog, [(x, y)], epochs=2, lr=0.05, optimizer="sgd")
    with torch.no_grad():
        analog.eval()(x)
    assert not torch.equal(analog[0].crossbar.dev_g, g_before)
    assert torch.equal(weight_fingerprint(analog[0].weight), analog[0].crossbar.fingerprint)


def test_fine_tune_rejects_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        fine_tune(_mlp(), [], epochs=1, lr=0.1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="epochs"):
        fine_tune(_mlp(), [], epochs=-1, lr=0.1)
    with pytest.raises(ValueError, match="schedule"):
        fine_tune(_mlp(), [], epochs=1, lr=0.1, schedule="step")


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_fine_tune_schedule_sets_the_rate_of_each_epoch(schedule):
    # plain SGD without momentum: each step moves the weights by exactly lr_e * grad, so a
    # hand-written loop with the documented rates must agree step for step
    x, y = _data("mlp", n=32)
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    epochs, lr = 4, 0.2
    model, ref = _mlp(), _mlp()
    fine_tune(model, batches, epochs, lr, optimizer="sgd", momentum=0.0, schedule=schedule)
    opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.0)
    for e in range(epochs):
        rate = lr if schedule == "constant" else lr * 0.5 * (1 + math.cos(math.pi * e / epochs))
        for group in opt.param_groups:
            group["lr"] = rate
        for xb, yb in batches:
            opt.zero_grad()
            F.cross_entropy(ref(xb), yb).backward()
            opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)


def test_conv_layer_device_noise_in_float64():
    cfg = aimc.AnalogConfig(device="pcm", training=_hwa(weight_noise="device"))
    conv = AnalogConv2d(2, 3, 3, padding=1, config=cfg, dtype=torch.float64).train()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    y = conv(x)
    assert y.dtype == torch.float64 and bool(torch.isfinite(y).all())
    y.sum().backward()
    assert conv.weight.grad.dtype == torch.float64
    assert bool(torch.isfinite(conv.weight.grad).all())


def test_device_noise_training_compensates_after_the_adc():
    """With device noise read at 1 year, the tiles hold the drifted weights (so the ADC sees the
    smaller currents, as on the chip) and the output is rescaled after the ADC: the train
    forward keeps the digital output scale."""
    torch.manual_seed(0)
    lin = nn.Linear(128, 64)
    cfg = aimc.AnalogConfig(
        device="pcm",
        training=_hwa(weight_noise="device", noise_t_s=3.15e7),
        dac=aimc.DACConfig(bits=None),
        adc=aimc.ADCConfig(bits=None),
    )
    layer = AnalogLinear.from_digital(lin, cfg).train()
    x = torch.randn(256, 128)
    w_tiles, _, comp = layer.crossbar.train_read(layer.weight_matrix(), layer.train_drift_gain)
    assert comp > 1.5  # PCM loses about half its conductance in a year
    v, sign, _ = layer.crossbar.normalized_tiles(layer.weight_matrix())
    assert float(w_tiles.abs().sum()) < 0.75 * float((v * sign).abs().sum())
    with torch.no_grad():
        y, ref = layer(x) - lin.bias, lin(x) - lin.bias
    gain = float((y * ref).sum() / (ref * ref).sum())
    assert abs(gain - 1.0) < 0.1, gain
