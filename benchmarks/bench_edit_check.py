"""What the per-forward weight-edit check costs inside an eval forward, against alternatives.

Usage:
    python benchmarks/bench_edit_check.py [--threads 1] [--rounds 15] [--repeats 10]

Times the eval forward of the default-config ``AnalogLinear`` 1024x1024 at batch 256 (256x256
tiles, 8-bit converters, PCM read 1 h after programming), one process, CPU time, with the
layer's check (``Crossbar.holds``: block and class sums of the weights' bit patterns) swapped
for alternatives in turn: an element-wise comparison with a stored float32 copy of the weights
(``torch.equal``, and numpy's ``array_equal``), one ``sum`` over the weights (what any check
that reads every weight once costs at least) and no check at all. Blocks of ``--repeats``
forwards per variant, ``--rounds`` rounds interleaved, so every variant sees the same load;
prints the median time and its ratio to ``nn.Linear``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's aimc

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import aimc  # noqa: E402
from aimc.tile.crossbar import Crossbar  # noqa: E402


def _one_pass(self, weight: torch.Tensor) -> bool:
    weight.detach().sum()  # reads every weight once, decides nothing
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lin = nn.Linear(1024, 1024).eval()
    x = torch.randn(256, 1024)
    cfg = aimc.AnalogConfig(
        tile=aimc.TileConfig(256, 256), dac=aimc.DACConfig(bits=8), adc=aimc.ADCConfig(bits=8)
    )
    model = aimc.convert_to_analog(nn.Sequential(lin), cfg)
    aimc.calibrate(model, [x])
    model.eval()
    aimc.drift(model, 3600.0)
    copy = model[0].weight.detach().clone()
    variants = {
        "edit fingerprint (the layer's check)": Crossbar.holds,
        "element-wise, torch.equal with a copy": lambda self, w: torch.equal(copy, w.detach()),
        "element-wise, numpy array_equal with a copy": lambda self, w: bool(
            np.array_equal(copy.numpy(), w.detach().numpy())
        ),
        "one sum over the weights (floor)": _one_pass,
        "no check": lambda self, w: True,
    }
    times: dict[str, list[float]] = {"nn.Linear": [], **{k: [] for k in variants}}

    def block(fn) -> list[float]:
        out = []
        for i in range(args.repeats + 2):
            t = time.process_time()
            fn(x)
            if i >= 2:
                out.append(time.process_time() - t)
        return out

    original = Crossbar.holds
    try:
        with torch.no_grad():
            for _ in range(args.rounds):
                times["nn.Linear"] += block(lin)
                for name, holds in variants.items():
                    Crossbar.holds = holds
                    times[name] += block(model)
    finally:
        Crossbar.holds = original
    ref = statistics.median(times["nn.Linear"])
    print(f"torch {torch.__version__}, threads {args.threads}\n")
    print("| forward | ms | ratio to nn.Linear |\n|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med * 1e3:.2f} | {med / ref:.2f}x |")


if __name__ == "__main__":
    main()
