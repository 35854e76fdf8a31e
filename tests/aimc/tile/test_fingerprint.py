"""The per-forward weight-edit check: what it is certain to notice, its limit, its exactness."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import aimc
from aimc.tile.fingerprint import BLOCK, STRIDE, edit_fingerprint


def _words(w: torch.Tensor) -> torch.Tensor:
    return w.view(-1).view({2: torch.int16}.get(w.element_size(), torch.int32))


def _swap(b: torch.Tensor, i, j) -> None:
    b[[i, j]] = b[[j, i]]


def _changed(w: torch.Tensor, edit) -> bool:
    e = w.clone()
    edit(_words(e))
    return not torch.equal(edit_fingerprint(w), edit_fingerprint(e))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_every_one_ulp_edit_of_one_word_is_noticed(dtype):
    w = torch.randn(37, 61, generator=torch.Generator().manual_seed(0)).to(dtype)
    n = _words(w).numel()
    for p in range(0, n, 7):
        for step in (1, -1):
            assert _changed(w, lambda b, p=p, step=step: b.__setitem__(p, b[p] + step))


def test_every_transposition_of_unequal_weights_is_noticed():
    # a 64x64 weight: blocks of 1024 words hold 16 rows; all pairs within a block and across
    w = torch.randint(-3, 4, (64, 64), generator=torch.Generator().manual_seed(1)).float()
    flat = w.view(-1)
    gen = torch.Generator().manual_seed(2)
    pairs = torch.randint(0, flat.numel(), (3000, 2), generator=gen).tolist()
    pairs += [(0, BLOCK - 1), (5, 5 + STRIDE), (7, 7 + BLOCK)]
    for i, j in pairs:
        if flat[i] != flat[j]:
            assert _changed(w, lambda b, i=i, j=j: _swap(b, i, j))


def test_every_edit_of_three_words_is_noticed():
    w = torch.randn(48, 80, generator=torch.Generator().manual_seed(3))
    n = w.numel()
    gen = torch.Generator().manual_seed(4)
    for _ in range(500):
        pos = torch.randperm(n, generator=gen)[:3]
        delta = torch.randint(1, 5, (3,), generator=gen, dtype=torch.int32)
        signs = torch.randint(0, 2, (3,), generator=gen, dtype=torch.int32) * 2 - 1
        assert _changed(w, lambda b, pos=pos, d=delta * signs: b.index_add_(0, pos, d))
    # the positions that share a block or a class pairwise: the hardest three-word edits
    d = torch.tensor([1, -1, 1], dtype=torch.int32)
    for p in (0, 100, BLOCK - 2):
        idx = torch.tensor([p, p + 1, p + STRIDE])
        assert _changed(w, lambda b, idx=idx: b.index_add_(0, idx, d))


def test_exchanging_two_rows_of_equal_sums_is_noticed():
    # a binarized 1024-wide layer: every row has 512 of each sign (equal sums), and each
    # exchange of two rows whose distance is prime to 129 is noticed
    gen = torch.Generator().manual_seed(5)
    base = torch.ones(1024)
    base[:512] = -1
    w = torch.stack([base[torch.randperm(1024, generator=gen)] for _ in range(24)])
    for i, k in itertools.combinations(range(24), 2):
        assert _changed(w, lambda b, i=i, k=k: _swap(b.view(24, 1024), i, k))


def test_four_words_that_cancel_in_their_blocks_and_classes_go_unnoticed():
    # the documented limit: +d, -d at p, p + 1 and -d, +d at p + STRIDE, p + STRIDE + 1
    w = torch.randn(8, 1024, generator=torch.Generator().manual_seed(6))
    idx = torch.tensor([10, 11, 10 + STRIDE, 11 + STRIDE])
    d = torch.tensor([1, -1, -1, 1], dtype=torch.int32)
    assert not _changed(w, lambda b: b.index_add_(0, idx, d))


def test_sums_wrap_modulo_two_to_the_32_in_any_thread_count():
    w = torch.randn(300, 1100, generator=torch.Generator().manual_seed(7)) * 1e30  # big words
    b = _words(w).long()
    n = b.numel()
    full = n // BLOCK
    blocks = [b[: full * BLOCK].view(full, BLOCK).sum(1), b[full * BLOCK :].sum().view(1)]
    classes = torch.zeros(STRIDE, dtype=torch.int64).index_add_(0, torch.arange(n) % STRIDE, b)
    want = torch.cat([*blocks, classes])
    want = (want + 2**31) % 2**32 - 2**31  # int64 sums reduced to int32
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            assert torch.equal(edit_fingerprint(w).long(), want)
    finally:
        torch.set_num_threads(threads)


def test_a_layer_keeps_no_copy_of_its_weights_and_reprograms_a_one_ulp_data_edit():
    layer = aimc.convert_to_analog(nn.Linear(256, 128), aimc.AnalogConfig.ideal()).eval()
    x = torch.randn(3, 256)
    layer(x)
    crossbar_tensors = [v for v in vars(layer.crossbar).values() if isinstance(v, torch.Tensor)]
    assert sum(t.numel() for t in crossbar_tensors) < layer.weight.numel() // 16
    before = layer.crossbar.fingerprint.clone()
    layer.weight.data.view(torch.int32)[5, 7] += 1  # one ulp, through .data (no version bump)
    assert not layer.crossbar.holds(layer.weight)
    layer(x)
    assert not torch.equal(layer.crossbar.fingerprint, before)
    assert layer.crossbar.holds(layer.weight)
