"""Checks every registered device model gets (timm-style sweep over ``device_models.names()``).

Named ``test_device_registry.py`` rather than ``test_registry.py`` so that it cannot collide
with a ``tests/aimc/test_registry.py`` (the test folders are not packages).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import device_models
from device_models import DeviceModel

NAMES = device_models.names()
TIMES = [0.0, 1.0, 3600.0, 86400.0, 365.25 * 86400.0]
# The shape analog layers program: [pair, slices, groups, row tiles, rows, columns].
LAYER_SHAPE = (2, 2, 1, 3, 4, 5)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def targets(dev: DeviceModel, shape=LAYER_SHAPE, dtype=torch.float32) -> torch.Tensor:
    u = torch.rand(shape, generator=gen(123), dtype=dtype)
    return u * dev.g_max


def test_expected_devices_are_registered() -> None:
    assert {"ideal", "pcm", "rram", "tabulated"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_fresh_instances_and_describe(name: str) -> None:
    a, b = device_models.get(name), device_models.get(name)
    assert a is not b and a == b and dataclasses.replace(a) == a
    assert isinstance(a, DeviceModel) and type(a).name == name
    assert isinstance(a.describe(), str) and a.describe().startswith(name)
    assert 0 <= a.g_min < a.g_max
    assert a.state_keys()[0] == "g"
    assert set(a.state_dtypes()) == set(a.state_keys())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_state_shapes_dtypes_and_no_nan(name: str, dtype: torch.dtype) -> None:
    dev = device_models.get(name)
    g_target = targets(dev, dtype=dtype)
    state = dev.program(g_target, generator=gen(0))
    assert tuple(state) == dev.state_keys()
    for key, want in dev.state_dtypes().items():
        value = state[key]
        assert isinstance(value, torch.Tensor), key
        assert value.shape == g_target.shape, key
        assert value.dtype == (dtype if want is None else want), key
        assert value.device == g_target.device, key
    assert bool((state["g"] >= 0).all())
    for t in TIMES:
        g_t = dev.conductance(state, t)
        assert g_t.shape == g_target.shape and g_t.dtype == dtype
        assert bool(torch.isfinite(g_t).all())
        std = dev.read_noise_std(state, t)
        if std is not None:
            assert torch.broadcast_shapes(std.shape, g_t.shape) == g_t.shape
            assert std.dtype == dtype and bool((std >= 0).all()) and bool(torch.isfinite(std).all())
        r = dev.read(state, t, generator=gen(1))
        assert r.shape == g_target.shape and r.dtype == dtype and bool(torch.isfinite(r).all())


@pytest.mark.parametrize("name", NAMES)
def test_identity_at_t0(name: str) -> None:
    dev = device_models.get(name)
    state = dev.program(targets(dev), generator=gen(0))
    torch.testing.assert_close(dev.conductance(state, 0.0), state["g"], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_determinism_with_the_same_seed(name: str) -> None:
    dev = device_models.get(name)
    g_target = targets(dev)
    s1 = dev.program(g_target, generator=gen(7))
    s2 = dev.program(g_target, generator=gen(7))
    for key in dev.state_keys():
        torch.testing.assert_close(s1[key], s2[key], rtol=0, atol=0)
    r1 = dev.read(s1, 86400.0, generator=gen(8))
    r2 = dev.read(s2, 86400.0, generator=gen(8))
    torch.testing.assert_close(r1, r2, rtol=0, atol=0)
    if dev.stochastic:  # a different seed gives a different draw
        s3 = dev.program(g_target, generator=gen(9))
        r3 = dev.read(s3, 86400.0, generator=gen(8))
        assert not torch.equal(r1, r3)


@pytest.mark.parametrize("name", NAMES)
def test_global_rng_is_untouched(name: str) -> None:
    dev = device_models.get(name)
    before = torch.get_rng_state()
    state = dev.program(targets(dev), generator=gen(0))
    dev.read(state, 3600.0, generator=gen(1))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", NAMES)
def test_empty_and_scalar_targets(name: str) -> None:
    dev = device_models.get(name)
    for shape in [(0, 3), ()]:
        g_target = torch.full(shape, dev.g_max / 2)
        state = dev.program(g_target, generator=gen(0))
        assert all(v.shape == g_target.shape for v in state.values())
        assert dev.read(state, 10.0, generator=gen(1)).shape == g_target.shape


@pytest.mark.parametrize("name", NAMES)
def test_targets_keep_gradients_or_are_accepted_without(name: str) -> None:
    """Programming a tensor that requires grad works (hardware-aware training may do that)."""
    dev = device_models.get(name)
    g_target = targets(dev).requires_grad_(True)
    state = dev.program(g_target, generator=gen(0))
    assert bool(torch.isfinite(state["g"]).all())


# --- bad input, for every model ------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_targets(name: str, bad: float) -> None:
    dev = device_models.get(name)
    with pytest.raises(ValueError, match="g_target"):
        dev.program(torch.tensor([1.0, bad]), generator=gen(0))


@pytest.mark.parametrize("name", NAMES)
def test_non_tensor_or_integer_targets(name: str) -> None:
    dev = device_models.get(name)
    with pytest.raises(TypeError, match="g_target"):
        dev.program([1.0, 2.0])
    with pytest.raises(TypeError, match="g_target"):
        dev.program(torch.tensor([1, 2]))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [-1.0, float("nan"), float("inf")])
def test_bad_times(name: str, t: float) -> None:
    dev = device_models.get(name)
    state = dev.program(torch.tensor([1.0, 2.0]), generator=gen(0))
    with pytest.raises(ValueError, match="time"):
        dev.conductance(state, t)
    with pytest.raises(ValueError, match="time"):
        dev.read(state, t, generator=gen(1))
    if name != "ideal":  # Ideal.read_noise_std is the base class's: exact reads, no check
        with pytest.raises(ValueError, match="time"):
            dev.read_noise_std(state, t)


@pytest.mark.parametrize("name", NAMES)
def test_g_min_not_below_g_max(name: str) -> None:
    with pytest.raises(ValueError, match="g_min"):
        device_models.get(name, g_min=30.0, g_max=30.0)


def test_unknown_name_and_bad_field() -> None:
    with pytest.raises(KeyError, match="did you mean 'pcm'"):
        device_models.get("pcn")
    with pytest.raises(TypeError, match="bad field for device 'rram'"):
        device_models.get("rram", not_a_field=1)


# --- on an accelerator ---------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_cuda_state_stays_on_device_and_is_deterministic(name: str, dtype: torch.dtype) -> None:
    dev = device_models.get(name, **({"stuck_on_rate": 0.01} if name == "rram" else {}))
    g_target = targets(dev, shape=(2, 64, 4, 8), dtype=dtype).cuda()

    def cuda_gen(seed: int) -> torch.Generator:
        return torch.Generator(device="cuda").manual_seed(seed)

    s1 = dev.program(g_target, generator=cuda_gen(0))
    s2 = dev.program(g_target, generator=cuda_gen(0))
    for key, want in dev.state_dtypes().items():
        assert s1[key].is_cuda and s1[key].dtype == (dtype if want is None else want)
        torch.testing.assert_close(s1[key], s2[key], rtol=0, atol=0)
    for t in TIMES:
        r = dev.read(s1, t, generator=cuda_gen(1))
        assert r.is_cuda and r.dtype == dtype and bool(torch.isfinite(r).all())
        std = dev.read_noise_std(s1, t)
        assert std is None or std.is_cuda
    # the same physics as on the CPU: conductance is a deterministic function of the state
    cpu_state = {k: v.cpu() for k, v in s1.items()}
    torch.testing.assert_close(
        dev.conductance(s1, 86400.0).cpu(), dev.conductance(cpu_state, 86400.0)
    )
