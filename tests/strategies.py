"""Hypothesis strategies shared by the tests (Brevitas ``hyp_helper`` style)."""

from __future__ import annotations

from hypothesis import strategies as st

tile_rows = st.sampled_from([1, 3, 8, 16, 64, 256])
tile_cols = st.sampled_from([2, 4, 8, 32, 256])


@st.composite
def conv2d_args(draw):
    """Hyper-parameters of a small valid Conv2d plus an input size that fits it."""
    groups = draw(st.sampled_from([1, 2, 3]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    h = draw(st.integers(dilation[0] * (kh - 1) + 3, 9))
    w = draw(st.integers(dilation[1] * (kw - 1) + 3, 9))
    bias = draw(st.booleans())
    return dict(
        in_channels=cin,
        out_channels=cout,
        kernel_size=(kh, kw),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
        padding_mode=mode,
    ), (h, w)
