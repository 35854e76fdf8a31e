"""``python -m experiments.sensitivity``: the ranked table, CSV, plot and search seeds."""

from __future__ import annotations

import csv
import json

from exp_helpers import TINY, run_module

from experiments.dse import DSESweeper


def test_sensitivity_cli_writes_the_ranking_and_seeds_a_search(tmp_path):
    run = tmp_path / "sens"
    common = [*TINY, f"paths.root_dir={tmp_path}"]
    proc = run_module(
        "experiments.sensitivity",
        *common,
        "analog.digital=[fc2]",  # measured: fc1 only
        "++analog.layers.fc1.adc.bits=6",
        "sensitivity.adc_bits_drop=3",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run / "sensitivity.json").read_text())
    assert report["ranking"] == ["fc1"] and report["adc_bits_drop"] == 3
    (layer,) = report["layers"]
    assert layer["adc_bits"] == 6 and layer["drop_low_bits"] is not None
    assert 0 < layer["energy_share"] < 1
    with open(run / "sensitivity.csv") as f:
        assert [r["name"] for r in csv.DictReader(f)] == ["fc1"]
    assert (run / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert "drop ADC-3b" in (run / "sensitivity.txt").read_text()

    bad = run_module(
        "experiments.sensitivity", *common, "sensitivity.repeats=0", f"hydra.run.dir={run}_bad"
    )
    assert bad.returncode != 0 and "repeats must be an int >= 1" in bad.stderr


def test_search_is_seeded_from_a_sensitivity_file(tmp_path):
    path = tmp_path / "sensitivity.json"
    seeds = [{"analog.layers.fc1.digital": True, "analog.layers.fc2.digital": False}]
    path.write_text(json.dumps({"enqueue": seeds}))
    sweeper = DSESweeper(objectives={"accuracy": "maximize"}, seed_from=str(path))
    assert sweeper.enqueue == seeds
