"""Speed of the analog sequence layers against the torch modules, in one process.

Usage:
    python -m benchmarks.bench_sequence [--threads 2] [--repeats 20] [--config default|ideal]
                                        [--cases transformer,lstm,gru,hwa] [--clock wall|cpu]

Cases (eval mode, no_grad, default ``AnalogConfig()`` unless ``--config ideal``: PCM on 256x256
tiles, 8-bit DAC and ADC, drift compensation, read noise once per drift time):

- ``nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True)`` on 32 sequences of 64 tokens
  (converted: the attention projections and the feed-forward layers on tiles; torch runs its
  fused fast path, the analog layer cannot: its matrices are on tiles);
- one ``nn.LSTM(256, 256)`` step: a sequence of length 1 at batch 64 from a given state;
- a whole ``nn.LSTM(256, 256)`` sequence of 64 steps at batch 64;
- the same two cases for ``nn.GRU(256, 256)``;
- ``hwa`` (not in the default list): one hardware-aware training step (forward and backward)
  of ``nn.LSTM(128, 128)`` over 32 steps at batch 64 with device weight noise (programming
  noise, drift and read noise a year after programming, drift-compensated), against torch's
  training step of the same LSTM.

Each repeat times the torch module and then the analog one, back to back, so that both see the
same load on a shared machine; the ratio is the median over repeats of these paired ratios.
``--clock cpu`` measures the process's CPU time instead of wall time: with ``--threads 1`` it
counts the work done and not the time spent waiting for a core, so it holds on a busy machine.
Prints a Markdown table of median times and that ratio (analog / torch), and the machine's load
average (other jobs) when the run started and ended: wall times with two threads on a shared
machine move with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch
from torch import nn

import aimc


def _once(module, inputs: tuple, clock) -> float:
    t = clock()
    module(*inputs)
    return clock() - t


def _time_pair(
    digital, analog, inputs: tuple, repeats: int, clock=time.perf_counter
) -> tuple[float, float, float]:
    """Median torch time, median analog time and median paired ratio (analog / torch)."""
    for _ in range(3):
        digital(*inputs)
        analog(*inputs)
    t_d, t_a = [], []
    for _ in range(repeats):
        t_d.append(_once(digital, inputs, clock))
        t_a.append(_once(analog, inputs, clock))
    ratio = statistics.median(a / d for a, d in zip(t_a, t_d))
    return statistics.median(t_d), statistics.median(t_a), ratio


class _TrainStep(nn.Module):
    """One training step of ``module`` on ``x``: forward in train mode, backward of the sum."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.train()

    def forward(self, x: torch.Tensor) -> None:
        with torch.enable_grad():
            out, _ = self.module(x)
            out.sum().backward()


def cases(config: aimc.AnalogConfig, which: tuple[str, ...] = ("transformer", "lstm", "gru")):
    """``(name, torch module, analog module, call)`` of each timed case."""
    torch.manual_seed(0)
    out = []
    if "transformer" in which:
        layer = nn.TransformerEncoderLayer(256, 8, 1024, dropout=0.0, batch_first=True).eval()
        x = torch.randn(32, 64, 256)
        analog_layer = aimc.convert_to_analog(layer, config).eval()
        aimc.calibrate(analog_layer, [x])
        name = "TransformerEncoderLayer(256, 8, 1024), 32 x 64 tokens"
        out.append((name, layer, analog_layer, (x,)))
    step = torch.randn(1, 64, 256)
    seq = torch.randn(64, 64, 256)
    h0, c0 = torch.randn(1, 64, 256) * 0.5, torch.randn(1, 64, 256)
    for kind, cls, state in (("lstm", nn.LSTM, (h0, c0)), ("gru", nn.GRU, h0)):
        if kind not in which:
            continue
        rnn = cls(256, 256).eval()
        analog_rnn = aimc.convert_to_analog(rnn, config).eval()
        aimc.calibrate(analog_rnn, [seq])
        label = cls.__name__
        out.append((f"{label}(256, 256) step, batch 64", rnn, analog_rnn, (step, state)))
        out.append((f"{label}(256, 256), 64 steps, batch 64", rnn, analog_rnn, (seq,)))
    if "hwa" in which:
        tc = aimc.TrainingConfig(
            hardware_aware=True, weight_noise="device", noise_t_s=3.15e7, device_noise_scale=2.0
        )
        rnn = nn.LSTM(128, 128)
        x = torch.randn(32, 64, 128)
        analog_rnn = aimc.convert_to_analog(rnn, dataclasses.replace(config, training=tc))
        aimc.calibrate(analog_rnn, [x])
        name = "LSTM(128, 128) hardware-aware training step, 32 steps, batch 64"
        out.append((name, _TrainStep(rnn), _TrainStep(analog_rnn), (x,)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--config", choices=("default", "ideal"), default="default")
    parser.add_argument("--cases", default="transformer,lstm,gru", help="comma-separated")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    config = aimc.AnalogConfig() if args.config == "default" else aimc.AnalogConfig.ideal()
    print(
        f"threads={args.threads}, config={args.config}, clock={args.clock}, "
        f"torch {torch.__version__}, load average {_load()}"
    )
    print("| case | torch (ms) | analog (ms) | ratio |")
    print("|---|---:|---:|---:|")
    with torch.no_grad():
        for name, digital, analog, inputs in cases(config, tuple(args.cases.split(","))):
            t_d, t_a, ratio = _time_pair(digital, analog, inputs, args.repeats, clock)
            print(f"| {name} | {t_d * 1e3:.2f} | {t_a * 1e3:.2f} | {ratio:.2f}x |")
    print(f"load average at the end {_load()}")


def _load() -> str:
    """The 1-minute load average, where the system reports one."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "unknown"


if __name__ == "__main__":
    main()
