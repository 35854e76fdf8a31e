"""The pure tile functions: layouts, scales, slicing and the batched tile matmul."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from aimc import functional as AF


@given(k=st.integers(1, 40), n=st.integers(1, 9), rows=st.integers(1, 16), gr=st.integers(1, 3))
def test_tile_layout_round_trip_and_matmul(k, n, rows, gr):
    torch.manual_seed(k * 100 + n)
    wm = torch.randn(gr, k, n, dtype=torch.float64)
    wt = AF.to_tile_layout(wm, rows)
    assert wt.shape == (gr, -(-k // rows), rows, n)
    torch.testing.assert_close(AF.from_tile_layout(wt, k), wm)
    x = torch.randn(5, gr, k, dtype=torch.float64)
    p = AF.tile_matmul(x, wt.unsqueeze(0))  # [1, Gr, n_rt, M, N]
    torch.testing.assert_close(p.sum(2)[0], torch.einsum("mgk,gkn->gmn", x, wm))


@pytest.mark.parametrize("mode", ["layer", "tile", "column"])
def test_weight_scales_bound_every_group(mode):
    torch.manual_seed(0)
    wt = torch.randn(2, 3, 8, 10)
    s = AF.weight_scales(wt, mode, weights_per_col_tile=4)
    assert s.shape == (2, 3, 1, 10)
    assert bool(((wt / s).abs() <= 1.0 + 1e-6).all())
    if mode == "layer":
        assert torch.allclose(s, wt.abs().max().expand_as(s))
    if mode == "column":
        torch.testing.assert_close(s, wt.abs().amax(2, keepdim=True))


@given(
    encoding=st.sampled_from(["differential", "offset"]),
    wbits=st.integers(4, 16),
    slices=st.integers(1, 4),
)
def test_slices_recombine_to_the_quantized_weight(encoding, wbits, slices):
    mag = wbits - 1 if encoding == "differential" else wbits
    if slices > mag:
        return
    torch.manual_seed(wbits)
    wn = torch.rand(50, dtype=torch.float64) * 2 - 1
    v, coef = AF.slice_weights(wn, encoding, wbits, slices)
    assert bool(((v >= 0) & (v <= 1)).all())
    value = (v * coef.view(-1, 1)).sum(0)
    q_max = 2**mag - 1
    target = wn.abs() if encoding == "differential" else (wn + 1) / 2
    # the recombined value is the weight rounded to one of q_max + 1 levels: error <= 1/(2 q_max)
    assert bool(((value - target).abs() <= 0.5 / q_max + 1e-12).all())


def test_randn_chunked_is_seeded_and_independent_of_threads(normal_sampler):
    def draw():
        gens = [torch.Generator().manual_seed(i) for i in range(4)]
        return AF.randn_chunked((300, 300), gens).numpy()  # plain pickling, no shared memory

    a = draw()
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        b = draw()
    finally:
        torch.set_num_threads(n)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert abs(float(a.mean())) < 5 / 300 and abs(float(a.std()) - 1) < 5 / (2 * 90000) ** 0.5


def test_randn_chunked_works_in_a_forked_child(normal_sampler):
    import multiprocessing as mp

    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    AF.randn_chunked((300, 300), gens)  # the parent's pool exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        child = pool.apply_async(_draw_in_child).get(timeout=30)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    expected = AF.randn_chunked((300, 300), gens)
    torch.testing.assert_close(torch.from_numpy(child), expected, rtol=0, atol=0)


def _draw_in_child():
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    return AF.randn_chunked((300, 300), gens).numpy()  # plain pickling, no shared memory


@given(
    s=st.integers(1, 3),
    gr=st.integers(1, 2),
    n_rt=st.integers(1, 3),
    rows=st.integers(1, 5),
    m=st.integers(1, 4),
    n=st.integers(1, 5),
)
def test_tile_matmul_accumulates_into_add(s, gr, n_rt, rows, m, n):
    torch.manual_seed(s * 1000 + gr * 100 + n_rt * 10 + rows)
    x = torch.randn(m, gr, n_rt * rows - (rows > 1), dtype=torch.float64)  # a partial last tile
    w = torch.randn(s, gr, n_rt, rows, n, dtype=torch.float64)
    add = torch.randn(s, gr, n_rt, m, n, dtype=torch.float64)
    expected = add + 0.25 * AF.tile_matmul(x, w)
    out = AF.tile_matmul(x, w, add=add, alpha=0.25)
    torch.testing.assert_close(out, expected)
    assert out.data_ptr() == add.data_ptr()  # in place
