"""Accuracy of a small MLP on scikit-learn's digits after drift, per device.

Usage:
    python benchmarks/drift_accuracy.py [--draws 10] [--epochs 60] [--seed 0] [--threads 2]

Trains a 64-128-10 ReLU MLP on ``sklearn.datasets.load_digits`` (pixels scaled to [0, 1], seeded
stratified 70/30 train/test split), converts it with 256x256 tiles and 8-bit DAC and ADC, and
calibrates the DAC/ADC ranges on the training set. Then, for each device (ideal, PCM, RRAM) with
global drift compensation on and off, it programs ``--draws`` device draws
(``aimc.program(analog, seed=k)``), reads each at t = 1 s, 1 h, 1 day and 1 year after
programming (``aimc.drift``) and prints the test accuracy, mean ± std over the draws, as a
Markdown table with the digital accuracy as the reference; then the same table of the logit
gain (the analog output scale relative to the digital one), which shows drift and its
compensation directly: the argmax of a ReLU MLP with small biases barely depends on a global
output scale, so accuracy alone hides it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's aimc

import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402

import aimc  # noqa: E402

TIMES = [("1 s", 1.0), ("1 h", 3600.0), ("1 day", 86400.0), ("1 year", 365.25 * 86400.0)]
DEVICES = ("ideal", "pcm", "rram")


def load_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits pixels scaled to [0, 1] (they are 0..16), split 70/30 stratified by ``seed``."""
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return as_x(x_tr), as_y(y_tr), as_x(x_te), as_y(y_te)


def train(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    """A 64-128-10 ReLU MLP trained with Adam (batch 64) for ``epochs`` epochs."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def analog_config(device: str, compensation: bool) -> aimc.AnalogConfig:
    return aimc.AnalogConfig(
        device=device,
        drift_compensation=compensation,
        tile=aimc.TileConfig(256, 256),
        dac=aimc.DACConfig(bits=8),
        adc=aimc.ADCConfig(bits=8),
        seed=0,
    )


def sweep(model, x_tr, x_te, y_te, device: str, compensation: bool, draws: int):
    """``({t label: [accuracy per draw]}, {t label: [logit gain per draw]})`` of one setting.

    The logit gain is the least-squares slope of the analog logits on the digital ones: 1 when
    the analog model reproduces the digital output scale, < 1 when conductances drifted down.
    """
    with torch.no_grad():
        ref = model(x_te)
    analog = aimc.convert_to_analog(model, analog_config(device, compensation))
    # calibration batches: the training set in batches of 256 (ranges: max over batches)
    aimc.calibrate(analog, list(torch.split(x_tr, 256)))
    analog.eval()
    accs: dict[str, list[float]] = {label: [] for label, _ in TIMES}
    gains: dict[str, list[float]] = {label: [] for label, _ in TIMES}
    for k in range(draws):
        aimc.program(analog, seed=k)
        for label, t in TIMES:
            aimc.drift(analog, t)
            with torch.no_grad():
                out = analog(x_te)
            accs[label].append(float((out.argmax(1) == y_te).float().mean()))
            gains[label].append(float((out * ref).sum() / (ref * ref).sum()))
    return accs, gains


def fmt(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    mean = scale * statistics.fmean(values)
    std = scale * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10, help="device draws per setting")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    if args.draws < 1 or args.epochs < 1 or args.threads < 1:
        parser.error("--draws, --epochs and --threads must be >= 1")
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_data(args.seed)
    model = train(x_tr, y_tr, args.epochs, args.seed)
    digital = accuracy(model, x_te, y_te)
    t_train = time.perf_counter() - start

    rows = []
    for device in DEVICES:
        for comp in (False, True):
            accs, gains = sweep(model, x_tr, x_te, y_te, device, comp, args.draws)
            rows.append((device, "on" if comp else "off", accs, gains))
    wall = time.perf_counter() - start

    print(
        f"Digits MLP 64-128-10 (ReLU), {len(x_tr)} train / {len(x_te)} test samples, "
        f"{args.epochs} epochs, seed {args.seed}; 256x256 tiles, 8-bit DAC/ADC, global drift "
        f"compensation; test accuracy (%) mean ± std over {args.draws} device draws.\n"
    )
    header = ["device", "drift comp."] + [label for label, _ in TIMES]
    rule = "|" + "|".join(["---"] * 2 + ["---:"] * len(TIMES)) + "|"
    print("| " + " | ".join(header) + " |")
    print(rule)
    print("| digital | – | " + " | ".join([f"{100 * digital:.2f}"] * len(TIMES)) + " |")
    for device, comp, accs, _ in rows:
        cells = [fmt(accs[label]) for label, _ in TIMES]
        print(f"| {device} | {comp} | " + " | ".join(cells) + " |")
    print(
        "\nLogit gain: least-squares slope of the analog logits on the digital logits "
        "(1 = the digital output scale), mean ± std over the draws.\n"
    )
    print("| " + " | ".join(header) + " |")
    print(rule)
    for device, comp, _, gains in rows:
        cells = [fmt(gains[label], scale=1.0, digits=3) for label, _ in TIMES]
        print(f"| {device} | {comp} | " + " | ".join(cells) + " |")
    print(
        f"\nwall time {wall:.1f} s (training {t_train:.1f} s), "
        f"{torch.get_num_threads()} torch threads"
    )


if __name__ == "__main__":
    main()
