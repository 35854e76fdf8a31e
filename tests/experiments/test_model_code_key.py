"""The digital-model cache key follows the model's source code."""

from __future__ import annotations

import importlib
import sys

import torch
from exp_helpers import compose_config

from experiments.config import build, model_code_hash

SOURCE = """
import torch


class Net(torch.nn.Module):
    def __init__(self, in_shape, num_classes):
        super().__init__()
        self.fc = torch.nn.Linear(int(torch.tensor(in_shape).prod()), num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1)){tail}
"""


def test_editing_the_model_class_changes_the_cache_key(tmp_path, monkeypatch):
    module = tmp_path / "user_net_for_key.py"
    module.write_text(SOURCE.format(tail=""))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_net_for_key", None)
    overrides = ["model._target_=user_net_for_key.Net", "~model.hidden"]
    try:
        first = build(compose_config(overrides)).cache_key
        assert build(compose_config(overrides)).cache_key == first  # stable while unchanged
        module.write_text(SOURCE.format(tail=".relu()"))  # same config, new behaviour
        importlib.reload(sys.modules["user_net_for_key"])
        second = build(compose_config(overrides)).cache_key
    finally:
        sys.modules.pop("user_net_for_key", None)
    assert second != first


def test_the_code_hash_covers_base_classes_in_other_files(tmp_path, monkeypatch):
    (tmp_path / "key_base_mod.py").write_text(
        "import torch\nclass Base(torch.nn.Module):\n    k = 1\n"
    )
    (tmp_path / "key_child_mod.py").write_text(
        "from key_base_mod import Base\nclass Child(Base):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import key_child_mod

        first = model_code_hash(key_child_mod.Child)
        (tmp_path / "key_base_mod.py").write_text(
            "import torch\nclass Base(torch.nn.Module):\n    k = 2\n"
        )
        assert model_code_hash(key_child_mod.Child) != first
    finally:
        sys.modules.pop("key_child_mod", None)
        sys.modules.pop("key_base_mod", None)


def test_the_thread_count_is_part_of_the_cache_key():
    """A parallel reduction's order depends on the thread count, so 1 and 2 threads train
    slightly different models from one seed: they must not share a cached checkpoint."""
    one = build(compose_config(["threads=1"])).cache_key
    assert build(compose_config(["threads=1"])).cache_key == one
    assert build(compose_config(["threads=2"])).cache_key != one
    default = build(compose_config([])).cache_key  # null: torch's current thread count
    assert default == build(compose_config([f"threads={torch.get_num_threads()}"])).cache_key
