"""Every physical field of the cell models is bounded to a documented, physical range."""

from __future__ import annotations

import pytest
import torch

import aimc
import device_models
from device_models._checks import G_MAX_LIMIT_US, SCALE_LIMIT, TIME_LIMIT_S


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (device_models.PCM, {"g_max": 1e30}, "PCM.g_max"),
        (device_models.PCM, {"g_max": G_MAX_LIMIT_US * 1.01}, "PCM.g_max"),
        (device_models.PCM, {"t0": TIME_LIMIT_S * 10}, "PCM.t0"),
        (device_models.PCM, {"t_read": 2.0}, "PCM.t_read"),
        (device_models.PCM, {"prog_coeffs": [1e20, 0.0]}, "PCM.prog_coeffs[0]"),
        (device_models.PCM, {"prog_g_ref": 1e9}, "PCM.prog_g_ref"),
        (device_models.PCM, {"nu_mu_coeffs": [5.0, 0.0]}, "PCM.nu_mu_coeffs[0]"),
        (device_models.PCM, {"nu_mu_clip": [0.0, 3.0]}, "PCM.nu_mu_clip[1]"),
        (device_models.PCM, {"read_q_coeff": 50.0}, "PCM.read_q_coeff"),
        (device_models.PCM, {"read_q_exp": 1e3}, "PCM.read_q_exp"),
        (device_models.PCM, {"read_q_max": 2.0}, "PCM.read_q_max"),
        (device_models.PCM, {"drift_scale": SCALE_LIMIT + 1}, "PCM.drift_scale"),
        (device_models.RRAM, {"g_max": 1e30}, "RRAM.g_max"),
        (device_models.RRAM, {"g_min": 1e30}, "RRAM.g_min"),
        (device_models.RRAM, {"levels": 10**9}, "RRAM.levels"),
        (device_models.RRAM, {"g_ref": 1e12}, "RRAM.g_ref"),
        (device_models.RRAM, {"prog_coeffs": [0.0, -1e30]}, "RRAM.prog_coeffs[1]"),
        (device_models.RRAM, {"t0": 1e30}, "RRAM.t0"),
        (device_models.RRAM, {"relax_std": 1e9}, "RRAM.relax_std"),
        (device_models.RRAM, {"relax_mean": -1e9}, "RRAM.relax_mean"),
        (device_models.RRAM, {"read_noise": 5.0}, "RRAM.read_noise"),
        (device_models.RRAM, {"prog_noise_scale": 1e6}, "RRAM.prog_noise_scale"),
        (device_models.Ideal, {"g_max": 1e30}, "Ideal.g_max"),
        (device_models.Tabulated, {"means": [0.0, 1e30], "stds": [0, 0]}, "Tabulated.means[1]"),
        (device_models.Tabulated, {"means": [0.0, 1.0], "stds": [0, 1e9]}, "Tabulated.stds[1]"),
        (
            device_models.Tabulated,
            {"means": [0.0, 1.0], "stds": [0, 0], "nus": [0.0, 7.0]},
            "Tabulated.nus[1]",
        ),
        (device_models.Tabulated, {"t0": 1e30}, "Tabulated.t0"),
        (device_models.Tabulated, {"prog_noise_scale": 1e4}, "Tabulated.prog_noise_scale"),
    ],
)
def test_an_unphysical_value_is_refused_naming_the_field_and_range(cls, kwargs, field):
    with pytest.raises(ValueError) as err:
        cls(**kwargs)
    assert str(err.value).startswith(field) and "must be in" in str(err.value)


@pytest.mark.parametrize("cls", [device_models.PCM, device_models.RRAM, device_models.Ideal])
def test_the_largest_allowed_conductance_gives_finite_outputs(cls):
    dev = cls(g_max=G_MAX_LIMIT_US, g_min=0.0)
    cfg = aimc.AnalogConfig(device=dev, tile=aimc.TileConfig(rows=64, cols=64))
    layer = aimc.nn.AnalogLinear(200, 30, config=cfg).eval()
    x = torch.randn(16, 200) * 100
    aimc.calibrate(layer, [x])
    aimc.drift(layer, 86400.0)
    assert torch.isfinite(layer(x)).all()


def test_the_defaults_lie_inside_the_bounds():
    for name in device_models.names():
        device_models.get(name)  # each registered default validates
