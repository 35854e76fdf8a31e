"""Tabulated: a device built from a level table reproduces it; bad tables give named errors.

Bounds: per level, a sample mean has standard error std/√n and a Gaussian sample std ≈
std/√(2n); k = 5 (a correct model fails one check with probability < 6e-7; generators fixed).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

import device_models
from device_models import Tabulated
from device_models.tabulated import EXAMPLE_CSV, read_levels_csv

K = 5.0
HOUR, DAY, YEAR = 3600.0, 86400.0, 365.25 * 86400.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def write(tmp_path: Path, text: str, name: str = "levels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_default_is_the_bundled_example() -> None:
    dev = Tabulated()
    table = read_levels_csv(EXAMPLE_CSV)
    assert dev.means == table["means"] and dev.stds == table["stds"] and dev.nus == table["nus"]
    assert (dev.g_min, dev.g_max) == (min(dev.means), max(dev.means))
    assert "ILLUSTRATIVE" in EXAMPLE_CSV.read_text(encoding="utf-8")
    assert dataclasses.replace(Tabulated.from_csv(EXAMPLE_CSV), csv_path=None) == dev
    assert dataclasses.replace(dev) == dev


@pytest.mark.statistical
def test_programmed_devices_reproduce_the_table() -> None:
    """Targets at every level mean: per-level mean and spread of G_prog are the table's."""
    dev = Tabulated()
    n = 15_000  # per level; 8 levels -> 1.2e5 devices
    means = torch.tensor(dev.means, dtype=torch.float64)
    target = means.repeat_interleave(n)
    g = dev.program(target, generator=gen(1))["g"].view(len(dev.means), n)
    for i, (m, s) in enumerate(zip(dev.means, dev.stds)):
        # every level mean is >= 5 std above the clip at 0 (lowest: 0.5 ± 0.1 µS)
        assert abs(float(g[i].mean()) - m) <= K * s / math.sqrt(n), (i, float(g[i].mean()), m)
        assert abs(float(g[i].std()) - s) <= K * s / math.sqrt(2 * n), (i, float(g[i].std()), s)


def test_nearest_level_is_picked() -> None:
    dev = Tabulated(means=[20.0, 0.0, 10.0], stds=[0.0, 0.0, 0.0])  # unsorted on purpose
    target = torch.tensor([0.0, 4.9, 5.0, 5.1, 14.0, 16.0, 99.0])
    g = dev.program(target, generator=gen())["g"]
    torch.testing.assert_close(g, torch.tensor([0.0, 0.0, 0.0, 10.0, 10.0, 20.0, 20.0]))
    assert dev.level_means == [0.0, 10.0, 20.0]
    assert torch.unique(g).numel() == 3


def test_levels_keep_their_own_std_and_nu_when_unsorted() -> None:
    dev = Tabulated(means=[20.0, 10.0], stds=[0.0, 1.0], nus=[0.0, 0.1], prog_noise_scale=0.0)
    state = dev.program(torch.tensor([9.0, 21.0]), generator=gen())
    torch.testing.assert_close(state["nu"], torch.tensor([0.1, 0.0]))


def test_drift_per_level() -> None:
    dev = Tabulated(means=[5.0, 20.0], stds=[0.5, 1.0], nus=[0.1, 0.05], t0=20.0)
    state = dev.program(torch.tensor([5.0, 20.0, 4.0]), generator=gen(2))
    torch.testing.assert_close(dev.conductance(state, 0.0), state["g"], rtol=0, atol=0)
    for t in (HOUR, DAY, YEAR):
        expect = state["g"] * ((t + 20.0) / 20.0) ** -torch.tensor([0.1, 0.05, 0.1])
        torch.testing.assert_close(dev.conductance(state, t), expect)
    g = torch.stack([dev.conductance(state, t) for t in (0.0, HOUR, DAY, YEAR)])
    assert bool((g[1:] <= g[:-1]).all())


def test_without_nu_there_is_no_drift() -> None:
    dev = Tabulated(means=[1.0, 2.0], stds=[0.1, 0.1])
    state = dev.program(torch.tensor([1.0, 2.0]), generator=gen())
    assert dev.state_keys() == ("g",) and set(state) == {"g"}
    assert not dev.drifts
    torch.testing.assert_close(dev.conductance(state, YEAR), state["g"], rtol=0, atol=0)
    assert dev.read_noise_std(state, YEAR) is None


def test_csv_round_trip_extra_columns_and_comments(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# a comment line\nlevel,mean_us,std_us,note\n0, 1.5 ,0.2,low\n1,3.0,0.3,high\n\n",
    )
    dev = Tabulated.from_csv(path, prog_noise_scale=0.5)
    assert dev.means == [1.5, 3.0] and dev.stds == [0.2, 0.3] and dev.nus is None
    assert dev.csv_path == str(path) and dev.prog_noise_scale == 0.5
    assert dataclasses.replace(dev) == dev
    assert device_models.get("tabulated", csv_path=str(path), prog_noise_scale=0.5) == dev


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("mean_us,nu\n1.0,0.1\n", r"missing column\(s\) \['std_us'\]"),
        ("std_us\n1.0\n", r"missing column\(s\) \['mean_us'\]"),
        ("mean_us,std_us\n1.0,-0.1\n", "line 2, column 'std_us'.*>= 0"),
        ("mean_us,std_us\n-1.0,0.1\n", "line 2, column 'mean_us'.*>= 0"),
        ("mean_us,std_us\n1.0,abc\n", "line 2, column 'std_us': 'abc' is not a number"),
        ("mean_us,std_us\n1.0,0.1\n2.0\n", "line 3, column 'std_us': '' is not a number"),
        ("mean_us,std_us,nu\n1.0,0.1,nan\n", "line 2, column 'nu'.*finite"),
        ("mean_us,std_us\n", "no level rows"),
        ("# only a comment\n", "no header row"),
        ("mean_us,std_us\n1.0,0.1\n", "Tabulated.means must hold at least 2 distinct"),
        ("mean_us,std_us\n1.0,0.1\n1.0,0.2\n", "Tabulated.means must hold at least 2 distinct"),
    ],
)
def test_bad_csv(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=match) as err:
        Tabulated.from_csv(path)
    assert "Tabulated." in str(err.value)


def test_missing_csv_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Tabulated.csv_path"):
        Tabulated(csv_path=str(tmp_path / "nope.csv"))


def test_csv_and_lists_must_agree(tmp_path: Path) -> None:
    path = write(tmp_path, "mean_us,std_us\n1.0,0.1\n2.0,0.1\n")
    assert Tabulated(csv_path=str(path), means=[1.0, 2.0]).means == [1.0, 2.0]
    with pytest.raises(ValueError, match="Tabulated.means.*disagrees"):
        Tabulated(csv_path=str(path), means=[1.0, 3.0])
    with pytest.raises(ValueError, match="Tabulated.nus.*disagrees"):
        Tabulated(csv_path=str(path), nus=[0.1, 0.1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"means": [1.0, 2.0]}, "Tabulated.stds is missing"),
        ({"stds": [1.0, 2.0]}, "Tabulated.means is missing"),
        ({"means": [1.0, 2.0], "stds": [0.1]}, "Tabulated.stds must have one entry per level"),
        ({"means": [1.0, -2.0], "stds": [0.1, 0.1]}, "Tabulated.means must be >= 0"),
        ({"means": [1.0, 2.0], "stds": [0.1, -0.1]}, "Tabulated.stds must be >= 0"),
        ({"means": [1.0, 2.0], "stds": [0.1, 0.1], "nus": [0.1, -0.1]}, "Tabulated.nus"),
        ({"means": [1.0, float("nan")], "stds": [0.1, 0.1]}, r"Tabulated.means\[1\]"),
        ({"means": [], "stds": []}, "Tabulated.means"),
        ({"means": [1.0, 2.0], "stds": [0.1, 0.1], "g_min": 3.0}, "Tabulated.g_min"),
        ({"means": [1.0, 2.0], "stds": [0.1, 0.1], "t0": 0.0}, "Tabulated.t0"),
        ({"means": [1.0, 2.0], "stds": [0.1, 0.1], "drift_scale": -1.0}, "Tabulated.drift_scale"),
        (
            {"means": [1.0, 2.0], "stds": [0.1, 0.1], "prog_noise_scale": -1.0},
            "Tabulated.prog_noise_scale",
        ),
    ],
)
def test_bad_fields(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Tabulated(**kwargs)
