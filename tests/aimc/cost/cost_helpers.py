"""Helpers of the cost-model tests: a fake analog layer with the cost interface, small models."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

import aimc
import aimc.presets
from aimc.cost import get_technology
from aimc.tile import TileGeometry


class FakeAnalogLinear(nn.Module):
    """The smallest module with the analog-layer cost interface (a plain linear layer whose
    inputs are already normalized and whose every device holds ``g_us``)."""

    def __init__(self, in_features: int, out_features: int, config: aimc.AnalogConfig, g_us=10.0):
        super().__init__()
        self.config = config
        m = config.mapping
        self.geometry = TileGeometry(
            groups=1,
            in_rows=in_features,
            out_cols=out_features,
            rows=config.tile.rows,
            cols=config.tile.cols,
            slices=m.slices,
            cols_per_weight=m.cols_per_weight,
            cycles=config.dac.cycles,
        )
        self.in_features = in_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * 0.1)
        self.g_us = g_us

    def forward(self, x):
        return x @ self.weight.t()

    def mvm_count(self, x) -> int:
        return x.numel() // self.in_features

    def row_activity(self, x):
        return x.reshape(-1, self.in_features).abs().clamp(max=1.0).sum(0).unsqueeze(0)

    def row_conductance_sums(self):
        n = self.geometry.out_cols * self.geometry.cols_per_weight
        return torch.full((1, self.in_features), self.g_us * n)


def small_technology(**overrides):
    """ISAAC's numbers on a chip of 2 clusters of 2 cores of 1 tile (to test chip overflow)."""
    base = dict(tiles_per_core=1, cores_per_cluster=2, clusters_per_chip=2)
    base.update(overrides)
    return get_technology("isaac", **base)


class ConvNet(nn.Module):
    """conv -> ReLU -> conv + residual add -> relu -> max-pool -> linear."""

    def __init__(self, channels: int = 4, classes: int = 3, image: int = 8):
        super().__init__()
        self.c1 = nn.Conv2d(1, channels, 3, padding=1)
        self.act = nn.ReLU()
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(channels * (image // 2) ** 2, classes)

    def forward(self, x):
        h = self.act(self.c1(x))
        h = h + self.c2(h)
        h = torch.relu(h)
        return self.fc(self.pool(h).flatten(1))


class ConvOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def with_adc_bits(cfg: aimc.AnalogConfig, bits: int) -> aimc.AnalogConfig:
    return dataclasses.replace(cfg, adc=dataclasses.replace(cfg.adc, bits=bits))
