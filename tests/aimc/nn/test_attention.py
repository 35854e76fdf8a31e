"""AnalogMultiheadAttention and transformers: torch's numerics when ideal, tiles really read."""

from __future__ import annotations

import io
import itertools
import warnings

import pytest
import torch
from torch import nn

import aimc
from aimc.nn import AnalogLinear, AnalogMultiheadAttention

IDEAL = aimc.AnalogConfig.ideal()
COARSE = aimc.AnalogConfig(device="ideal", dac=aimc.DACConfig(bits=2), adc=aimc.ADCConfig(bits=2))


def _inputs(batch_first: bool, kdim: int | None, self_attn: bool):
    n, tgt, src, e = 3, 5, 4, 8
    q = torch.randn(n, tgt, e) if batch_first else torch.randn(tgt, n, e)
    if self_attn:
        return (q, q, q), tgt
    kv = torch.randn(n, src, kdim or e) if batch_first else torch.randn(src, n, kdim or e)
    return (q, kv, kv.clone()), src


# (batch_first, kdim/vdim, add_bias_kv, add_zero_attn, self-attention)
_OPTIONS = [
    (False, None, False, False, True),
    (True, None, True, True, True),
    (True, None, False, False, False),
    (False, None, True, False, False),
    (True, 6, False, True, False),
    (False, 6, True, True, False),
]


@pytest.mark.parametrize("batch_first,kdim,add_bias_kv,add_zero_attn,self_attn", _OPTIONS)
def test_ideal_equals_torch_over_options(batch_first, kdim, add_bias_kv, add_zero_attn, self_attn):
    torch.manual_seed(0)
    digital = nn.MultiheadAttention(
        8,
        2,
        kdim=kdim,
        vdim=kdim,
        add_bias_kv=add_bias_kv,
        add_zero_attn=add_zero_attn,
        batch_first=batch_first,
    ).eval()
    analog = AnalogMultiheadAttention.from_digital(digital, IDEAL).eval()
    args, s = _inputs(batch_first, kdim, self_attn)
    kpm = torch.rand(3, s) > 0.7
    kpm[:, 0] = False
    masks = [
        {},
        {"attn_mask": torch.randn(5, s)},
        {"attn_mask": torch.rand(5, s) > 0.8, "key_padding_mask": kpm},
        {"attn_mask": torch.randn(3 * 2, 5, s), "key_padding_mask": torch.randn(3, s)},
    ]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: mixed bool/float masks are deprecated
        for mask, (need_weights, average) in itertools.product(
            masks, [(True, True), (True, False), (False, True)]
        ):
            kw = dict(need_weights=need_weights, average_attn_weights=average, **mask)
            torch.testing.assert_close(analog(*args, **kw), digital(*args, **kw))


def test_unbatched_and_causal_equal_torch():
    torch.manual_seed(0)
    digital = nn.MultiheadAttention(8, 2).eval()
    analog = AnalogMultiheadAttention.from_digital(digital, IDEAL).eval()
    x = torch.randn(5, 8)
    torch.testing.assert_close(analog(x, x, x), digital(x, x, x))
    mask = nn.Transformer.generate_square_subsequent_mask(5)
    x = torch.randn(5, 2, 8)
    for need_weights in (True, False):
        kw = dict(attn_mask=mask, is_causal=True, need_weights=need_weights)
        torch.testing.assert_close(analog(x, x, x, **kw), digital(x, x, x, **kw))
    with pytest.raises(RuntimeError, match="is_causal needs attn_mask"):
        analog(x, x, x, is_causal=True)


def test_projections_are_tiles_sharing_torch_parameters():
    packed = AnalogMultiheadAttention(8, 2, config=IDEAL)
    assert isinstance(packed, nn.MultiheadAttention)
    assert [n for n, _ in packed.tile_layers()] == ["in_proj", "out_proj"]
    assert packed.in_proj.weight is packed.in_proj_weight
    separate = AnalogMultiheadAttention(8, 2, kdim=4, vdim=6, config=IDEAL)
    assert [n for n, _ in separate.tile_layers()] == ["q_proj", "k_proj", "v_proj", "out_proj"]
    assert separate.k_proj.weight is separate.k_proj_weight
    assert separate.v_proj.in_features == 6


def test_coarse_converters_change_the_output():
    torch.manual_seed(0)
    digital = nn.MultiheadAttention(8, 2).eval()
    analog = AnalogMultiheadAttention.from_digital(digital, COARSE).eval()
    x = torch.randn(5, 3, 8)
    with torch.no_grad():
        diff = (analog(x, x, x)[0] - digital(x, x, x)[0]).abs().max()
    assert diff > 0.05


def test_cross_attention_reads_the_packed_projection_once_per_distinct_input():
    analog = AnalogMultiheadAttention(8, 2, config=COARSE).eval()
    x, mem = torch.randn(5, 2, 8), torch.randn(4, 2, 8)
    analog(x, mem, mem.clone())  # the first forward also calibrates the converters
    calls = []
    analog.in_proj.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    analog(x, x, x)
    assert len(calls) == 1
    analog(x, mem, mem)
    assert len(calls) == 3
    analog(x, mem, mem.clone())
    assert len(calls) == 6


def test_training_forward_is_torchs_and_hardware_aware_training_reaches_weights():
    torch.manual_seed(0)
    digital = nn.MultiheadAttention(8, 2, dropout=0.3)
    analog = AnalogMultiheadAttention.from_digital(digital, aimc.AnalogConfig()).train()
    x = torch.randn(5, 3, 8)
    torch.manual_seed(1)
    ref = digital(x, x, x)
    torch.manual_seed(1)
    torch.testing.assert_close(analog(x, x, x), ref, rtol=0, atol=0)
    hw = aimc.AnalogConfig(training=aimc.TrainingConfig(hardware_aware=True))
    analog = AnalogMultiheadAttention.from_digital(digital, hw).train()
    analog(x, x, x)[0].sum().backward()
    assert float(analog.in_proj_weight.grad.abs().sum()) > 0
    assert float(analog.out_proj.weight.grad.abs().sum()) > 0


def test_state_dict_round_trip_and_digital_state_dict_loads():
    torch.manual_seed(0)
    digital = nn.MultiheadAttention(8, 2, add_bias_kv=True)
    cfg = aimc.AnalogConfig(  # deterministic reads: the output must round-trip exactly
        device="ideal", tile=aimc.TileConfig(16, 16), adc=aimc.ADCConfig(bits=4), seed=2
    )
    analog = AnalogMultiheadAttention.from_digital(digital, cfg).eval()
    analog.drift_to(3600.0)
    x = torch.randn(5, 3, 8)
    y = analog(x, x, x)[0]
    buf = io.BytesIO()
    torch.save(analog.state_dict(), buf)
    buf.seek(0)
    fresh = AnalogMultiheadAttention(8, 2, add_bias_kv=True, config=cfg).eval()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    for key, value in analog.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    torch.testing.assert_close(fresh(x, x, x)[0], y, rtol=0, atol=0)
    other = AnalogMultiheadAttention(8, 2, add_bias_kv=True, config=IDEAL).eval()
    missing, unexpected = other.load_state_dict(digital.state_dict(), strict=False)
    assert not unexpected
    assert all(k.rsplit(".", 1)[-1] not in ("weight", "bias") for k in missing)
    torch.testing.assert_close(other(x, x, x), digital.eval()(x, x, x))
    back = analog.to_digital()
    assert type(back) is nn.MultiheadAttention
    torch.testing.assert_close(back.eval()(x, x, x), digital(x, x, x), rtol=0, atol=0)


def _encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2).eval()


@pytest.mark.parametrize("padding", [False, True])
def test_encoder_runs_its_analog_path_in_eval_under_no_grad(padding):
    enc = _encoder()
    x = torch.randn(3, 6, 16)
    kw, keep = {}, torch.ones(3, 6, dtype=torch.bool)
    if padding:  # torch's encoder would pack the batch into nested tensors on its fast path
        kpm = torch.zeros(3, 6, dtype=torch.bool)
        kpm[1, 4:] = True
        kw, keep = {"src_key_padding_mask": kpm}, ~kpm
    ideal = aimc.convert_to_analog(enc, IDEAL)
    coarse = aimc.convert_to_analog(enc, COARSE)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's nested-tensor prototype warning
        ref = enc(x, **kw)
        torch.testing.assert_close(ideal(x, **kw)[keep], ref[keep])
        assert (coarse(x, **kw) - ref)[keep].abs().max() > 0.1
    layers = [n for n, _ in aimc.analog_layers(coarse)]
    assert "layers.1.self_attn.in_proj" in layers and "layers.1.linear2" in layers
    assert isinstance(coarse.layers[0].self_attn, AnalogMultiheadAttention)


def test_excluded_attention_keeps_out_proj_digital_and_linears_still_run_analog():
    enc = _encoder()
    analog = aimc.convert_to_analog(enc, COARSE, exclude=["*.self_attn"])
    attn = analog.layers[0].self_attn
    assert type(attn) is nn.MultiheadAttention and not isinstance(attn.out_proj, AnalogLinear)
    assert not any("self_attn" in n for n, _ in aimc.analog_layers(analog))
    x = torch.randn(3, 6, 16)
    with torch.no_grad():
        assert (analog(x) - enc(x)).abs().max() > 0.1  # linear1/linear2 read their tiles


def test_decoder_and_full_transformer_equal_torch_when_ideal():
    torch.manual_seed(0)
    model = nn.Transformer(16, 2, 1, 1, dim_feedforward=32, dropout=0.0, batch_first=True).eval()
    src, tgt = torch.randn(2, 6, 16), torch.randn(2, 4, 16)
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    analog = aimc.convert_to_analog(model, IDEAL)
    with torch.no_grad():
        torch.testing.assert_close(
            analog(src, tgt, tgt_mask=mask, tgt_is_causal=True),
            model(src, tgt, tgt_mask=mask, tgt_is_causal=True),
        )
    names = [n for n, _ in aimc.analog_layers(analog)]
    assert "decoder.layers.0.multihead_attn.in_proj" in names


def test_cost_report_prices_projections_as_mvms_and_attention_products_as_digital_macs():
    enc = _encoder()
    analog = aimc.convert_to_analog(enc, aimc.AnalogConfig())
    x = torch.randn(1, 6, 16)
    report = aimc.estimate_cost(analog, x, technology="isaac")
    rows = {layer.name: layer for layer in report.layers}
    proj = rows["layers.0.self_attn.in_proj"]
    assert proj.kind == "analog" and proj.counts.mvms == 6 and proj.counts.macs == 6 * 16 * 48
    assert rows["layers.1.self_attn.out_proj"].counts.mvms == 6
    sdpa = rows["layers.0.self_attn:scaled_dot_product_attention"]
    heads, tokens, head_dim = 2, 6, 8  # Q K^T and A V: 2 heads x 6 x 6 scores x 8 each
    assert sdpa.kind == "digital" and sdpa.counts.macs == heads * tokens * tokens * 2 * head_dim
    assert sdpa.counts.activations == heads * tokens * tokens  # the softmax
    assert sdpa.energy_j > 0
    # no side effect: the estimate neither calibrated nor programmed anything
    assert float(analog.layers[0].self_attn.in_proj.dac.range) == 0.0


def test_training_reads_of_the_packed_projection_share_one_noise_draw(monkeypatch):
    """Query, key and value through ``in_proj`` are three reads of one array: one draw."""
    tc = aimc.TrainingConfig(hardware_aware=True, weight_noise="gaussian", weight_noise_std=0.05)
    attn = AnalogMultiheadAttention(8, 2, config=aimc.AnalogConfig(training=tc)).train()
    reads = []
    train_read = type(attn.in_proj.crossbar).train_read

    def recording(self, matrix, drift_gain=None):
        out = train_read(self, matrix, drift_gain)
        if self is attn.in_proj.crossbar:
            reads.append(out[0].detach().clone())
        return out

    monkeypatch.setattr(type(attn.in_proj.crossbar), "train_read", recording)
    (q, k, v), _ = _inputs(False, None, self_attn=False)
    attn(q, k, v)[0].sum().backward()
    assert len(reads) == 3 and all(torch.equal(w, reads[0]) for w in reads)
    attn(q, k, v)
    assert not torch.equal(reads[3], reads[0])
    assert attn.in_proj_weight.grad.abs().sum() > 0
