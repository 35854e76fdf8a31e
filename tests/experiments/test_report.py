"""experiments.report on hand-written results: swept fields, Pareto front, CSV, time parsing."""

from __future__ import annotations

import csv
import json
import os

import pytest

from experiments.report import main, make_report, pareto_front, parse_time


def write_run(folder, name, *, bits, device, acc, energy, overrides=None, times=(1.0, 3600.0)):
    path = os.path.join(folder, name)
    os.makedirs(path)
    results = {
        "config": {
            "adc": {"_target_": "aimc.ADCConfig", "bits": bits},
            "device": {"_target_": f"device_models.{device.upper()}", "g_max": 25.0},
            "paths": {"root_dir": path},
            "seed": 0,
        },
        "choices": {"device": device, "adc": "default"},
        "overrides": overrides or [f"adc.bits={bits}", f"device={device}"],
        "digital_accuracy": 0.97,
        "analog": [
            {"t_s": t, "accuracy_mean": a, "accuracy_std": 0.01, "repeats": 3}
            for t, a in zip(times, acc)
        ],
        "cost": None
        if energy is None
        else {
            "energy_j": energy,
            "latency_s": 1e-6,
            "area_mm2": 1.0,
            "tops_per_w": 5.0,
            "digital_baseline_energy_j": 10 * energy,
        },
    }
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump(results, f)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1y", 31536000.0),
        ("2.5min", 150.0),
        ("1e3", 1000.0),
    ],
)
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


def test_parse_time_rejects_garbage():
    with pytest.raises(ValueError, match="--at"):
        parse_time("yesterday")


def test_pareto_front():
    energy = [1.0, 2.0, 3.0, 1.5, None, 0.5]
    acc = [0.80, 0.90, 0.85, 0.80, 0.99, 0.70]
    # 5 (0.5, .70) < 0 (1.0, .80) < 1 (2.0, .90); 3 ties 0 in accuracy at more energy; 2 loses
    assert pareto_front(energy, acc) == [5, 0, 1]
    assert pareto_front([], []) == []


def test_report_of_a_sweep(tmp_path):
    folder = str(tmp_path)
    write_run(folder, "0", bits=4, device="pcm", acc=[0.80, 0.70], energy=1e-9)
    write_run(folder, "1", bits=8, device="pcm", acc=[0.95, 0.90], energy=3e-9)
    write_run(folder, "2", bits=4, device="rram", acc=[0.82, 0.60], energy=1.2e-9)
    write_run(folder, "10", bits=8, device="rram", acc=[0.96, 0.85], energy=4e-9)
    out = make_report(folder)
    assert out["swept"] == ["adc.bits", "device"]
    assert out["t_s"] == 3600.0 and out["front"] == ["0", "1"]
    with open(out["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["0", "1", "2", "10"]  # job order, not string order
    assert rows[3]["device"] == "rram" and rows[3]["adc.bits"] == "8"
    assert rows[1]["accuracy@1h"] == "0.9" and rows[1]["accuracy_std@1s"] == "0.01"
    assert [r["pareto"] for r in rows] == ["True", "True", "False", "False"]
    assert float(rows[2]["energy_j"]) == pytest.approx(1.2e-9)
    with open(out["pareto_csv"]) as f:
        assert [r["run"] for r in csv.DictReader(f)] == ["0", "1"]
    at_1s = make_report(folder, at="1s", tensorboard=False)
    assert at_1s["front"] == ["0", "2", "1", "10"]


def test_runs_without_cost_are_left_out_of_the_front(tmp_path, capsys):
    write_run(str(tmp_path), "0", bits=4, device="pcm", acc=[0.8, 0.7], energy=None)
    write_run(str(tmp_path), "1", bits=8, device="pcm", acc=[0.9, 0.8], energy=2e-9)
    assert main([str(tmp_path), "--no-tensorboard"]) == 0
    assert "left out of the Pareto front" in capsys.readouterr().err
    assert os.path.getsize(tmp_path / "pareto.png") > 0


def test_empty_folder_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ([1, 2, 3], "JSON list"),
        ({"config": {}}, "no 'choices' field"),
        ("just a string", "JSON str"),
        (None, "JSON NoneType"),
    ],
)
def test_a_malformed_results_file_is_skipped_by_name(tmp_path, capsys, content, problem):
    write_run(str(tmp_path), "0", bits=4, device="pcm", acc=[0.8, 0.7], energy=1e-9)
    os.makedirs(tmp_path / "1")
    with open(tmp_path / "1" / "results.json", "w") as f:
        json.dump(content, f)
    assert main([str(tmp_path), "--no-tensorboard"]) == 0
    err = capsys.readouterr().err
    assert f"skipping {tmp_path / '1' / 'results.json'}: " in err and problem in err
    with open(tmp_path / "report.csv") as f:
        assert [r["run"] for r in csv.DictReader(f)] == ["0"]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda r: r.pop("analog"), "no 'analog' field"),
        (lambda r: r.update(analog=[{"t_s": 1.0}]), "analog[0].accuracy_mean"),
        (lambda r: r.update(analog=["x"]), "analog[0] is not an object"),
        (lambda r: r.update(digital_accuracy="high"), "digital_accuracy"),
        (lambda r: r.update(cost=[1.0]), "field 'cost' is a list"),
        (lambda r: r.update(config=[]), "field 'config' is a list"),
    ],
)
def test_a_results_file_missing_a_field_is_skipped_by_name(tmp_path, capsys, edit, problem):
    write_run(str(tmp_path), "0", bits=4, device="pcm", acc=[0.8, 0.7], energy=1e-9)
    write_run(str(tmp_path), "1", bits=8, device="pcm", acc=[0.9, 0.8], energy=2e-9)
    path = tmp_path / "1" / "results.json"
    results = json.loads(path.read_text())
    edit(results)
    path.write_text(json.dumps(results))
    assert main([str(tmp_path), "--no-tensorboard"]) == 0
    err = capsys.readouterr().err
    assert f"skipping {path}: " in err and problem in err


def test_language_model_runs_report_perplexity_beside_accuracy(tmp_path):
    folder = str(tmp_path)
    for bits, ppl in ((4, 12.5), (8, 9.9)):
        write_run(folder, f"b{bits}", bits=bits, device="pcm", acc=[0.4, 0.39], energy=1e-9)
        path = os.path.join(folder, f"b{bits}", "results.json")
        with open(path) as f:
            results = json.load(f)
        results["digital_perplexity"] = 9.8
        for row in results["analog"]:
            row.update(perplexity_mean=ppl, perplexity_std=0.1)
        with open(path, "w") as f:
            json.dump(results, f)
    out = make_report(folder, tensorboard=False)
    with open(out["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert {"digital_perplexity", "perplexity@1h", "perplexity_std@1h"} <= set(rows[0])
    assert sorted(float(r["perplexity@1h"]) for r in rows) == [9.9, 12.5]
    assert float(rows[0]["digital_perplexity"]) == 9.8


def test_image_runs_have_no_perplexity_columns(tmp_path):
    write_run(str(tmp_path), "a", bits=4, device="pcm", acc=[0.9, 0.8], energy=1e-9)
    out = make_report(str(tmp_path), tensorboard=False)
    with open(out["csv"]) as f:
        assert not [k for k in next(csv.DictReader(f)) if "perplexity" in k]
