"""aimc.logging.TBLogger: events read back with TensorBoard's own reader."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import plugin_data_pb2

from aimc.logging import TBLogger, time_tag


def read_events(folder):
    acc = ea.EventAccumulator(
        str(folder),
        size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0, ea.TENSORS: 0},
    )
    acc.Reload()
    return acc


@pytest.mark.parametrize(
    ("t", "tag"),
    [
        (0.0, "0s"),
        (1.0, "1s"),
        (30.0, "30s"),
        (60.0, "1min"),
        (3600.0, "1h"),
        (5400.0, "1.5h"),
        (86400.0, "1d"),
        (31536000.0, "1y"),
        (0.5, "0.5s"),
    ],
)
def test_time_tag(t, tag):
    assert time_tag(t) == tag


def test_time_tag_rejects_negative_times():
    with pytest.raises(ValueError, match="time_tag"):
        time_tag(-1.0)


def test_tag_scheme_round_trips(tmp_path):
    with TBLogger(str(tmp_path)) as tb:
        for epoch, (loss, acc) in enumerate([(1.0, 0.5), (0.4, 0.8)]):
            tb.log_training(epoch, loss=loss, accuracy=acc)
        tb.log_accuracy(
            [1.0, 3600.0, 31536000.0], [0.9, 0.85, 0.8], [0.01, 0.02, 0.03], digital=0.95
        )
        tb.log_energy(
            2e-9,
            layers_j={"fc1": 1.5e-9, "fc2": 0.5e-9},
            components_j={"adc": 1e-9, "dac": 1e-9},
            digital_baseline_j=8e-9,
        )
        tb.log_cost(latency_s=1e-6, area_mm2=2.5, tops_per_w=10.0)
    acc = read_events(tmp_path)
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    assert [s for s, _ in scalars["train/loss"]] == [0, 1]
    assert scalars["train/accuracy"][1][1] == pytest.approx(0.8)
    assert scalars["accuracy/t=1h"][0][1] == pytest.approx(0.85)
    assert scalars["accuracy_std/t=1y"][0][1] == pytest.approx(0.03)
    assert [s for s, _ in scalars["accuracy/vs_time"]] == [1, 3600, 31536000]
    assert scalars["accuracy/digital"][0][1] == pytest.approx(0.95)
    assert scalars["energy_pj/total"][0][1] == pytest.approx(2000.0)
    assert scalars["energy_pj/layer.fc1"][0][1] == pytest.approx(1500.0)
    assert scalars["energy_pj/component.adc"][0][1] == pytest.approx(1000.0)
    assert scalars["energy_pj/digital_baseline"][0][1] == pytest.approx(8000.0)
    assert scalars["latency_ns/total"][0][1] == pytest.approx(1000.0)
    assert scalars["area_mm2/total"][0][1] == pytest.approx(2.5)


def test_accuracy_lengths_must_match(tmp_path):
    with TBLogger(str(tmp_path)) as tb, pytest.raises(ValueError, match="one mean"):
        tb.log_accuracy([1.0, 2.0], [0.9])


def test_histograms_figures_text_and_hparams(tmp_path):
    g = torch.linspace(0.0, 25.0, 1000)
    nu = torch.full((10,), 0.05)
    nu[0] = float("nan")  # dropped, not a crash
    fig = Figure()
    fig.add_subplot().plot([1, 2, 3])
    with TBLogger(str(tmp_path)) as tb:
        tb.log_device_state("fc1", conductance_us=g, drift_exponent=nu)
        tb.figure("figures/accuracy_vs_time", fig)
        tb.text("config", "`adc.bits: 8`")
        tb.log_hparams(
            {"adc.bits": 8, "device": "pcm", "dac.bits": None, "hw": True}, {"hparam/accuracy": 0.9}
        )
    acc = read_events(tmp_path)
    tags = acc.Tags()
    assert {"conductance_us/fc1", "drift_exponent/fc1"} <= set(tags["histograms"])
    hist = acc.Histograms("conductance_us/fc1")[0].histogram_value
    assert hist.num == 1000 and hist.min == 0.0 and hist.max == 25.0
    assert acc.Histograms("drift_exponent/fc1")[0].histogram_value.num == 9
    assert tags["images"] == ["figures/accuracy_vs_time"]
    assert acc.Images("figures/accuracy_vs_time")[0].width > 0
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["adc.bits"].number_value == 8
    assert hp["device"].string_value == "pcm"
    assert hp["dac.bits"].string_value == "None"
    assert hp["hw"].string_value == "true"
    assert acc.Scalars("hparam/accuracy")[0].value == pytest.approx(0.9)
