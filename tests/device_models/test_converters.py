"""DAC/ADC quantizers: bounded, on their grid, idempotent, error within half an LSB."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from device_models.converters import (
    adc_codes_,
    adc_readout,
    bit_planes,
    quantize_dac,
    quantize_dac_,
)

bits = st.integers(1, 12)
values = st.lists(st.floats(-50, 50, allow_nan=False, width=32), min_size=1, max_size=64)
ranges = st.floats(0.01, 20.0)


@given(values=values, r=ranges, b=bits, signed=st.booleans())
def test_dac_bounded_on_grid_idempotent(values, r, b, signed):
    x = torch.tensor(values, dtype=torch.float64)
    levels = 2 ** (b - 1) - 1 if signed else 2**b - 1
    if levels == 0:
        return
    q = quantize_dac(x, r, levels, signed)
    lo = -1.0 if signed else 0.0
    assert bool(((q >= lo) & (q <= 1.0)).all())
    codes = q * levels
    torch.testing.assert_close(codes, torch.round(codes))  # on the grid k / levels
    torch.testing.assert_close(quantize_dac(q * r, r, levels, signed), q)  # idempotent
    inside = (x / r >= lo) & (x / r <= 1.0)
    err = (q - x / r).abs()[inside]
    assert bool((err <= 0.5 / levels + 1e-12).all())  # half an LSB


@given(values=values, fs=ranges, b=st.integers(2, 12))
def test_adc_bounded_idempotent_half_lsb(values, fs, b):
    i = torch.tensor(values, dtype=torch.float64)
    levels = 2 ** (b - 1) - 1
    y = adc_readout(i, fs, levels)
    assert bool((y.abs() <= fs * (1 + 1e-12)).all())
    torch.testing.assert_close(adc_readout(y, fs, levels), y)
    lsb = fs / levels
    inside = i.abs() <= fs
    assert bool(((y - i).abs()[inside] <= lsb / 2 + 1e-12).all())
    # saturation: clipped reads sit on the top code, levels * (fs / levels) (equal to fs up to
    # the rounding of that product)
    torch.testing.assert_close(y[i > fs], torch.full_like(y[i > fs], fs))
    torch.testing.assert_close(y[i < -fs], torch.full_like(y[i < -fs], -fs))


def test_ideal_adc_passes_through_and_noise_is_seeded():
    i = torch.randn(1000, dtype=torch.float64)
    torch.testing.assert_close(adc_readout(i, 1.0, None), i)
    a = adc_readout(i, 2.0, None, noise=0.1, generator=torch.Generator().manual_seed(3))
    b = adc_readout(i, 2.0, None, noise=0.1, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the noise std is noise * full scale: 0.2; a sample std of n=1000 is within 5 sigma/sqrt(2n)
    assert abs(float((a - i).std()) - 0.2) < 5 * 0.2 / (2 * 1000) ** 0.5


@given(codes=st.lists(st.integers(-255, 255), min_size=1, max_size=32))
def test_bit_planes_reconstruct(codes):
    c = torch.tensor(codes, dtype=torch.float32)
    planes = bit_planes(c, 8)
    assert set(planes.unique().tolist()) <= {-1.0, 0.0, 1.0}
    weights = torch.tensor([2.0**j for j in range(8)]).view(-1, 1)
    torch.testing.assert_close((planes * weights).sum(0), c)


def test_ste_gradients_identity_inside_zero_outside():
    x = torch.tensor([-3.0, -0.5, 0.2, 0.9, 2.5], requires_grad=True)
    quantize_dac(x, 1.0, 7).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))


def _ties_and_saturation(levels: int, dtype: torch.dtype) -> torch.Tensor:
    """Values in code units: every half-integer tie of the range (round half to even), values
    beyond both ends, signed zeros and random values."""
    ties = torch.arange(-levels - 3, levels + 3, dtype=dtype) + 0.5
    gen = torch.Generator().manual_seed(levels)
    rand = (torch.rand(4000, generator=gen, dtype=dtype) * 2 - 1) * (levels + 5)
    return torch.cat([ties, rand, torch.tensor([0.0, -0.0, 1e30, -1e30], dtype=dtype)])


def test_fused_quantizers_are_bitwise_the_general_formulas():
    for dtype in (torch.float32, torch.float64):
        for levels in (1, 3, 7, 127, 255):
            codes = _ties_and_saturation(levels, dtype)
            # ADC: round half to even, then clamp; torch's fake quantizer at scale 1 agrees
            want = torch.clamp(torch.round(codes), -levels, levels)
            got = adc_codes_(codes.clone(), levels)
            assert torch.equal(got, want)
            fake = torch.fake_quantize_per_tensor_affine(codes.float(), 1.0, 0, -levels, levels)
            assert torch.equal(got.float(), fake)
            # DAC: normalize, clamp to the codes, round, back to [-1, 1]
            for signed in (True, False):
                for r in (0.37, 1.0, 3.0):
                    x = codes * (r / levels)
                    lo = -levels if signed else 0
                    ref = torch.round(torch.clamp(x * (levels / r), lo, levels)) / levels
                    got = quantize_dac_(x, levels / r, levels, signed)
                    assert torch.equal(got, ref) and not got.data_ptr() == x.data_ptr()
                    assert torch.equal(quantize_dac(x, r, levels, signed), ref)
