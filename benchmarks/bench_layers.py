"""Speed and memory of the analog layers against the plain torch layers, in one process.

Usage:
    python benchmarks/bench_layers.py [--threads 2] [--device cpu|cuda] [--repeats 20]
        [--sampler auto|torch|mkl] [--speed-only] [--cpu-time]

Prints a Markdown table of median times and ratios (analog / torch) for these cases:
AnalogLinear 1024x1024 at batch 256 (with and without ADC output noise) and AnalogConv2d
64->64 3x3 on 32x32 at batch 32, with 256x256 tiles, 8-bit DAC and ADC and the default device
(PCM: drift and read noise drawn per forward); then the peak memory of each case and of a
ResNet-sized model (about 10 M weights) converted and evaluated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's aimc

import torch  # noqa: E402
from torch import nn  # noqa: E402

import aimc  # noqa: E402


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: str, repeats: int, clock=time.perf_counter) -> float:
    for _ in range(3):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        _sync(device)
        times.append(clock() - t)
    return statistics.median(times)


def _config(noise: float = 0.0, device: str = "pcm", read_noise: str = "drift"):
    return aimc.AnalogConfig(
        device=device,
        tile=aimc.TileConfig(256, 256),
        dac=aimc.DACConfig(bits=8),
        adc=aimc.ADCConfig(bits=8, noise=noise),
        read_noise=read_noise,
    )


def _cases(device: str):
    """(name, torch layer, input, AnalogConfig) of each timed case."""
    torch.manual_seed(0)
    lin = nn.Linear(1024, 1024).to(device).eval()
    x_lin = torch.randn(256, 1024, device=device)
    conv = nn.Conv2d(64, 64, 3, padding=1).to(device).eval()
    x_conv = torch.randn(32, 64, 32, 32, device=device)
    lin_name = "AnalogLinear 1024x1024, batch 256"
    return [
        (f"{lin_name}, PCM (default config)", lin, x_lin, _config()),
        (f"{lin_name}, ideal device", lin, x_lin, _config(device="ideal")),
        (f"{lin_name}, PCM + ADC noise 0.01", lin, x_lin, _config(0.01)),
        (f"{lin_name}, PCM, read_noise='forward'", lin, x_lin, _config(read_noise="forward")),
        ("AnalogConv2d 64->64 3x3, 32x32, batch 32, PCM", conv, x_conv, _config()),
    ]


def run_speed(device: str, repeats: int, clock=time.perf_counter) -> list[dict]:
    rows = []
    for name, digital, x, config in _cases(device):
        analog = aimc.convert_to_analog(digital, config).eval()
        aimc.calibrate(analog, [x])
        aimc.drift(analog, 3600.0)
        with torch.no_grad():
            t_d = _time(lambda m=digital, x=x: m(x), device, repeats, clock)
            t_a = _time(lambda m=analog, x=x: m(x), device, repeats, clock)
        rows.append({"case": name, "torch_ms": t_d * 1e3, "aimc_ms": t_a * 1e3, "ratio": t_a / t_d})
    return rows


def _resnet_like() -> nn.Module:
    """A ResNet-18-sized stack of convs (about 11 M weights) for CIFAR-sized inputs."""
    layers, cin = [], 3
    for cout, n in ((64, 4), (128, 4), (256, 4), (512, 4)):
        for i in range(n):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2 if (i == 0 and cin != 3) else 1, padding=1),
                nn.ReLU(),
            ]
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))


def peak_memory(case: str, mode: str, device: str) -> dict:
    """Peak memory of one case run in this fresh process: ``mode`` "digital" runs the torch
    model, "analog" converts, calibrates and evaluates it. CPU: the peak RSS (VmHWM) above the
    RSS after imports; CUDA: peak allocated memory."""
    aimc.sampling.normal_sampler()  # loads oneMKL (if installed) before the baseline: a library
    base_mb = _proc_status_mb("VmRSS")
    torch.manual_seed(0)
    if case == "resnet":
        digital = _resnet_like().to(device).eval()
        x = torch.randn(8, 3, 32, 32, device=device)
    else:
        idx = {"linear": 0, "linear_noise": 2, "conv": 4}[case]
        _, digital, x, config = _cases(device)[idx]
    out = {"case": case, "mode": mode, "weights": sum(p.numel() for p in digital.parameters())}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        if mode == "digital":
            t = time.perf_counter()
            digital(x)
            out["eval_s"] = time.perf_counter() - t
        else:
            t = time.perf_counter()
            model = aimc.convert_to_analog(digital, config if case != "resnet" else _config())
            model = model.eval()
            out["convert_s"] = time.perf_counter() - t
            aimc.calibrate(model, [x])
            t = time.perf_counter()
            model(x)
            out["eval_s"] = time.perf_counter() - t
    _sync(device)
    if device == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mb"] = _proc_status_mb("VmHWM") - base_mb
    return out


def _proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _measure(case: str, mode: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--memory-case",
        case,
        "--mode",
        mode,
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--sampler",
        args.sampler,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--sampler",
        default="auto",
        choices=aimc.sampling.SAMPLERS,
        help="backend of the per-forward normal draws (aimc.sampling)",
    )
    parser.add_argument("--speed-only", action="store_true", help="skip the memory table")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU time instead of the wall clock (on shared CPUs, "
        "where other processes stretch wall times; use with --threads 1)",
    )
    parser.add_argument("--memory-case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="analog", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    aimc.sampling.set_normal_sampler(args.sampler)
    if args.memory_case:
        print(json.dumps(peak_memory(args.memory_case, args.mode, args.device)))
        return
    sampler = aimc.sampling.normal_sampler(args.device)
    print(
        f"torch {torch.__version__}, device {args.device}, threads {args.threads}, "
        f"normal sampler {sampler}\n"
    )
    print("| case | torch (ms) | aimc (ms) | ratio |\n|---|---|---|---|")
    clock = time.process_time if args.cpu_time else time.perf_counter
    for r in run_speed(args.device, args.repeats, clock):
        print(f"| {r['case']} | {r['torch_ms']:.2f} | {r['aimc_ms']:.2f} | {r['ratio']:.2f}x |")
    if args.speed_only:
        return
    unit = "peak CUDA memory" if args.device == "cuda" else "peak RSS over imports"
    print(
        f"\n| case | weights | convert (s) | analog eval (s) | torch {unit} (MB) "
        f"| aimc {unit} (MB) | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for case in ("linear", "linear_noise", "conv", "resnet"):
        d, a = _measure(case, "digital", args), _measure(case, "analog", args)
        print(
            f"| {case} | {a['weights']:,} | {a['convert_s']:.2f} | {a['eval_s']:.3f} | "
            f"{d['peak_mb']:.0f} | {a['peak_mb']:.0f} | {a['peak_mb'] / d['peak_mb']:.2f}x |"
        )


if __name__ == "__main__":
    main()
