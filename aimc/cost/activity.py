"""Activity counters: one forward of a model with hooks on, recording what each layer does.

Analog layers (any module with the cost interface) report their MVMs, inputs and the
data-dependent crossbar energy ``V^2 t sum_rows(sum_MVMs |x_norm| * sum_cols G)``; digital leaf
modules and the tensor ops written in ``forward`` bodies (caught by a ``TorchFunctionMode``
while no leaf or analog module is running) report activations, elementary digital ops and
digital MACs. Entries are named after the module (``scope:op`` for tensor ops) and kept in
the order they first ran.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from aimc.cost.counts import Counts
from aimc.cost.technology import Technology
from aimc.nn.protocol import analog_layers as iter_analog_layers

__all__ = ["Recorder", "Entry", "eval_mode", "tensors", "first_tensor", "count_mvms"]

# -------------------------------------------------------------------- digital op classification
_FREE = (nn.Identity, nn.Flatten, nn.Unflatten, nn.modules.dropout._DropoutNd)
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softmax,
    nn.LogSoftmax, nn.Softplus, nn.Softsign, nn.Tanhshrink,
)  # fmt: skip
_POOLS = (
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
)  # fmt: skip
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)

_ARITH_FN = {
    "add", "sub", "mul", "div", "truediv", "true_divide", "addcmul", "addcdiv", "neg", "abs",
    "pow", "sqrt", "exp", "log", "clamp", "clip", "maximum", "minimum", "where", "square",
}  # fmt: skip
_ACT_FN = {
    "relu", "relu6", "gelu", "sigmoid", "tanh", "silu", "softmax", "log_softmax", "leaky_relu",
    "hardtanh", "elu", "selu", "celu", "hardswish", "hardsigmoid", "mish", "softplus",
}  # fmt: skip
_REDUCE_FN = {
    "mean", "sum", "amax", "amin", "logsumexp", "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "lp_pool2d",
    "max_pool2d_with_indices",
}  # fmt: skip
_NORM_FN = {"batch_norm", "layer_norm", "group_norm", "instance_norm", "normalize"}
_MAC_FN = {"linear", "matmul", "mm", "bmm", "baddbmm", "conv1d", "conv2d", "conv3d"}


def tensors(obj: Any) -> Iterator[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from tensors(item)


def first_tensor(obj: Any) -> Optional[Tensor]:
    return next(tensors(obj), None)


def _numel(obj: Any) -> int:
    t = first_tensor(obj)
    return int(t.numel()) if t is not None else 0


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", "").strip("_")
    if name[:1] in ("i", "r") and name[1:] in _ARITH_FN:  # __iadd__, __radd__, ...
        name = name[1:]
    return name


def _op_counts(name: str, args: tuple, out: Any) -> Optional[Counts]:
    """Counts of one functional tensor op, or ``None`` for ops that cost nothing (views...)."""
    n_out = _numel(out)
    if name in _ARITH_FN:
        return Counts(digital_ops=n_out)
    if name in _ACT_FN:
        return Counts(activations=n_out)
    if name in _REDUCE_FN:
        return Counts(digital_ops=_numel(args))
    if name in _NORM_FN:
        return Counts(digital_ops=2 * n_out)
    if name == "scaled_dot_product_attention":  # Q K^T and A V products, softmax of the scores
        ts = list(tensors(args))
        if len(ts) < 3:
            return None
        q, k, v = ts[:3]
        scores = (q.numel() // q.shape[-1]) * k.shape[-2]
        macs = scores * (q.shape[-1] + v.shape[-1])
        return Counts(macs=macs, digital_ops=macs, activations=scores)
    if name in _MAC_FN:
        ts = list(tensors(args))
        if name == "baddbmm":  # the added input first, then the two factors
            ts = ts[1:]
        if len(ts) < 2:
            return None
        a, w = ts[0], ts[1]
        if name == "linear":
            k = w.shape[-1]
        elif name.startswith("conv"):
            k = w[0].numel()
        else:
            k = a.shape[-1]
        macs = n_out * int(k)
        return Counts(macs=macs, digital_ops=macs)
    return None


def _module_counts(module: nn.Module, args: tuple, out: Any) -> Optional[Counts]:
    """Counts of one call of a digital leaf module, or ``None`` when it costs nothing."""
    n_out = _numel(out)
    if isinstance(module, _FREE):
        return None
    if isinstance(module, _ACTIVATIONS):
        return Counts(activations=n_out)
    if isinstance(module, _POOLS):
        return Counts(digital_ops=_numel(args))
    if isinstance(module, _NORMS):
        return Counts(digital_ops=2 * n_out)
    if isinstance(module, nn.Linear):
        macs = n_out * module.in_features
        return Counts(macs=macs, digital_ops=macs)
    if isinstance(module, nn.modules.conv._ConvNd):
        macs = n_out * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return Counts(macs=macs, digital_ops=macs)
    return Counts(digital_ops=n_out)


# -------------------------------------------------------------------- the recorder
@dataclass
class Entry:
    name: str
    kind: str  # "analog" | "digital"
    module: str
    order: int
    counts: Counts = field(default_factory=Counts)
    layer: Optional[nn.Module] = None
    mvms_per_group: int = 0
    crossbar_fj: float = 0.0
    input_numel: int = 0
    calls: int = 0


class Recorder(TorchFunctionMode):
    """Forward hooks + a torch function mode that count what one forward does."""

    def __init__(self, model: nn.Module, tech: Optional[Technology]) -> None:
        super().__init__()
        self.tech = tech
        self.entries: dict[str, Entry] = {}
        self.scope: list[str] = []
        self.opaque = 0
        self.active = False
        self.count_only = False
        self.handles: list[Any] = []
        self.analog = dict(iter_analog_layers(model))
        self.g_sums: dict[str, Tensor] = {}
        # analog layers compute with their digital twins while counting: the estimate neither
        # programs devices nor calibrates converter ranges (no side effect on the model)
        self.patched: list[nn.Module] = []
        for layer in self.analog.values():
            to_digital = getattr(layer, "to_digital", None)
            if callable(to_digital) and "forward" not in layer.__dict__:
                layer.forward = _DigitalTwin(to_digital())
                self.patched.append(layer)
        inside = tuple(n + "." for n in self.analog if n)
        for name, module in model.named_modules():
            if name not in self.analog and (
                "" in self.analog or any(name.startswith(p) for p in inside)
            ):
                continue  # part of an analog layer
            opaque = name in self.analog or not any(True for _ in module.children())
            self.handles.append(module.register_forward_pre_hook(self._pre(name, opaque)))
            self.handles.append(module.register_forward_hook(self._post(name, module, opaque)))

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        for layer in self.patched:
            del layer.forward
        self.patched = []

    def _entry(self, name: str, kind: str, module: str) -> Entry:
        if name not in self.entries:
            self.entries[name] = Entry(name, kind, module, order=len(self.entries))
        return self.entries[name]

    def _pre(self, name: str, opaque: bool):
        def hook(module: nn.Module, args: tuple) -> None:
            self.scope.append(name)
            if opaque:
                self.opaque += 1

        return hook

    def _post(self, name: str, module: nn.Module, opaque: bool):
        def hook(mod: nn.Module, args: tuple, out: Any) -> None:
            try:
                if self.active and self.opaque == 1 and opaque:
                    if name in self.analog:
                        self._record_analog(name, mod, args)
                    else:
                        counts = _module_counts(mod, args, out)
                        if counts is not None:
                            e = self._entry(name, "digital", type(mod).__name__)
                            e.counts = e.counts + counts
                            e.calls += 1
            finally:
                self.scope.pop()
                if opaque:
                    self.opaque -= 1

        return hook

    def _record_analog(self, name: str, layer: nn.Module, args: tuple) -> None:
        x = first_tensor(args)
        if x is None:
            return
        e = self._entry(name, "analog", type(layer).__name__)
        e.layer = layer
        e.calls += 1
        e.mvms_per_group += int(layer.mvm_count(x))
        e.input_numel += int(x.numel())
        if self.count_only:
            return
        if name not in self.g_sums:
            self.g_sums[name] = layer.row_conductance_sums().double()
        activity = layer.row_activity(x).double()
        pulses = layer.geometry.cycles if layer.config.dac.bit_serial else 1
        t = self.tech
        e.crossbar_fj += (
            float((activity * self.g_sums[name]).sum()) * t.v_read_v**2 * t.t_read_ns * pulses
        )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.active and self.opaque == 0:
            op = _op_name(func)
            counts = _op_counts(op, args, out) if op else None
            if counts is not None:
                scope = self.scope[-1] if self.scope else ""
                e = self._entry(f"{scope}:{op}" if scope else op, "digital", op)
                e.counts = e.counts + counts
                e.calls += 1
        return out


class _DigitalTwin:
    """A callable standing in for an analog layer's ``forward``: its digital twin's forward."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def count_mvms(model: nn.Module, example_input: Any) -> dict[str, int]:
    """MVMs per group of each analog layer in one forward of ``example_input`` (a digital
    pass: the model is not changed)."""
    import torch

    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    recorder = Recorder(model, None)
    try:
        with eval_mode(model), torch.no_grad(), recorder:
            recorder.active = True
            recorder.count_only = True
            model(*args)
    finally:
        recorder.close()
    return {
        n: recorder.entries[n].mvms_per_group if n in recorder.entries else 0
        for n in recorder.analog
    }


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
