"""Speed of the analog sequence layers against the torch modules, in one process.

Usage:
    python -m benchmarks.bench_sequence [--threads 2] [--repeats 20] [--config default|ideal]

Cases (eval mode, no_grad, default ``AnalogConfig()`` unless ``--config ideal``: PCM on 256x256
tiles, 8-bit DAC and ADC, drift compensation, read noise once per drift time):

- ``nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True)`` on 32 sequences of 64 tokens
  (converted: the attention projections and the feed-forward layers on tiles; torch runs its
  fused fast path, the analog layer cannot: its matrices are on tiles);
- one ``nn.LSTM(256, 256)`` step: a sequence of length 1 at batch 64 from a given state;
- a whole ``nn.LSTM(256, 256)`` sequence of 64 steps at batch 64.

Prints a Markdown table of median times and ratios (analog / torch).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import aimc


def _time(module, inputs: tuple, repeats: int) -> float:
    for _ in range(3):
        module(*inputs)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        module(*inputs)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cases(config: aimc.AnalogConfig):
    """``(name, torch module, analog module, call)`` of each timed case."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(256, 8, 1024, dropout=0.0, batch_first=True).eval()
    x = torch.randn(32, 64, 256)
    analog_layer = aimc.convert_to_analog(layer, config).eval()
    lstm = nn.LSTM(256, 256).eval()
    analog_lstm = aimc.convert_to_analog(lstm, config).eval()
    step = torch.randn(1, 64, 256)
    state = (torch.randn(1, 64, 256) * 0.5, torch.randn(1, 64, 256))
    seq = torch.randn(64, 64, 256)
    aimc.calibrate(analog_layer, [x])
    aimc.calibrate(analog_lstm, [seq])
    return [
        ("TransformerEncoderLayer(256, 8, 1024), 32 x 64 tokens", layer, analog_layer, (x,)),
        ("LSTM(256, 256) step, batch 64", lstm, analog_lstm, (step, state)),
        ("LSTM(256, 256), 64 steps, batch 64", lstm, analog_lstm, (seq,)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--config", choices=("default", "ideal"), default="default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = aimc.AnalogConfig() if args.config == "default" else aimc.AnalogConfig.ideal()
    print(f"threads={args.threads}, config={args.config}, torch {torch.__version__}")
    print("| case | torch (ms) | analog (ms) | ratio |")
    print("|---|---:|---:|---:|")
    with torch.no_grad():
        for name, digital, analog, inputs in cases(config):
            t_d = _time(digital, inputs, args.repeats)
            t_a = _time(analog, inputs, args.repeats)
            print(f"| {name} | {t_d * 1e3:.2f} | {t_a * 1e3:.2f} | {t_a / t_d:.2f}x |")


if __name__ == "__main__":
    main()
