"""Design-space search: the search space, per-layer choices, cost-only pre-evaluation, the
report's hypervolume and best design, and a resumable search through the Hydra CLI."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time

import optuna
import pytest
from exp_helpers import TINY, compose_config, run_module

from experiments.config import ConfigError, build
from experiments.dse import SearchError, format_value, make_sampler, parse_search_space
from experiments.dse_report import best_design, hypervolume_2d
from experiments.pipeline import _check_layer_names, _convert, cost_only


# --- search space ----------------------------------------------------------------------------
def test_search_space_from_params_and_command_line():
    space = parse_search_space(
        {"adc.bits": "choice(4,6,8)", "tile.rows": "range(64,257,64)", "dac.bits": "choice(6,8)"},
        [
            "dac.bits=7",  # a plain override fixes a param
            "mapping.weight_bits=interval(4,8)",
            "adc.range_fraction=tag(log,interval(0.25,1.0))",
            "analog.layers.fc1.digital=choice(false,true)",
            "analog.digital=choice([],[fc2])",
        ],
    )
    d = space.distributions
    assert d["adc.bits"].choices == (4, 6, 8)
    assert (d["tile.rows"].low, d["tile.rows"].high, d["tile.rows"].step) == (64, 256, 64)
    assert "dac.bits" not in d and space.fixed == ["dac.bits=7"]
    assert (d["mapping.weight_bits"].low, d["mapping.weight_bits"].high) == (4, 8)
    assert d["adc.range_fraction"].log and d["adc.range_fraction"].low == 0.25
    assert d["analog.digital"].choices == ("[]", "[fc2]")
    overrides = space.overrides({"adc.bits": 4, "analog.layers.fc1.digital": True})
    assert overrides == ["dac.bits=7", "adc.bits=4", "++analog.layers.fc1.digital=true"]


def test_search_space_errors_name_the_key():
    with pytest.raises(SearchError, match="adc.bits"):
        parse_search_space({"adc.bits": "range(8,4)"}, [])
    with pytest.raises(SearchError, match="sampler='grid'"):
        make_sampler("grid", 0)


def test_format_value():
    assert format_value(None) == "null" and format_value(False) == "false"
    assert format_value(["fc1", "fc2"]) == "[fc1,fc2]" and format_value(6) == "6"


# --- per-layer choices -------------------------------------------------------------------------
def _experiment(*overrides):
    return build(compose_config([*TINY, *overrides]))


def test_per_layer_overrides_reach_the_converted_layers():
    import torch

    exp = _experiment("++analog.layers.fc1.adc.bits=5", "++analog.layers.fc1.tile.rows=32")
    assert exp.layer_configs["fc1"].adc.bits == 5 and exp.analog.adc.bits == 8
    model = exp.model_factory(in_shape=(1, 8, 8), num_classes=10, **exp.model_kwargs)
    analog = _convert(exp, model)
    assert analog.fc1.config.adc.bits == 5 and analog.fc1.config.tile.rows == 32
    assert analog.fc2.config.adc.bits == 8 and analog.fc2.config.tile.rows == 256

    digital = _experiment("analog.digital=[fc2]")
    analog = _convert(digital, model)
    assert type(analog.fc2) is torch.nn.Linear and analog.fc1.config.adc.bits == 8


def test_layers_with_dotted_names_and_digital_flag():
    exp = _experiment(
        "model=lenet5",
        "++analog.layers.features.0.adc.bits=4",
        "++analog.layers.classifier.4.digital=true",
    )
    assert exp.layer_configs["features.0"].adc.bits == 4
    assert exp.digital_layers == ["classifier.4"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("++analog.layers.fc1.adc.bitz=4", "analog.layers.fc1.adc.bitz: unknown field"),
        ("++analog.layers.fc1.adc.bits=0", "analog.layers.fc1.adc"),
        ("++analog.layers.fc1.digital=maybe", "analog.layers.fc1.digital"),
    ],
)
def test_bad_per_layer_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        _experiment(override)


def test_unknown_layer_and_all_digital_are_named_errors():
    exp = _experiment("++analog.layers.fc9.adc.bits=4")
    model = exp.model_factory(in_shape=(1, 8, 8), num_classes=10, **exp.model_kwargs)
    with pytest.raises(ConfigError, match="'fc9' matches no layer of MLP; its layers: fc1, fc2"):
        _check_layer_names(exp, model)
    exp = _experiment("analog.digital=[fc*]")
    with pytest.raises(ConfigError, match="every layer of MLP is digital"):
        _check_layer_names(exp, model)


def test_cost_only_needs_no_data_and_follows_per_layer_choices(tmp_path):
    root = f"paths.root_dir={tmp_path}"
    base = cost_only(_experiment(root))
    fewer_bits = cost_only(_experiment(root, "++analog.layers.fc1.adc.bits=4"))
    assert not (tmp_path / "data").exists()  # nothing loaded or downloaded
    assert base["energy_j"] > 0 and base["area_mm2"] > 0
    assert fewer_bits["energy_j"] < base["energy_j"]  # the ADC energy grows with its bits
    half = cost_only(_experiment(root, "analog.digital=[fc2]"))
    assert half["energy_j"] != base["energy_j"]


# --- report ------------------------------------------------------------------------------------
def test_hypervolume_2d_against_hand_computed_areas():
    ref = (1.0, 10.0)
    assert hypervolume_2d([(0.5, 5.0)], ref) == pytest.approx(0.5 * 5.0)
    # two steps: [0.2, 0.6) x (8 -> 10) + [0.6, 1.0) x (4 -> 10)... sorted by the first coordinate
    assert hypervolume_2d([(0.2, 8.0), (0.6, 4.0)], ref) == pytest.approx(0.4 * 2.0 + 0.4 * 6.0)
    # a dominated point and one beyond the reference add nothing
    assert hypervolume_2d([(0.2, 8.0), (0.6, 4.0), (0.7, 5.0), (0.1, 11.0)], ref) == (
        pytest.approx(3.2)
    )
    assert hypervolume_2d([], ref) == 0.0


def test_best_design_is_the_cheapest_within_tolerance_of_digital():
    trials = [
        {"trial": 0, "accuracy": 0.954, "energy_j": 1.0},
        {"trial": 1, "accuracy": 0.958, "energy_j": 2.0},
        {"trial": 2, "accuracy": 0.962, "energy_j": 3.0},
    ]
    assert best_design(trials, 0.96, 0.5, "energy_j")["trial"] == 1
    assert best_design(trials, 0.96, 1.0, "energy_j")["trial"] == 0
    assert best_design(trials, 0.99, 0.5, "energy_j")["trial"] == 2  # none close: most accurate


# --- the search through Hydra ------------------------------------------------------------------
SEARCH = [
    "-m",
    "hydra/sweeper=dse",
    "hydra.sweeper.params={adc.bits:'choice(3,4,6,8)',tile.rows:'choice(32,64)'}",
    "++analog.layers.fc2.digital=choice(false,true)",
    "hydra.sweeper.sampler=random",
    "hydra.sweeper.fidelity.promote=1",
    "hydra.sweeper.fidelity.low=['eval.repeats=1','eval.only_objective_time=true',"
    "'eval.max_samples=60','logger=none']",
    "hydra.sweeper.fidelity.high=['eval.repeats=2','logger=none']",
    *TINY,
]


def _search(tmp_path, sweep, n_trials, **popen):
    return run_module(
        "experiments.run",
        *SEARCH,
        f"hydra.sweeper.n_trials={n_trials}",
        f"paths.root_dir={tmp_path}",
        f"hydra.sweep.dir={sweep}",
        **popen,
    )


def _trials(sweep):
    study = optuna.load_study(study_name="dse", storage=f"sqlite:///{sweep}/optuna.db")
    return study, study.get_trials(deepcopy=False)


def _finished(sweep) -> int:
    try:
        with sqlite3.connect(f"{sweep}/optuna.db") as db:
            return db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_search_writes_a_report_and_an_interrupted_search_resumes(tmp_path):
    sweep = tmp_path / "search"
    proc = _search(tmp_path, sweep, 6, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _finished(sweep) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)  # a hard stop: no chance to tidy up
    proc.wait()
    _, before = _trials(sweep)
    done = [t for t in before if t.state.name == "COMPLETE"]
    assert 2 <= len(done) < 6

    out = _search(tmp_path, sweep, 6)
    assert out.returncode == 0, out.stderr[-3000:]
    study, trials = _trials(sweep)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
    interrupted = {int(k.split("_")[1]) for k in study.user_attrs if k.startswith("interrupted_")}
    assert len([t for t in finished if t.number not in interrupted]) == 6
    # the trials done before the stop were kept, not run again
    assert all(trials[t.number].values == t.values for t in done)
    assert all(t.state.name != "RUNNING" for t in trials)
    for name in ("trials.csv", "pareto.csv", "best.json", "best.txt"):
        assert (sweep / name).is_file(), name
    assert (sweep / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = json.loads((sweep / "best.json").read_text())
    assert best["run"].endswith("_full")  # the Pareto candidate was re-run at high fidelity
    full = json.loads((sweep / best["run"] / "results.json").read_text())
    assert full["objective"]["repeats"] == 2 and [r["t_s"] for r in full["analog"]] == [
        1.0,
        86400.0,
    ]
    assert {layer["layer"] for layer in best["layers"]} >= {"fc1"}


def test_cost_only_search_runs_no_job_and_constraints_prune(tmp_path):
    sweep = tmp_path / "costs"
    args = [
        "-m",
        "hydra/sweeper=dse",
        "hydra.sweeper.objectives=[energy_j,area_mm2]",
        "hydra.sweeper.params={adc.bits:'choice(3,8)',tile.rows:'choice(32,256)'}",
        "hydra.sweeper.n_trials=6",
        f"paths.root_dir={tmp_path}",
    ]
    proc = run_module(
        "experiments.run",
        *args,
        "hydra.sweeper.constraints.energy_j=1.0e-30",  # nothing fits: every trial pruned
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, trials = _trials(sweep)
    assert [t.state.name for t in trials] == ["PRUNED"] * 6
    assert all(t.user_attrs["pruned_by"]["energy_j"] > 1e-30 for t in trials)
    assert not list(sweep.glob("trial_*")) and not (tmp_path / "outputs" / "cache").exists()

    proc = run_module("experiments.run", *args, f"hydra.sweep.dir={sweep}2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, trials = _trials(f"{sweep}2")
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6  # costed from the config alone
    assert all(t.values[0] > 0 and t.values[1] > 0 for t in trials)
    assert not list((tmp_path / "costs2").glob("trial_*"))
    assert (tmp_path / "costs2" / "trials.csv").is_file()


def test_hydra_finds_the_sweeper_and_the_ray_launcher():
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper

    plugins = Plugins.instance()
    names = {f"{c.__module__}.{c.__name__}" for c in plugins.discover(Sweeper)}
    assert "hydra_plugins.aimc_dse.dse_sweeper.DSESweeper" in names
    assert "experiments.dse.DSESweeper" not in names  # listed once, under hydra_plugins
    names = {f"{c.__module__}.{c.__name__}" for c in plugins.discover(Launcher)}
    assert "hydra_plugins.aimc_dse.ray_launcher.RayLauncher" in names
