"""Speed and memory of whole networks converted to analog, against the same torch model.

Usage:
    python benchmarks/bench_networks.py [--nets vgg8,resnet18,resnet50]
        [--configs pcm,rram,rram22] [--batch 8] [--repeats 5] [--threads 2] [--load]
        [--device cpu|cuda] [--cost] [--matmuls] [--clock wall|cpu]
    python benchmarks/bench_networks.py --slices-cycles [--repeats 3] [--threads 1 --clock cpu]
    python benchmarks/bench_networks.py --table-rows [--repeats 5] [--threads 1 --clock cpu]

Every (network, config) case runs in a fresh process, which:

1. builds the torch model and one input batch, and records the resident memory;
2. converts it (``aimc.convert_to_analog``; timed), calibrates it on the batch, reads it one
   hour after programming and runs one forward; the memory added is the resident memory then
   minus before the conversion (``malloc_trim`` first, so freed memory is not counted), also
   given in bytes per weight; ``state`` is the bytes of tensors the analog layers hold
   (parameters, buffers and cached reads);
3. times digital and analog forwards interleaved (``--repeats`` pairs, median of the pairwise
   ratios), so both see the same machine load. ``--load`` keeps one core busy with a second
   process while timing (a sweep's neighbour); ``--clock cpu`` times by the process's CPU
   time instead of wall time (with ``--threads 1``: what a busy machine's other jobs change
   least, as a preempted thread's wait is not counted);
4. with ``--matmuls``, times the batched read-out's partial-sum kernels in one more forward:
   its matmuls (``torch.bmm``; multiply-adds counted) and its table lookups
   (``embedding_bag``; table entries added);
5. with ``--cost``, times ``aimc.estimate_cost`` of the converted model on the batch.

Networks (all built from torch layers): ``vgg8``, the CIFAR-10 VGG-8 (32x32; channels 128-512, a
1024-wide hidden layer, no batch norm); ``resnet18`` and ``resnet50`` at 224x224 (ImageNet
shapes, 1000 classes). Configs: ``pcm`` (``AnalogConfig()``, the default), ``rram``
(``AnalogConfig(device="rram")``), ``rram22`` (``aimc.presets.rram22`` with a 4-bit ADC: 8
one-bit weight slices, offset encoding, 32 rows read at once, 8-bit bit-serial inputs),
``rram-4x2b`` (4 differential slices of 2-bit RRAM cells on 128x128 tiles, all rows read at
once, 8-bit bit-serial unsigned inputs, 4-bit ADC), ``ideal`` (``AnalogConfig.ideal()``).
Prints one Markdown table row per case.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's aimc

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import aimc  # noqa: E402
import aimc.nn.linear as analog_linear  # noqa: E402
import device_models  # noqa: E402

# ----------------------------------------------------------------------------- networks


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + self.down(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def resnet(block: type, depths: tuple[int, ...], classes: int = 1000) -> nn.Module:
    """The ImageNet ResNet (He et al. 2016) from torch layers: ``resnet(_Basic, (2, 2, 2, 2))``
    is ResNet-18 (11.7 M weights), ``resnet(_Bottleneck, (3, 4, 6, 3))`` ResNet-50 (25.6 M)."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for stage, n in enumerate(depths):
        width = 64 * 2**stage
        for i in range(n):
            layers.append(block(cin, width, 2 if (i == 0 and stage > 0) else 1))
            cin = width * block.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def network(name: str, batch: int) -> tuple[nn.Module, torch.Tensor]:
    """The eval-mode torch model ``name`` and an input batch (post-ReLU-like, non-negative for
    the first layer is not needed: the DAC is signed or clips)."""
    torch.manual_seed(0)
    if name == "vgg8":
        from experiments.models import VGG8

        model = VGG8((3, 32, 32), 10, width=128, hidden=1024, batch_norm=False)
        x = torch.randn(batch, 3, 32, 32)
    elif name == "resnet18":
        model, x = resnet(_Basic, (2, 2, 2, 2)), torch.randn(batch, 3, 224, 224)
    elif name == "resnet50":
        model, x = resnet(_Bottleneck, (3, 4, 6, 3)), torch.randn(batch, 3, 224, 224)
    else:
        raise ValueError(f"unknown network {name!r}; use vgg8, resnet18 or resnet50")
    return model.eval(), x


def config(name: str) -> aimc.AnalogConfig:
    if name == "pcm":
        return aimc.AnalogConfig()
    if name == "rram":
        return aimc.AnalogConfig(device="rram")
    if name == "rram22":
        return aimc.presets.rram22(adc=aimc.ADCConfig(bits=4))
    if name == "rram-4x2b":
        g_max = 1e6 / 6e3
        return aimc.AnalogConfig(
            device=device_models.get("rram", g_max=g_max, g_min=g_max / 17),
            tile=aimc.TileConfig(rows=128, cols=128),
            dac=aimc.DACConfig(bits=8, signed=False, bit_serial=True),
            adc=aimc.ADCConfig(bits=4),
            mapping=aimc.MappingConfig(encoding="differential", weight_bits=8, slices=4),
            drift_compensation=False,
        )
    if name == "ideal":
        return aimc.AnalogConfig.ideal()
    raise ValueError(f"unknown config {name!r}; use pcm, rram, rram22, rram-4x2b or ideal")


# ----------------------------------------------------------------------------- measuring


def _rss_mb() -> float:
    try:  # return freed heap pages first, so only live memory is counted
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not in /proc/self/status")


_CLOCK = time.perf_counter  # ``--clock cpu``: time.process_time


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _held_bytes(model: nn.Module) -> int:
    """Bytes of the tensors the analog layers hold: parameters, buffers and cached reads."""
    seen, total = set(), 0

    def add(t) -> None:
        nonlocal total
        if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
        elif isinstance(t, (tuple, list)):
            for v in t:
                add(v)
        elif isinstance(t, dict):
            for v in t.values():
                add(v)

    for _, layer in aimc.analog_layers(model):
        for m in layer.modules():  # the layer and its stage modules
            for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
                add(t)
            for name, value in vars(m).items():
                if name.startswith("_") and name not in ("_parameters", "_buffers", "_modules"):
                    add(value)
    return total


def _busy() -> subprocess.Popen:
    """A second process spinning on one core (a neighbour's job)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(net: str, cfg_name: str, args) -> dict:
    device = args.device
    model, x = network(net, args.batch)
    model, x = model.to(device), x.to(device)
    weights = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        model(x)  # warm torch up before the baseline
    aimc.sampling.normal_sampler()
    _sync(device)
    rss0 = _rss_mb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        mem0 = torch.cuda.memory_allocated()
    t, cpu = time.perf_counter(), time.process_time()
    analog = aimc.convert_to_analog(model, config(cfg_name)).eval()
    _sync(device)
    convert_s, convert_cpu_s = time.perf_counter() - t, time.process_time() - cpu
    rss_convert = _rss_mb()
    aimc.calibrate(analog, [x])
    aimc.drift(analog, 3600.0)
    with torch.no_grad():
        analog(x)
    _sync(device)
    rss_fwd = _rss_mb()
    out = {
        "net": net,
        "config": cfg_name,
        "weights": weights,
        "convert_s": convert_s,
        "convert_cpu_s": convert_cpu_s,
        "added_convert_mb": rss_convert - rss0,
        "added_mb": rss_fwd - rss0,
        "state_mb": _held_bytes(analog) / 2**20,
    }
    if device == "cuda":
        out["added_mb"] = (torch.cuda.memory_allocated() - mem0) / 2**20
        out["peak_mb"] = (torch.cuda.max_memory_allocated() - mem0) / 2**20
    busy = _busy() if args.load else None
    try:
        ratios, t_d, t_a = [], [], []
        with torch.no_grad():
            for _ in range(args.repeats):
                for fn, acc in ((model, t_d), (analog, t_a)):
                    _sync(device)
                    t = _CLOCK()
                    fn(x)
                    _sync(device)
                    acc.append(_CLOCK() - t)
                ratios.append(t_a[-1] / t_d[-1])
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    out.update(
        torch_s=statistics.median(t_d),
        aimc_s=statistics.median(t_a),
        ratio=statistics.median(ratios),
    )
    if args.matmuls:
        out.update(_matmul_time(analog, x, device))
    if args.cost:
        t, cpu = time.perf_counter(), time.process_time()
        aimc.estimate_cost(analog, x, technology="rram22" if cfg_name == "rram22" else "isaac")
        out["cost_s"], out["cost_cpu_s"] = time.perf_counter() - t, time.process_time() - cpu
    return out


def _matmul_time(analog: nn.Module, x: torch.Tensor, device: str) -> dict:
    """Time (``--clock``) and work of the batched read-out's partial-sum kernels in one more
    analog forward: its matmuls (``torch.bmm`` into a partial-sum buffer; multiply-adds) and
    its table lookups (``embedding_bag``; table entries added)."""
    real, spent, flop = torch.bmm, [0.0, 0.0], [0, 0]
    real_bag = F.embedding_bag

    def timed(a, b, *, out=None):
        if out is None:
            return real(a, b)
        _sync(device)
        t = _CLOCK()
        real(a, b, out=out)
        _sync(device)
        spent[0] += _CLOCK() - t
        flop[0] += 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        return out

    def timed_bag(idx, table, *args, **kwargs):
        _sync(device)
        t = _CLOCK()
        y = real_bag(idx, table, *args, **kwargs)
        _sync(device)
        spent[1] += _CLOCK() - t
        flop[1] += idx.numel() * table.shape[1]
        return y

    torch.bmm, F.embedding_bag = timed, timed_bag
    try:
        with torch.no_grad():
            analog(x)
    finally:
        torch.bmm, F.embedding_bag = real, real_bag
    return {
        "matmul_s": spent[0],
        "matmul_gflop": flop[0] / 1e9,
        "lookup_s": spent[1],
        "lookup_gadds": flop[1] / 1e9,
    }


def slices_cycles(args) -> None:
    """Analog/torch time of one VGG-8 conv (128 -> 128 channels, 3x3, 32x32, batch
    ``--batch``) by weight slices and input cycles: 4-bit ADC, 8-bit weights on 128x128 tiles
    of RRAM (differential: 1, 2 or 4 slices of 7, 4 or 2 magnitude bits; offset-encoded: 8
    one-bit slices), unsigned inputs streamed over 1 (8-bit DAC), 4 or 8 cycles."""
    torch.manual_seed(0)
    conv = nn.Conv2d(128, 128, 3, padding=1).eval()
    x = torch.relu(torch.randn(args.batch, 128, 32, 32))
    print(
        "| weight slices | input cycles | passes | torch (ms) | aimc (ms) | ratio "
        "| ratio / passes |"
    )
    print("|---|---|---|---|---|---|---|")
    for slices in (1, 2, 4, 8):
        # 8 one-bit slices: offset encoding (a differential weight has 7 magnitude bits)
        encoding = "offset" if slices == 8 else "differential"
        for cycles in (1, 4, 8):
            bits = cycles if cycles > 1 else 8
            dac = aimc.DACConfig(bits=bits, signed=False, bit_serial=cycles > 1)
            cfg = aimc.AnalogConfig(
                device="rram",
                tile=aimc.TileConfig(128, 128),
                dac=dac,
                adc=aimc.ADCConfig(bits=4),
                mapping=aimc.MappingConfig(encoding=encoding, weight_bits=8, slices=slices),
                drift_compensation=False,
            )
            analog = aimc.convert_to_analog(conv, cfg).eval()
            aimc.calibrate(analog, [x])
            ratios, t_d, t_a = [], [], []
            with torch.no_grad():
                analog(x)
                for _ in range(args.repeats):
                    for fn, acc in ((conv, t_d), (analog, t_a)):
                        t = _CLOCK()
                        fn(x)
                        acc.append(_CLOCK() - t)
                    ratios.append(t_a[-1] / t_d[-1])
            r = statistics.median(ratios)
            print(
                f"| {slices} | {cycles} | {slices * cycles} | {statistics.median(t_d) * 1e3:.0f} "
                f"| {statistics.median(t_a) * 1e3:.0f} | {r:.1f}x | {r / (slices * cycles):.2f} |",
                flush=True,
            )


def table_rows(args) -> None:
    """The lookup-table read against the GEMM read of one bit-plane Linear (1024 -> 1024,
    ``rram-4x2b``: 8 cycles, 4 slices) by matmul rows (input cycles x MVMs): where the tables
    start to pay for their making (``aimc.tile.readout.TABLE_MIN_ROWS``)."""
    torch.manual_seed(0)
    linear = nn.Linear(1024, 1024).eval()
    print("| matmul rows | MVMs | tables (ms) | GEMM (ms) | GEMM / tables |")
    print("|---|---|---|---|---|")
    real = analog_linear.TABLE_MIN_ROWS
    for mvms in (8, 16, 32, 64, 128, 256, 512, 1024):
        x = torch.relu(torch.randn(mvms, 1024))
        analog = aimc.convert_to_analog(linear, config("rram-4x2b")).eval()
        aimc.calibrate(analog, [x])
        times = []
        try:
            for threshold in (1, 1 << 62):  # every read through the tables, then none
                analog_linear.TABLE_MIN_ROWS = threshold
                spent = []
                with torch.no_grad():
                    analog(x)
                    for _ in range(args.repeats):
                        t = _CLOCK()
                        analog(x)
                        spent.append(_CLOCK() - t)
                times.append(statistics.median(spent) * 1e3)
        finally:
            analog_linear.TABLE_MIN_ROWS = real
        table, gemm = times
        print(
            f"| {8 * mvms} | {mvms} | {table:.1f} | {gemm:.1f} | {gemm / table:.2f}x |", flush=True
        )


def _run_case(net: str, cfg_name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--case", f"{net}:{cfg_name}"]
    for key in ("batch", "repeats", "threads", "device", "clock"):
        cmd += [f"--{key}", str(getattr(args, key))]
    cmd += ["--load"] * args.load + ["--cost"] * args.cost + ["--matmuls"] * args.matmuls
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.stderr.write(res.stderr)
        return {"net": net, "config": cfg_name, "error": res.stderr.strip().splitlines()[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _row(r: dict) -> str:
    if "error" in r:
        return f"| {r['net']} | {r['config']} | failed: {r['error']} |"
    bpw = r["added_mb"] * 2**20 / r["weights"]
    cost = f" {r['cost_s']:.1f} ({r['cost_cpu_s']:.1f}) |" if "cost_s" in r else ""
    return (
        f"| {r['net']} | {r['config']} | {r['weights'] / 1e6:.1f}M | {r['torch_s'] * 1e3:.0f} | "
        f"{r['aimc_s'] * 1e3:.0f} | {r['ratio']:.1f}x | "
        f"{r['convert_s']:.1f} ({r['convert_cpu_s']:.1f}) | "
        f"{r['added_convert_mb']:.0f} | {r['added_mb']:.0f} | {bpw:.0f} | {r['state_mb']:.0f} |"
        + cost
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="vgg8,resnet18")
    parser.add_argument("--configs", default="pcm,rram22")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="wall or process CPU time"
    )
    parser.add_argument("--load", action="store_true", help="a second process busy on one core")
    parser.add_argument("--cost", action="store_true", help="also time aimc.estimate_cost")
    parser.add_argument(
        "--matmuls", action="store_true", help="also time the batched read-out's matmuls"
    )
    parser.add_argument(
        "--slices-cycles", action="store_true", help="one conv by weight slices x input cycles"
    )
    parser.add_argument(
        "--table-rows",
        action="store_true",
        help="a bit-plane Linear through lookup tables against the GEMM read, by matmul rows",
    )
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global _CLOCK
    _CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.table_rows:
        table_rows(args)
        return
    if args.slices_cycles:
        slices_cycles(args)
        return
    if args.case:
        net, cfg_name = args.case.split(":")
        print(json.dumps(measure(net, cfg_name, args)))
        return
    print(
        f"torch {torch.__version__}, device {args.device}, threads {args.threads}, batch "
        f"{args.batch}, {args.clock} clock, normal sampler "
        f"{aimc.sampling.normal_sampler(args.device)}"
        f"{', one core kept busy by a second process' if args.load else ''}\n"
    )
    cost = " estimate_cost, wall (CPU) s |" if args.cost else ""
    print(
        "| network | config | weights | torch (ms) | aimc (ms) | ratio | convert, wall (CPU) s | "
        "added after convert (MB) | added after a forward (MB) | bytes/weight | "
        "held by layers (MB) |" + cost
    )
    print("|---" * (11 + args.cost) + "|")
    for net in args.nets.split(","):
        for cfg_name in args.configs.split(","):
            r = _run_case(net, cfg_name, args)
            print(_row(r), flush=True)
            if "matmul_s" in r:
                for kind, work, unit in (
                    ("matmul", "gflop", "GFLOP"),
                    ("lookup", "gadds", "G adds"),
                ):
                    t, w = r[f"{kind}_s"], r[f"{kind}_{work}"]
                    if t > 0:
                        print(
                            f"  {r['net']} {r['config']} {kind}s: {w:.1f} {unit} in "
                            f"{t * 1e3:.0f} ms ({w / t:.0f} {unit}/s), "
                            f"{t / r['torch_s']:.1f}x the torch forward",
                            flush=True,
                        )


if __name__ == "__main__":
    main()
