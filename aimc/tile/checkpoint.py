"""What a checkpoint must match to load into an analog layer, and the key map of old ones.

A layer's ``state_dict`` holds its stage modules' buffers (``fc1.crossbar.dev_g``,
``fc1.adc.full_scale``, ...). Loading checks that the checkpoint was written for the same tile
layout (:data:`LAYOUT_FIELDS`, the crossbar's ``layout`` buffer) and the same device model
(the ``dev_`` keys and their dtypes), and renames the keys of the flat layout that predates the
stage modules (:func:`rename_flat_keys`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from aimc.tile.stage import IdentityConverter

__all__ = ["LAYOUT_FIELDS", "check_layout", "device_state_keys", "rename_flat_keys"]

# TileGeometry fields saved in the ``layout`` buffer: a state_dict must match them to load
LAYOUT_FIELDS = ("rows", "cols", "slices", "cols_per_weight", "groups", "in_rows", "out_cols")
LAYOUT_FIELDS += ("row_block",)

# state_dict keys of the flat layout that predates the stage modules -> their stage keys
_OLD_KEYS = {
    "dac_range": "dac.range",
    "dac_range_gain": "dac.range_gain",
    "adc_range": "adc.full_scale",
    "weight_scale": "crossbar.weight_scale",
    "t_bits": "crossbar.t_bits",
    "program_seed": "crossbar.seed",
    "weight_fingerprint": "crossbar.fingerprint",
    "layout": "crossbar.layout",
}


def check_layout(state_dict: dict[str, Any], prefix: str, layout: Tensor, name: str) -> None:
    """Refuse a checkpoint whose ``layout`` differs from the layer's (another tile grid)."""
    lay = state_dict.get(prefix + "layout")
    if lay is not None and not torch.equal(lay.cpu(), layout.cpu()):
        got = dict(zip(LAYOUT_FIELDS, lay.tolist()))
        want = dict(zip(LAYOUT_FIELDS, layout.tolist()))
        raise ValueError(
            f"state_dict for {name} comes from a different tile layout: "
            f"it has {got}, this layer has {want}"
        )


def device_state_keys(
    state_dict: dict[str, Any], prefix: str, device, default_dtype: torch.dtype, name: str
) -> tuple[str, ...]:
    """The device-state keys (``"g"``, ...) of a checkpoint, checked against ``device`` (the
    layer's device model): the same keys, each in the dtype the model keeps it in (a checkpoint
    in a wider float, from before the state was kept in compact precision, is narrowed in
    place). ``()`` when the checkpoint holds no device state."""
    keys = tuple(
        k[len(prefix) + 4 :]
        for k in state_dict
        if k.startswith(prefix + "dev_") and "." not in k[len(prefix) :]
    )
    if keys and set(keys) != set(device.state_keys()):
        raise ValueError(
            f"state_dict for {name} holds the device state {sorted(keys)} of "
            f"another device model; this layer's device {device.describe()} keeps "
            f"{sorted(device.state_keys())}. Convert the model with the device it was "
            "saved with (or load only its digital weights: the state_dict without the "
            "'dev_' entries)"
        )
    for key in keys:
        want = device.state_dtypes().get(key) or default_dtype
        got = state_dict[prefix + "dev_" + key].dtype
        if got != want and got.is_floating_point and want.itemsize < got.itemsize:
            state_dict[prefix + "dev_" + key] = state_dict[prefix + "dev_" + key].to(want)
        elif got != want:
            raise ValueError(
                f"state_dict for {name}: device state {key!r} is {got}, "
                f"this layer's device {device.describe()} keeps {want}"
            )
    return keys


def rename_flat_keys(state_dict: dict[str, Any], prefix: str, layer: nn.Module) -> None:
    """Rename, in place, the keys of a checkpoint saved before the stage modules
    (``fc1.adc_range`` → ``fc1.adc.full_scale``, ``fc1.dev_g`` → ``fc1.crossbar.dev_g``, ...).
    Keys of a stage the layer does not have (an ideal converter) held unused zeros: dropped."""
    for key in [k for k in state_dict if k.startswith(prefix) and "." not in k[len(prefix) :]]:
        name = key[len(prefix) :]
        new = _OLD_KEYS.get(name) or ("crossbar." + name if name.startswith("dev_") else None)
        if new is None:
            continue
        value = state_dict.pop(key)
        if not isinstance(layer._modules[new.partition(".")[0]], IdentityConverter):
            state_dict[prefix + new] = value
