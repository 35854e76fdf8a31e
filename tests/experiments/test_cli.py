"""``python -m experiments.run`` and ``-m`` sweeps through Hydra, then ``experiments.report``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from exp_helpers import REPO, TINY
from tensorboard.backend.event_processing import event_accumulator as ea

from experiments.report import main as report_main


def hydra_run(*args, cwd=REPO):
    env = dict(os.environ, HYDRA_FULL_ERROR="0", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_single_run_writes_into_the_hydra_run_folder(tmp_path):
    proc = hydra_run(*TINY, f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "run"
    with open(run_dir / "results.json") as f:
        results = json.load(f)
    assert results["choices"]["device"] == "pcm" and results["choices"]["dataset"] == "digits"
    assert "paths.root_dir=" + str(tmp_path) in results["overrides"]
    assert (run_dir / "model.pt").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_a_refused_run_leaves_the_finished_runs_hydra_record(tmp_path):
    run_dir = tmp_path / "run"
    first = hydra_run(*TINY, f"paths.root_dir={tmp_path}", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    record = {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()}
    assert set(record) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert "adc.bits" not in record["overrides.yaml"]
    refused = hydra_run(
        *TINY, "adc.bits=4", f"paths.root_dir={tmp_path}", f"hydra.run.dir={run_dir}"
    )
    assert refused.returncode != 0 and "different run" in refused.stderr
    assert {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()} == record


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("adc.bits=-1", "adc.bits=-1"),
        ("device=flash", "device/flash"),
        ("dataset.name=imagenet", "dataset.name"),
    ],
)
def test_bad_input_stops_with_a_message_naming_the_key(tmp_path, override, expected):
    proc = hydra_run(override, f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "run" / "model.pt").exists()
    assert not (tmp_path / "cache").exists()


def test_two_point_sweep_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = hydra_run(
        "-m", "adc.bits=4,8", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sources = []
    for job in ("0", "1"):
        with open(sweep / job / "results.json") as f:
            sources.append(json.load(f)["digital_source"])
    assert sources == ["trained", "cache"]  # one digital model for both hardware points

    assert report_main([str(sweep)]) == 0
    with open(sweep / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["adc.bits"] for r in rows] == ["4", "8"]
    assert {
        "run",
        "digital_accuracy",
        "accuracy@1s",
        "accuracy_std@1d",
        "energy_j",
        "latency_s",
        "area_mm2",
        "pareto",
    } <= set(rows[0])
    assert rows[0]["digital_accuracy"] == rows[1]["digital_accuracy"]
    assert (sweep / "pareto.csv").is_file()
    for png in ("pareto.png", "accuracy_vs_time.png"):
        assert (sweep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc = ea.EventAccumulator(str(sweep / "tensorboard_report"))
    acc.Reload()
    assert {"report/pareto", "report/accuracy_vs_time"} <= set(acc.Tags()["images"])

    # relaunched into its folder after job 1 was killed: job 0 is skipped, job 1 redone cleanly
    stamp = os.stat(sweep / "0" / "model.pt").st_mtime_ns
    os.remove(sweep / "1" / "results.json")
    proc = hydra_run(
        "-m", "adc.bits=4,8", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.stat(sweep / "0" / "model.pt").st_mtime_ns == stamp
    assert "already holds the results of this run: skipped" in (sweep / "0" / "run.log").read_text()
    assert "unfinished run" in (sweep / "1" / "run.log").read_text()
    assert len(list((sweep / "1" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert json.load(open(sweep / "1" / "results.json"))["config"]["adc"]["bits"] == 8


def test_two_runs_started_together_get_their_own_folders(tmp_path):
    env = dict(os.environ, HYDRA_FULL_ERROR="0", PYTHONPATH=str(REPO))
    args = [*TINY, "eval.repeats=1", "logger=none", f"paths.root_dir={tmp_path}"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.run", *args, f"seed={seed}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    found = sorted((tmp_path / "outputs" / "runs").glob("*/*/results.json"))
    assert len(found) == 2
    assert sorted(json.load(open(p))["config"]["seed"] for p in found) == [0, 1]


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel(tmp_path):
    sweep = tmp_path / "sweep"
    proc = hydra_run(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "dac.bits=6,8",
        *TINY,
        f"paths.root_dir={tmp_path}",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sources = sorted(
        json.load(open(sweep / j / "results.json"))["digital_source"] for j in ("0", "1")
    )
    assert sources == ["cache", "trained"]  # the cache lock made one job wait for the other


@pytest.mark.parametrize("entry", ["experiments.cost", "experiments.run"])
def test_cost_only_runs_need_no_dataset_files(tmp_path, entry):
    args = ["experiment=rram22", "model=lenet5", "dataset=cifar10", "eval.replication=balanced"]
    if entry == "experiments.run":
        args.append("eval.cost_only=true")
    env = dict(os.environ, HYDRA_FULL_ERROR="0", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            entry,
            *args,
            f"paths.root_dir={tmp_path}",
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "data").exists()  # no CIFAR-10 download or read
    with open(tmp_path / "run" / "cost.json") as f:
        cost = json.load(f)
    assert cost["summary"]["energy_j"] > 0 and cost["report"]["boundary"] == "chip"
    assert "cost on rram22" in (tmp_path / "run" / "cost.txt").read_text()
    assert "cost on rram22" in proc.stdout
