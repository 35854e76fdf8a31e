"""The cost model beside published figures: DNN+NeuroSim V1.4 on VGG-8, ISAAC, HERMES.

Usage:
    python -m benchmarks.cost_neurosim [--timing] [--threads 2]

Prints Markdown tables:

1. VGG-8 on one 32x32x3 image (``experiments.models.VGG8(width=128, hidden=1024,
   batch_norm=False)``, random weights and image, seed 0) on ``aimc.presets.rram22()`` (5-bit
   ADC), ``rram22(adc=ADCConfig(bits=4))`` and ``aimc.presets.sram22()`` with their
   technologies and NeuroSim's pipeline replication (``replication="balanced"``), beside the
   NeuroSim V1.4 figures: its manual's Table VII (RRAM and SRAM rows, 5-bit sense-amp ADC as
   shipped) and a NeuroSim V1.4 run of the 4-bit RRAM case. Operations are 2 per MAC over the
   padded outputs, as NeuroSim credits them; TOPS is operations over the pipeline period (one
   image per period), NeuroSim's layer-by-layer figure; TOPS/W is operations over our energy
   of one image (NeuroSim's printed figure divides its energy by a post-layout factor 1.22
   and simulates the unpadded windows only, two effects of opposite sign).
2. Trends (no published numbers: the direction NeuroSim's models give): ADC bits, parallel
   rows and array size on the same network.
3. ISAAC peak (Table I) and HERMES peak.
4. With ``--timing``: the wall time of ``estimate_cost`` for VGG-8 (32x32) and ResNet-18 at
   224x224 (conversion without programming, which the estimate does not need).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from torch import nn

import aimc
import aimc.presets
from aimc.cost import estimate_cost, peak_performance
from experiments.models import VGG8

NEUROSIM = {  # area mm^2, TOPS, TOPS/W
    "rram22 (5-bit ADC)": (381.90, 6.25, 11.25, "manual Table VII"),
    "rram22, adc bits=4": (345.0, 7.89, 18.5, "NeuroSim V1.4 run, random weights"),
    "sram22 (5-bit ADC)": (85.97, 6.06, 8.76, "manual Table VII"),
}


def vgg8() -> nn.Module:
    torch.manual_seed(0)
    return VGG8((3, 32, 32), 10, width=128, hidden=1024, batch_norm=False).eval()


def _cost(model: nn.Module, cfg: aimc.AnalogConfig, tech: str, x: torch.Tensor, **kw):
    analog = aimc.convert_to_analog(model, cfg, program=False)
    return estimate_cost(analog, x, tech, replication="balanced", **kw)


def _err(ours: float, ref: float) -> str:
    return f"{ours:.3g} ({100 * (ours / ref - 1):+.0f} %)"


def neurosim_table() -> str:
    model, x = vgg8(), torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cases = {
        "rram22 (5-bit ADC)": (aimc.presets.rram22(), "rram22"),
        "rram22, adc bits=4": (aimc.presets.rram22(adc=aimc.ADCConfig(bits=4)), "rram22"),
        "sram22 (5-bit ADC)": (aimc.presets.sram22(), "sram22"),
    }
    lines = [
        "| configuration | NeuroSim area mm² | ours | NeuroSim TOPS | ours | NeuroSim TOPS/W"
        " | ours | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shares = []
    for name, (cfg, tech) in cases.items():
        area, tops, tpw, src = NEUROSIM[name]
        t = _cost(model, cfg, tech, x).total
        lines.append(
            f"| {name} | {area:g} | {_err(t.area_mm2, area)} | {tops:g} | "
            f"{_err(t.pipelined_tops, tops)} | {tpw:g} | {_err(t.tops_per_w, tpw)} | {src} |"
        )
        e = t.energy_j
        top = sorted(t.energy_by_component_j.items(), key=lambda kv: -kv[1])[:5]
        shares.append(f"{name}: " + ", ".join(f"{k} {v / e:.0%}" for k, v in top))
    return "\n".join(lines) + "\n\nenergy shares: " + "; ".join(shares)


def trends_table() -> str:
    model, x = vgg8(), torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    base = aimc.presets.rram22()
    rows = ["| rram22 variant | area mm² | TOPS | TOPS/W |", "|---|---|---|---|"]

    def add(label, cfg):
        t = _cost(model, cfg, "rram22", x).total
        rows.append(f"| {label} | {t.area_mm2:.4g} | {t.pipelined_tops:.3g} | {t.tops_per_w:.3g} |")

    for bits in (3, 4, 5, 6):
        add(f"ADC {bits} bits", aimc.presets.rram22(adc=aimc.ADCConfig(bits=bits)))
    for pr in (8, 16, 64, 128):
        add(f"parallel rows {pr}", dataclasses.replace(base, tile=aimc.TileConfig(128, 128, pr)))
    add("array 256x256, 32 rows", dataclasses.replace(base, tile=aimc.TileConfig(256, 256, 32)))
    return "\n".join(rows)


def peak_table() -> str:
    isaac = peak_performance(aimc.presets.isaac(), "isaac")
    hermes = peak_performance(aimc.presets.hermes(), "hermes")
    rows = [
        "| check | published | ours |",
        "|---|---|---|",
        f"| ISAAC chip power (Table I) | 65.8 W | {_err(isaac.power_w, 65.8)} W |",
        f"| ISAAC chip area | 85.4 mm² | {_err(isaac.area_mm2, 85.4)} mm² |",
        f"| ISAAC peak (16-bit ops) | 41.3 TOPS | {_err(isaac.tops, 41.3)} |",
        f"| HERMES peak | 63.1 TOPS | {_err(hermes.tops, 63.1)} |",
        f"| HERMES efficiency | 9.76 TOPS/W | {_err(hermes.tops_per_w, 9.76)} |",
    ]
    return "\n".join(rows)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


def resnet18(classes: int = 1000) -> nn.Module:
    """ResNet-18 for 224x224 images (He et al., CVPR 2016)."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    c = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_Block(c, c_out, stride), _Block(c_out, c_out, 1)]
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers).eval()


def timing_table() -> str:
    rows = ["| case | convert s | estimate_cost s |", "|---|---|---|"]
    for label, model, x, cfg, tech in (
        ("VGG-8 32x32, rram22", vgg8(), torch.rand(1, 3, 32, 32), aimc.presets.rram22(), "rram22"),
        (
            "ResNet-18 224x224, hermes",
            resnet18(),
            torch.rand(1, 3, 224, 224),
            aimc.presets.hermes(),
            "hermes",
        ),
    ):
        t0 = time.perf_counter()
        analog = aimc.convert_to_analog(model, cfg, program=False)
        t1 = time.perf_counter()
        estimate_cost(analog, x, tech, replication="balanced")
        t2 = time.perf_counter()
        rows.append(f"| {label} | {t1 - t0:.2f} | {t2 - t1:.2f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing", action="store_true", help="time VGG-8 and ResNet-18")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("## VGG-8 (CIFAR-10 size) against DNN+NeuroSim V1.4\n")
    print(neurosim_table())
    print("\n## Trends on VGG-8 (rram22)\n")
    print(trends_table())
    print("\n## Peak figures\n")
    print(peak_table())
    if args.timing:
        print(f"\n## Time of a cost estimate ({args.threads} threads)\n")
        print(timing_table())


if __name__ == "__main__":
    main()
