"""Reference networks for the experiments, sized from the dataset's image shape.

Every model takes ``in_shape`` ``(C, H, W)`` and ``num_classes`` first, so the pipeline builds it
from any dataset; YAML picks one with ``_target_`` (``conf/model/*.yaml``), and a user model is any
``_target_`` returning an ``nn.Module`` (it gets ``in_shape``/``num_classes`` only when its
signature accepts them). The layers analog conversion replaces are the ``nn.Linear`` and
``nn.Conv2d`` ones, and in the sequence models the attention projections and the LSTM
matrices; batch norm, pooling, activations, softmax and embeddings stay digital.

The sequence models read an image as a sequence (its rows, or square patches, as tokens or time
steps) and a text window (``in_shape`` ``(T,)``, integer tokens, ``num_classes`` the vocabulary)
through an embedding.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from device_models.registry import Registry

__all__ = [
    "MLP",
    "LeNet5",
    "ResNet20",
    "VGG8",
    "TransformerClassifier",
    "LSTMClassifier",
    "build_model",
    "MODELS",
    "get_model",
    "model_names",
]

MODELS: Registry = Registry("model", case_sensitive=False)
"""The model presets by name (``conf/model/<name>.yaml`` picks the same classes)."""


def _shape_after(features: nn.Module, in_shape: Sequence[int]) -> torch.Size:
    with torch.no_grad():
        return features(torch.zeros(1, *in_shape)).shape[1:]


@MODELS.register("mlp")
class MLP(nn.Sequential):
    """Flatten, then fully connected layers with ReLU between them.

    Args:
        in_shape: ``(C, H, W)`` of the input images.
        num_classes: outputs.
        hidden: widths of the hidden layers (``[]``: a linear classifier).
        dropout: dropout probability after each hidden activation.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        width = int(torch.tensor(list(in_shape)).prod())
        names = []
        for k, h in enumerate(hidden):
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            names += [f"fc{k + 1}", f"act{k + 1}"]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
                names.append(f"drop{k + 1}")
            width = int(h)
        layers.append(nn.Linear(width, num_classes))
        names.append(f"fc{len(hidden) + 1}")
        super().__init__()
        self.add_module("flatten", layers[0])
        for name, layer in zip(names, layers[1:]):
            self.add_module(name, layer)


@MODELS.register("lenet5")
class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998): two 5x5 conv + max-pool stages, then 120-84-classes.

    The classic network is sized for 32x32 inputs; smaller images (MNIST's 28x28, digits' 8x8) get
    zero padding in the convolutions so that the feature maps stay at least 1x1.
    """

    def __init__(self, in_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, h, _ = in_shape
        pad1 = 0 if h >= 32 else 2
        h1 = (h + 2 * pad1 - 4) // 2
        pad2 = 0 if h1 >= 10 else 2
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=pad1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=pad2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = _shape_after(self.features, in_shape).numel()
        self.classifier = nn.Sequential(
            nn.Linear(flat, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


@MODELS.register("resnet20")
class ResNet20(nn.Module):
    """ResNet-20 for CIFAR (He et al., 2016): 3 stages of 3 basic blocks, ``width``-2w-4w channels.

    Args:
        in_shape: ``(C, H, W)``; any size (global average pooling at the end).
        num_classes: outputs.
        width: channels of the first stage (16 in the paper; smaller for quick runs).
        blocks: basic blocks per stage (3 gives ResNet-20: 6 * 3 + 2 layers).
    """

    def __init__(
        self, in_shape: Sequence[int], num_classes: int, width: int = 16, blocks: int = 3
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_shape[0], width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages = []
        c_in = width
        for k, c_out in enumerate((width, 2 * width, 4 * width)):
            stride = 1 if k == 0 else 2
            stage = [
                _BasicBlock(c_in if j == 0 else c_out, c_out, stride if j == 0 else 1)
                for j in range(blocks)
            ]
            stages.append(nn.Sequential(*stage))
            c_in = c_out
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@MODELS.register("vgg8")
class VGG8(nn.Module):
    """VGG-8: six 3x3 conv layers in three pooled pairs, then two fully connected layers.

    The channel plan ``w, w, 2w, 2w, 4w, 4w`` with ``w = 64`` and a 512-wide hidden layer follows
    the VGG-8 commonly used for CIFAR-10 in analog in-memory-computing studies.

    Args:
        in_shape: ``(C, H, W)``; three 2x2 pools need ``H, W >= 8``.
        num_classes: outputs.
        width: channels of the first pair.
        hidden: width of the hidden fully connected layer.
        batch_norm: batch norm after every convolution.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        width: int = 64,
        hidden: int = 512,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if min(in_shape[1:]) < 8:
            raise ValueError(f"VGG8 needs images of at least 8x8, got {tuple(in_shape)}")
        layers: list[nn.Module] = []
        c_in = in_shape[0]
        for k, c_out in enumerate((width, width, 2 * width, 2 * width, 4 * width, 4 * width)):
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU())
            if k % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        flat = _shape_after(self.features.eval(), in_shape).numel()
        self.features.train()
        self.classifier = nn.Sequential(
            nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _tokens(in_shape: Sequence[int], patch: int) -> tuple[int, int]:
    """``(tokens, features per token)`` of an image read as rows (``patch=0``) or patches."""
    c, h, w = in_shape
    if patch <= 0:
        return h, c * w
    if h % patch or w % patch:
        raise ValueError(f"patch={patch} must divide the image size {h}x{w}")
    return (h // patch) * (w // patch), c * patch * patch


def _as_tokens(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Images ``(N, C, H, W)`` as ``(N, tokens, features)``."""
    n, c, h, w = x.shape
    if patch <= 0:
        return x.permute(0, 2, 1, 3).reshape(n, h, c * w)
    p = patch
    x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // p) * (w // p), c * p * p)


class _SequenceInput(nn.Module):
    """Images → row/patch vectors through a linear embedding; token windows → an embedding."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, width: int, patch: int):
        super().__init__()
        self.patch = int(patch)
        self.text = len(in_shape) == 1
        if self.text:
            self.length = int(in_shape[0])
            self.embed: nn.Module = nn.Embedding(num_classes, width)
        else:
            self.length, features = _tokens(in_shape, self.patch)
            self.embed = nn.Linear(features, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x.long() if self.text else _as_tokens(x, self.patch))


@MODELS.register("transformer")
class TransformerClassifier(nn.Module):
    """A small ViT-style encoder: tokens (image rows or patches, or characters), a learned
    position embedding, ``nn.TransformerEncoder`` layers (pre-norm), mean pooling, a linear head.

    Args:
        in_shape: ``(C, H, W)`` images or ``(T,)`` token windows.
        num_classes: outputs (for token windows also the vocabulary).
        d_model, heads, layers, ff: encoder width, attention heads, layers, feed-forward width.
        patch: square patch size (0: one token per image row).
        dropout: dropout inside the encoder layers.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        d_model: int = 32,
        heads: int = 4,
        layers: int = 2,
        ff: int = 64,
        patch: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.inp = _SequenceInput(in_shape, num_classes, d_model, patch)
        self.pos = nn.Parameter(torch.zeros(1, self.inp.length, d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ff, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.inp(x) + self.pos)
        return self.head(self.norm(h).mean(dim=1))


@MODELS.register("lstm")
class LSTMClassifier(nn.Module):
    """An LSTM over a sequence (image rows or patches as time steps, or embedded characters);
    the last hidden state feeds a linear head.

    Args:
        in_shape: ``(C, H, W)`` images or ``(T,)`` token windows.
        num_classes: outputs (for token windows also the vocabulary).
        hidden: LSTM hidden size.
        layers: stacked LSTM layers.
        embed: embedding width of token windows (images feed their rows directly).
        patch: square patch size (0: one time step per image row).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        hidden: int = 64,
        layers: int = 1,
        embed: int = 32,
        patch: int = 0,
    ) -> None:
        super().__init__()
        self.text = len(in_shape) == 1
        self.patch = int(patch)
        if self.text:
            self.embed: nn.Module = nn.Embedding(num_classes, embed)
            features = embed
        else:
            self.embed = nn.Identity()
            features = _tokens(in_shape, self.patch)[1]
        self.lstm = nn.LSTM(features, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.embed(x.long()) if self.text else _as_tokens(x, self.patch)
        out, _ = self.lstm(seq)
        return self.head(out[:, -1])


def build_model(
    factory: Any, in_shape: Sequence[int], num_classes: int, **kwargs: Any
) -> nn.Module:
    """Call ``factory`` (a model class or function) with the dataset facts it accepts.

    ``in_shape`` and ``num_classes`` are passed when the signature names them (or takes
    ``**kwargs``), so user models with fixed shapes work too.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    facts = {"in_shape": tuple(in_shape), "num_classes": int(num_classes)}
    for key, value in facts.items():
        if takes_any or key in params:
            kwargs.setdefault(key, value)
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model._target_ must build a torch.nn.Module, got {type(model).__name__}")
    return model


def model_names() -> list[str]:
    """Names of the registered model presets."""
    return MODELS.names()


def get_model(name: str, in_shape: Sequence[int], num_classes: int, **kwargs: Any) -> nn.Module:
    """The model preset ``name`` built for ``in_shape`` and ``num_classes`` (``KeyError`` lists
    the known names and the closest one)."""
    return build_model(MODELS.lookup(name), in_shape, num_classes, **kwargs)
