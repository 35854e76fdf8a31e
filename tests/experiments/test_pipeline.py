"""The single run end to end (tiny settings): outputs, checkpoint cache, TensorBoard events."""

from __future__ import annotations

import json
import os

import pytest
import torch
from exp_helpers import compose_config, tiny
from tensorboard.backend.event_processing import event_accumulator as ea

import aimc
from experiments.config import build
from experiments.models import MLP
from experiments.pipeline import RESULTS, run


def run_tiny(tmp_path, extra=(), out="run"):
    exp = build(
        compose_config([*tiny(tmp_path), *extra]), choices={"device": "pcm"}, overrides=list(extra)
    )
    output_dir = str(tmp_path / out)
    return run(exp, output_dir), output_dir


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("single")
    results, output_dir = run_tiny(tmp_path)
    return tmp_path, results, output_dir


def test_results_json_schema(single):
    _, results, output_dir = single
    with open(os.path.join(output_dir, RESULTS)) as f:
        on_disk = json.load(f)
    assert on_disk["digital_accuracy"] == results["digital_accuracy"]
    assert 0.5 < on_disk["digital_accuracy"] <= 1.0  # 2 epochs on 300 digits
    assert on_disk["digital_perplexity"] is None
    assert on_disk["config"]["adc"]["bits"] == 8 and on_disk["config"]["device"]["_target_"]
    assert [r["t_s"] for r in on_disk["analog"]] == [1.0, 86400.0]
    assert on_disk["normal_sampler"] == aimc.sampling.normal_sampler() in ("torch", "mkl")
    for row in on_disk["analog"]:
        assert set(row) >= {"t_s", "accuracy_mean", "accuracy_std", "repeats"}
        assert row["repeats"] == 2 and len(row["accuracies"]) == 2
        assert "perplexity_mean" not in row  # images: no language model, no perplexity
        assert 0.0 <= row["accuracy_mean"] <= 1.0 and row["accuracy_std"] >= 0.0
        assert row["accuracy_mean"] == pytest.approx(sum(row["accuracies"]) / 2)
    cost = on_disk["cost"]
    if cost is not None:  # None only until aimc.estimate_cost lands
        keys = {"energy_j", "latency_s", "area_mm2", "tops_per_w", "digital_baseline_energy_j"}
        assert keys <= set(cost)
        assert all(cost[k] > 0 for k in keys)
    assert not [n for n in os.listdir(output_dir) if n.endswith(".tmp")]


def test_checkpoint_loads_with_weights_only(single):
    _, results, output_dir = single
    state = torch.load(os.path.join(output_dir, "model.pt"), weights_only=True)
    model = MLP((1, 8, 8), 10, hidden=[128])
    model.load_state_dict(state)
    assert results["digital_source"] == "trained"


def test_tensorboard_dashboard(single):
    _, results, output_dir = single
    acc = ea.EventAccumulator(
        os.path.join(output_dir, "tensorboard"),
        size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0, ea.TENSORS: 0},
    )
    acc.Reload()
    tags = acc.Tags()
    assert [e.step for e in acc.Scalars("train/loss")] == [0, 1]
    assert {
        "train/accuracy",
        "train/test_accuracy",
        "accuracy/digital",
        "accuracy/t=1s",
        "accuracy/t=1d",
        "accuracy_std/t=1d",
        "accuracy/vs_time",
    } <= set(tags["scalars"])
    assert acc.Scalars("accuracy/t=1d")[0].value == pytest.approx(
        results["analog"][1]["accuracy_mean"]
    )
    for layer in ("fc1", "fc2"):
        assert f"conductance_us/{layer}" in tags["histograms"]
        assert f"drift_exponent/{layer}" in tags["histograms"]  # PCM keeps "nu" per device
    steps = [e.step for e in acc.Histograms("conductance_us/fc1")]
    assert steps == [0, 1, 86400]
    assert "figures/accuracy_vs_time" in tags["images"]
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
    if results["cost"] is not None:
        assert "energy_pj/total" in tags["scalars"]
        assert "figures/energy_breakdown" in tags["images"]


def test_hardware_fields_reuse_the_cached_digital_model(single):
    tmp_path, first, _ = single
    second, _ = run_tiny(tmp_path, ["adc.bits=4", "device=rram"], out="run2")
    assert second["digital_source"] == "cache"
    assert second["cache_key"] == first["cache_key"]
    assert second["digital_accuracy"] == first["digital_accuracy"]
    assert second["train_history"] == first["train_history"]
    third, _ = run_tiny(tmp_path, ["train.lr=0.01"], out="run3")
    assert third["digital_source"] == "trained" and third["cache_key"] != first["cache_key"]


def test_checkpoint_is_loaded_instead_of_training(single):
    tmp_path, first, output_dir = single
    path = os.path.join(output_dir, "model.pt")
    results, _ = run_tiny(tmp_path, [f"train.checkpoint={path}", "train.epochs=50"], out="ck")
    assert results["digital_source"] == "checkpoint"
    assert results["digital_accuracy"] == first["digital_accuracy"]
    assert results["train_history"] == []


def test_hardware_aware_fine_tuning(tmp_path):
    results, output_dir = run_tiny(
        tmp_path,
        ["train.hardware_aware=true", "train.finetune_epochs=1", "eval.repeats=1", "logger=none"],
    )
    assert len(results["finetune_history"]) == 1
    assert results["analog"][0]["repeats"] == 1 and results["analog"][0]["accuracy_std"] == 0.0
    state = torch.load(os.path.join(output_dir, "model_finetuned.pt"), weights_only=True)
    assert "fc1.weight" in state
    assert not os.path.exists(os.path.join(output_dir, "tensorboard"))


def test_missing_dataset_stops_before_any_work(tmp_path):
    exp = build(compose_config([*tiny(tmp_path), "dataset=mnist", "dataset.download=false"]))
    with pytest.raises(FileNotFoundError, match="dataset.root=") as info:
        run(exp, str(tmp_path / "run"))
    assert "train-images-idx3-ubyte" in str(info.value)
    assert str(tmp_path / "data" / "mnist") in str(info.value)
    assert os.listdir(tmp_path / "run") == []  # no checkpoint, no events, no results


def test_corrupt_or_foreign_checkpoint_is_a_named_error(tmp_path):
    import torch

    from experiments.config import ConfigError
    from experiments.pipeline import _load_state_dict

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02not a checkpoint" * 10)
    with pytest.raises(ConfigError, match="train.checkpoint=.*not a readable torch state_dict"):
        _load_state_dict(str(bad))
    other = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], other)
    with pytest.raises(ConfigError, match="holds a list, not a state_dict"):
        _load_state_dict(str(other))


def test_a_finished_run_folder_is_skipped_not_run_again(single):
    tmp_path, first, output_dir = single
    stamp = os.stat(os.path.join(output_dir, "model.pt")).st_mtime_ns
    again, _ = run_tiny(tmp_path)
    assert again == first
    assert os.stat(os.path.join(output_dir, "model.pt")).st_mtime_ns == stamp


def test_a_folder_with_another_runs_results_is_refused(single):
    from experiments.config import ConfigError

    tmp_path, _, output_dir = single
    with pytest.raises(ConfigError, match=r"different run \(config differs in adc\)") as err:
        run_tiny(tmp_path, ["adc.bits=4"])
    assert output_dir in str(err.value)


def test_a_killed_runs_leftovers_are_cleared_before_the_new_run(tmp_path, caplog):
    folder = tmp_path / "run"
    (folder / "tensorboard").mkdir(parents=True)
    stale = folder / "tensorboard" / "events.out.tfevents.1.killed"
    stale.write_bytes(b"old")
    (folder / "cost.txt").write_text("old cost")
    results, _ = run_tiny(tmp_path, ["eval.repeats=1", "eval.times=[1.0]"])
    assert not stale.exists()
    assert len(list((folder / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert "unfinished run" in caplog.text and "cost.txt" in caplog.text
    assert results["analog"][0]["repeats"] == 1


def test_a_corrupt_cache_file_is_named_removed_and_retrained(single, caplog):
    tmp_path, first, _ = single
    base = tmp_path / "outputs" / "cache" / f"digital-{first['cache_key']}"
    pt = base.with_suffix(".pt")
    for spoil in (
        lambda: pt.write_bytes(pt.read_bytes()[:100]),  # truncated checkpoint
        lambda: base.with_suffix(".json").write_text("[1, 2"),  # truncated history
        lambda: torch.save({"fc1.weight": torch.zeros(3, 3)}, pt),  # another model's layout
    ):
        spoil()
        caplog.clear()
        results, _ = run_tiny(tmp_path, ["eval.repeats=1"], out=f"retrain-{spoil.__hash__()}")
        assert results["digital_source"] == "trained"
        assert results["digital_accuracy"] == first["digital_accuracy"]
        assert str(base) in caplog.text and "unusable" in caplog.text
        assert "train.checkpoint" not in caplog.text
        assert pt.is_file() and base.with_suffix(".json").is_file()  # rewritten


def test_the_run_log_lists_the_layers_left_digital(tmp_path, caplog):
    caplog.set_level("INFO")
    extra = ["model._target_=exp_helpers.WithBilinear", "~model.hidden", "~model.dropout"]
    run_tiny(tmp_path, [*extra, "eval.repeats=1", "eval.times=[1.0]", "logger=none"])
    assert "left digital (1 weight-bearing module(s))" in caplog.text
    assert (
        "mix" in caplog.text
        and "no analog layer for torch.nn.modules.linear.Bilinear" in caplog.text
    )
