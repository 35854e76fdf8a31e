"""Layer state stays true to the weights and survives copies: stale ranges, zero columns, weight
edits, copies and reloads, devices, inference mode, compile, nested saturation tracking, dtypes."""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import pytest
import torch
from torch import nn

import aimc


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _linear(config, in_f=16, out_f=8, seed=0):
    torch.manual_seed(seed)
    return aimc.convert_to_analog(nn.Linear(in_f, out_f), config)


# --- 5: stale ranges, auto-calibration, degenerate calibration batches -----------------------
def test_ranges_calibrated_for_other_weights_are_flagged_stale_naming_calibrate():
    layer = _linear(aimc.AnalogConfig(device="ideal"))
    x = _x(32, 16)
    aimc.calibrate(layer, [x])
    layer.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x)  # calibrated for these weights: silent
    with torch.no_grad():
        layer.weight.mul_(3.0)
    with pytest.warns(UserWarning, match=r"weights changed since aimc\.calibrate") as rec:
        layer(x)
    assert "aimc.calibrate" in str(rec[0].message)
    aimc.calibrate(layer, [x])  # recalibrating clears it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x)


def test_auto_calibration_on_the_first_eval_batch_warns_once_naming_calibrate():
    layer = _linear(aimc.AnalogConfig(device="ideal")).eval()
    with pytest.warns(UserWarning, match=r"aimc\.calibrate"):
        layer(_x(1, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(_x(4, 16, seed=1))


def test_an_all_zero_calibration_batch_is_an_error_naming_the_layer():
    net = aimc.convert_to_analog(nn.Sequential(nn.Linear(16, 8)), aimc.AnalogConfig(device="ideal"))
    with pytest.raises(ValueError, match=r"0: .*all zero"):
        aimc.calibrate(net, [torch.zeros(4, 16)])


# --- 7: all-zero weight columns --------------------------------------------------------------
def test_an_all_zero_weight_column_reads_zero_not_noise():
    torch.manual_seed(0)
    lin = nn.Linear(64, 6)
    with torch.no_grad():
        lin.weight[2] = 0.0  # a pruned output column
    cfg = aimc.AnalogConfig(
        device="pcm", dac=aimc.DACConfig(bits=None), adc=aimc.ADCConfig(bits=None)
    )
    layer = aimc.convert_to_analog(lin, cfg).eval()
    x = _x(256, 64)
    aimc.calibrate(layer, [x])
    aimc.drift(layer, 86400.0)
    err = layer(x) - lin(x)
    assert float(err[:, 2].abs().max()) == 0.0
    assert float(err[:, [0, 1, 3]].std()) > 0  # the others do see device noise


# --- 9: weight edits that keep simple statistics ---------------------------------------------
def test_a_permutation_of_the_weights_is_reprogrammed():
    layer = _linear(aimc.AnalogConfig.ideal(), in_f=4, out_f=4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 1.0, 2.0]] * 4))
    layer.eval()
    x = torch.eye(4)
    layer(x)
    with torch.no_grad():  # swap two pairs whose ramp-weighted sums cancel
        w = layer.weight.data
        w[0, 0], w[0, 1] = 2.0, 1.0
        w[3, 2], w[3, 3] = 2.0, 1.0
    torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias))


def test_an_edit_through_data_is_reprogrammed():
    layer = _linear(aimc.AnalogConfig.ideal()).eval()
    x = _x(3, 16)
    layer(x)
    layer.weight.data[0, 0] += 1.0  # .data does not bump the version counter
    torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias))


# --- 10: copies and reloads reproduce the read-noise realisation --------------------------------
@pytest.mark.parametrize("read_noise", ["drift", "forward"])
def test_copies_and_reloads_reproduce_the_original_exactly(read_noise):
    cfg = aimc.AnalogConfig(
        device="pcm", read_noise=read_noise, adc=aimc.ADCConfig(bits=8, noise=0.01)
    )
    net = aimc.convert_to_analog(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)), cfg)
    x = _x(8, 16)
    aimc.calibrate(net, [x])
    net.eval()
    aimc.drift(net, 3600.0)
    net(x)  # the original has drawn before the copy
    twin = copy.deepcopy(net)
    pickled = pickle.loads(pickle.dumps(net))
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    reloaded = aimc.convert_to_analog(
        nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)), cfg
    )
    reloaded.load_state_dict(torch.load(buf, weights_only=True))
    reloaded.eval()
    expected = [net(x) for _ in range(2)]
    for other in (twin, pickled, reloaded):
        for want in expected:
            torch.testing.assert_close(other(x), want, rtol=0, atol=0)


# --- 11: device state of another device model --------------------------------------------------
@pytest.mark.parametrize(("src", "dst"), [("pcm", "rram"), ("pcm", "ideal"), ("rram", "pcm")])
def test_a_state_dict_of_another_device_is_refused_at_load(src, dst):
    a = _linear(aimc.AnalogConfig(device=src))
    b = _linear(aimc.AnalogConfig(device=dst))
    with pytest.raises(ValueError, match=r"device"):
        b.load_state_dict(a.state_dict())


def test_a_digital_state_dict_still_loads():
    lin = nn.Linear(16, 8)
    layer = _linear(aimc.AnalogConfig(device="pcm"))
    layer.load_state_dict(lin.state_dict(), strict=False)
    torch.testing.assert_close(layer.weight, lin.weight)


# --- 16: inference mode ------------------------------------------------------------------------
def test_convert_and_run_inside_inference_mode_then_autograd():
    with torch.inference_mode():
        net = aimc.convert_to_analog(
            nn.Sequential(nn.Linear(16, 8)), aimc.AnalogConfig(device="pcm")
        )
        x = _x(4, 16)
        aimc.calibrate(net, [x])
        y_inf = net.eval()(x)
    xg = _x(4, 16).requires_grad_()
    y = net(xg)
    y.sum().backward()
    assert xg.grad is not None
    torch.testing.assert_close(y.detach(), y_inf)


# --- 17: torch.compile -----------------------------------------------------------------------
def test_torch_compile_runs_the_eval_forward():
    net = aimc.convert_to_analog(
        nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)), aimc.AnalogConfig(device="pcm")
    )
    x = _x(4, 16)
    aimc.calibrate(net, [x])
    net.eval()
    expected = net(x)
    compiled = torch.compile(net, backend="eager")
    torch.testing.assert_close(compiled(x), expected)


def test_torch_jit_trace_is_refused_with_a_named_error():
    net = _linear(aimc.AnalogConfig(device="pcm")).eval()
    with pytest.raises(RuntimeError, match=r"torch\.jit.*torch\.compile"):
        torch.jit.trace(net, _x(2, 16))


# --- 20: nested saturation tracking ------------------------------------------------------------
def test_nested_saturation_tracking():
    net = _linear(
        aimc.AnalogConfig(
            device="ideal", adc=aimc.ADCConfig(bits=4, range_fraction=0.05, range_mode="max")
        )
    ).eval()
    x = _x(32, 16)
    with aimc.track_adc_saturation(net) as outer:
        net(x)
        with aimc.track_adc_saturation(net) as inner:
            net(x)
        net(x)
    assert 0 < inner[""] <= 1 and 0 < outer[""] <= 1
    assert outer[""] == pytest.approx(inner[""])  # the same input thrice


# --- Also: backward through an eval forward, input dtypes --------------------------------------
def test_backward_through_an_eval_forward_warns_that_weights_get_no_gradient():
    layer = _linear(aimc.AnalogConfig.ideal()).eval()
    x = _x(3, 16).requires_grad_()
    y = layer(x)
    with pytest.warns(UserWarning, match=r"eval forward.*weight.*no gradient"):
        y.sum().backward()
    assert layer.weight.grad is None and x.grad is not None


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.int64])
@pytest.mark.parametrize("device", ["ideal", "pcm"])
def test_an_input_dtype_torch_refuses_is_refused_naming_the_layer(dtype, device):
    lin = nn.Linear(16, 8)
    net = aimc.convert_to_analog(nn.Sequential(lin), aimc.AnalogConfig(device=device)).eval()
    x = (_x(2, 16) * 4).to(dtype)
    with pytest.raises(RuntimeError) as torch_err:
        lin(x)
    with pytest.raises(RuntimeError, match=r"^0: ") as err:
        net(x)
    assert str(dtype).split(".")[-1] in str(err.value).lower() or "dtype" in str(err.value)
    assert torch_err.value is not None
