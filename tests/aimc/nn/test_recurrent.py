"""Analog LSTM/GRU/RNN layers and cells: torch's numerics when ideal, tiles really read."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import aimc
from aimc.nn import (
    AnalogGRU,
    AnalogGRUCell,
    AnalogLinear,
    AnalogLSTM,
    AnalogLSTMCell,
    AnalogRNN,
    AnalogRNNCell,
)
from tests.train_reads import record_train_reads

IDEAL = aimc.AnalogConfig.ideal()
COARSE = aimc.AnalogConfig(device="ideal", dac=aimc.DACConfig(bits=2), adc=aimc.ADCConfig(bits=2))
_ANALOG = {nn.LSTM: AnalogLSTM, nn.GRU: AnalogGRU, nn.RNN: AnalogRNN}

# (type, num_layers, bidirectional, batch_first, bias, extra torch kwargs)
_OPTIONS = [
    (nn.LSTM, 1, False, False, True, {}),
    (nn.LSTM, 2, True, True, False, {"proj_size": 3}),
    (nn.LSTM, 2, True, False, True, {}),
    (nn.GRU, 2, True, True, True, {}),
    (nn.GRU, 1, False, False, False, {}),
    (nn.RNN, 2, False, True, True, {"nonlinearity": "relu"}),
    (nn.RNN, 1, True, False, True, {}),
]


def _hx(cls, layers: int, directions: int, batch: int, out: int, hidden: int):
    h0 = torch.randn(directions * layers, batch, out)
    return (h0, torch.randn(directions * layers, batch, hidden)) if cls is nn.LSTM else h0


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
@pytest.mark.parametrize("cls,layers,bidirectional,batch_first,bias,kw", _OPTIONS)
def test_ideal_equals_torch_over_options(cls, layers, bidirectional, batch_first, bias, kw):
    torch.manual_seed(0)
    opts = dict(bias=bias, batch_first=batch_first, bidirectional=bidirectional, **kw)
    digital = cls(4, 6, layers, **opts)
    analog = _ANALOG[cls].from_digital(digital.eval(), IDEAL).eval()
    x = torch.randn(3, 5, 4) if batch_first else torch.randn(5, 3, 4)
    hx = _hx(cls, layers, 2 if bidirectional else 1, 3, kw.get("proj_size") or 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), digital(x))
        torch.testing.assert_close(analog(x, hx), digital(x, hx))
        x1 = x[0]  # unbatched: (L, H_in) and 2-d states
        h1 = tuple(h[:, 0] for h in hx) if cls is nn.LSTM else hx[:, 0]
        torch.testing.assert_close(analog(x1, h1), digital(x1, h1))
        packed = pack_padded_sequence(
            x, torch.tensor([5, 2, 4]), batch_first=batch_first, enforce_sorted=False
        )
        (out_a, h_a), (out_d, h_d) = analog(packed, hx), digital(packed, hx)
        assert isinstance(out_a, type(out_d))
        torch.testing.assert_close(out_a.data, out_d.data)
        torch.testing.assert_close(h_a, h_d)


@pytest.mark.parametrize(
    "cls,analog_cls,kw",
    [
        (nn.LSTMCell, AnalogLSTMCell, {}),
        (nn.GRUCell, AnalogGRUCell, {"bias": False}),
        (nn.RNNCell, AnalogRNNCell, {"nonlinearity": "relu"}),
    ],
)
def test_cells_equal_torch(cls, analog_cls, kw):
    torch.manual_seed(0)
    digital = cls(4, 6, **kw)
    analog = analog_cls.from_digital(digital, IDEAL).eval()
    x, h = torch.randn(3, 4), torch.randn(3, 6)
    hx = (h, torch.randn(3, 6)) if cls is nn.LSTMCell else h
    with torch.no_grad():
        torch.testing.assert_close(analog(x), digital(x))
        torch.testing.assert_close(analog(x, hx), digital(x, hx))
        torch.testing.assert_close(analog(x[0]), digital(x[0]))
    assert [n for n, _ in analog.tile_layers()] == ["ih", "hh"]
    assert analog.hh.weight is analog.weight_hh


def test_two_tile_sets_per_layer_and_direction_sharing_torch_parameters():
    lstm = AnalogLSTM(4, 6, 2, bidirectional=True, proj_size=3, config=IDEAL)
    names = [n for n, _ in lstm.tile_layers()]
    assert names[:3] == ["ih_l0", "hh_l0", "hr_l0"] and "hh_l1_reverse" in names
    assert len(names) == 2 * 2 * 3
    assert lstm.ih_l1_reverse.weight is lstm.weight_ih_l1_reverse
    assert lstm.hh_l0.bias is lstm.bias_hh_l0


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_coarse_converters_change_the_output(cls):
    torch.manual_seed(0)
    digital = cls(4, 6).eval()
    analog = _ANALOG[cls].from_digital(digital, COARSE).eval()
    x = torch.randn(5, 3, 4)
    with torch.no_grad():
        assert (analog(x)[0] - digital(x)[0]).abs().max() > 0.05


def test_hidden_projection_runs_every_step_input_projection_once():
    cfg = aimc.AnalogConfig(device="ideal", dac=aimc.DACConfig(bits=4))
    lstm = AnalogLSTM(4, 6, config=cfg).eval()
    x = torch.randn(7, 3, 4)
    lstm(x)  # the first forward also calibrates the converters (two more passes)
    rows = {"ih": [], "hh": []}
    lstm.ih_l0.register_forward_hook(lambda m, i, o: rows["ih"].append(i[0].shape[0]))
    lstm.hh_l0.register_forward_hook(lambda m, i, o: rows["hh"].append(i[0].shape[0]))
    lstm(x)
    assert rows == {"ih": [21], "hh": [3] * 6}  # no read of the all-zero first state
    # ... so the all-zero state does not set the hidden tile layer's DAC range
    assert float(lstm.hh_l0.dac.range) > 0.01


def test_training_forward_is_torchs_and_hardware_aware_training_reaches_weights():
    torch.manual_seed(0)
    digital = nn.LSTM(4, 6, 2, dropout=0.5)
    analog = AnalogLSTM.from_digital(digital, aimc.AnalogConfig()).train()
    x = torch.randn(5, 3, 4)
    torch.manual_seed(1)
    ref = digital(x)
    torch.manual_seed(1)
    torch.testing.assert_close(analog(x), ref, rtol=0, atol=0)
    hw = aimc.AnalogConfig(training=aimc.TrainingConfig(hardware_aware=True))
    analog = AnalogLSTM.from_digital(digital, hw).train()
    analog(x)[0].sum().backward()
    for name in ("weight_ih_l0", "weight_hh_l1"):
        assert float(getattr(analog, name).grad.abs().sum()) > 0, name


def test_state_dict_round_trip_and_digital_state_dict_loads():
    torch.manual_seed(0)
    digital = nn.GRU(4, 6, bidirectional=True)
    cfg = aimc.AnalogConfig(  # deterministic reads: the output must round-trip exactly
        device="ideal", tile=aimc.TileConfig(16, 16), adc=aimc.ADCConfig(bits=4), seed=2
    )
    analog = AnalogGRU.from_digital(digital, cfg).eval()
    analog.drift_to(86400.0)
    x = torch.randn(5, 3, 4)
    y = analog(x)[0]
    buf = io.BytesIO()
    torch.save(analog.state_dict(), buf)
    buf.seek(0)
    fresh = AnalogGRU(4, 6, bidirectional=True, config=cfg).eval()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    for key, value in analog.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    torch.testing.assert_close(fresh(x)[0], y, rtol=0, atol=0)
    other = AnalogGRU(4, 6, bidirectional=True, config=IDEAL).eval()
    missing, unexpected = other.load_state_dict(digital.state_dict(), strict=False)
    assert not unexpected
    assert all(k.rsplit(".", 1)[-1] not in ("weight", "bias") for k in missing)
    torch.testing.assert_close(other(x), digital.eval()(x))
    back = analog.to_digital()
    assert type(back) is nn.GRU
    torch.testing.assert_close(back.eval()(x), digital(x), rtol=0, atol=0)


def test_conversion_maps_recurrent_modules_and_names_their_tiles():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(4, 6, batch_first=True)
            self.cell = nn.GRUCell(6, 6)
            self.head = nn.Linear(6, 2)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(self.cell(out[:, -1]))

    torch.manual_seed(0)
    net = Net().eval()
    analog = aimc.convert_to_analog(net, IDEAL)
    names = [n for n, _ in aimc.analog_layers(analog)]
    assert names == ["rnn.ih_l0", "rnn.hh_l0", "cell.ih", "cell.hh", "head"]
    assert analog.rnn.hh_l0.layer_name == "rnn.hh_l0"
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), net(x))


def test_bad_inputs_name_the_layer():
    lstm = AnalogLSTM(4, 6, config=IDEAL).eval()
    with pytest.raises(ValueError, match="input_size=4"):
        lstm(torch.randn(5, 3, 7))
    with pytest.raises(ValueError, match=r"initial state must have shape \(1, 3, 6\)"):
        lstm(torch.randn(5, 3, 4), (torch.zeros(1, 2, 6), torch.zeros(1, 2, 6)))
    with pytest.raises(TypeError, match=r"tuple \(h_0, c_0\)"):
        lstm(torch.randn(5, 3, 4), torch.zeros(1, 3, 6))


def test_first_forward_calibrates_over_every_time_step_as_calibrate_does():
    torch.manual_seed(0)
    digital = nn.LSTM(4, 6, 2)
    cfg = aimc.AnalogConfig(device="ideal", dac=aimc.DACConfig(bits=6), adc=aimc.ADCConfig(bits=6))
    x = torch.randn(9, 3, 4)
    auto = AnalogLSTM.from_digital(digital, cfg).eval()
    auto(x)
    model = nn.Sequential()
    model.add_module("lstm", AnalogLSTM.from_digital(digital, cfg))
    aimc.calibrate(model, [x])
    for (name, a), (_, b) in zip(auto.tile_layers(), model.lstm.tile_layers()):
        assert float(a.dac.range) == float(b.dac.range) > 0, name
        torch.testing.assert_close(a.adc.full_scale, b.adc.full_scale, rtol=0, atol=0)
    with torch.no_grad():  # 6-bit converters on ranges from the whole sequence: close to torch
        assert (auto(x)[0] - digital(x)[0]).abs().max() < 0.1


def test_cost_report_counts_every_time_step():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("rnn", nn.GRU(4, 6, batch_first=True))
    analog = aimc.convert_to_analog(model, aimc.AnalogConfig())
    report = aimc.estimate_cost(analog, torch.randn(2, 7, 4), technology="isaac")
    rows = {layer.name: layer for layer in report.layers}
    assert rows["rnn.ih_l0"].counts.mvms == 2 * 7  # every step's input, one batch of MVMs
    assert rows["rnn.hh_l0"].counts.mvms == 2 * 6  # every step after the all-zero state
    assert rows["rnn:sigmoid"].kind == "digital" and rows["rnn:sigmoid"].counts.activations > 0
    assert float(analog.rnn.hh_l0.dac.range) == 0.0  # the estimate has no side effect


def test_conversion_without_programming_leaves_the_tiles_unprogrammed():
    model = nn.Sequential(nn.LSTM(4, 6), nn.MultiheadAttention(6, 2))
    analog = aimc.convert_to_analog(model, aimc.AnalogConfig(), program=False)
    assert not any(layer.programmed for _, layer in aimc.analog_layers(analog))
    programmed = aimc.convert_to_analog(model, aimc.AnalogConfig())
    assert all(layer.programmed for _, layer in aimc.analog_layers(programmed))


_SMALL = aimc.TileConfig(rows=16, cols=32)  # the layers' size: no padded devices to draw
_STEP_CONFIGS = {
    "default on small tiles": aimc.AnalogConfig(tile=_SMALL),
    "read and ADC noise per read": aimc.AnalogConfig(
        tile=_SMALL, read_noise="forward", adc=aimc.ADCConfig(bits=6, noise=0.02)
    ),
    "offset, partial rows, bit-serial per-sample DAC, column compensation": aimc.AnalogConfig(
        tile=aimc.TileConfig(rows=16, cols=32, parallel_rows=4),
        dac=aimc.DACConfig(bits=4, range_mode="dynamic", bit_serial=True),
        mapping=aimc.MappingConfig(encoding="offset"),
        drift_compensation_mode="column",
    ),
}


def _count_tile_forwards(monkeypatch) -> dict[nn.Module, int]:
    counts: dict[nn.Module, int] = {}
    forward = AnalogLinear.forward

    def counting(self, x):
        counts[self] = counts.get(self, 0) + 1
        return forward(self, x)

    monkeypatch.setattr(AnalogLinear, "forward", counting)
    return counts


@pytest.mark.parametrize("cfg", list(_STEP_CONFIGS.values()), ids=list(_STEP_CONFIGS))
@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_time_loop_reads_equal_plain_tile_calls(cls, cfg, monkeypatch):
    """After its first read of a forward, the time loop reads W_hh (and W_hr) without redoing
    the per-forward work; outputs, states and the noise streams equal plain calls exactly."""
    torch.manual_seed(0)
    kw = {"proj_size": 3} if cls is nn.LSTM else {}
    digital = cls(5, 7, bidirectional=True, **kw).eval()
    x, lengths = torch.randn(6, 3, 5), torch.tensor([6, 2, 4])
    models = []
    for _ in range(2):
        model = nn.Sequential()
        model.add_module("rnn", aimc.convert_to_analog(digital, cfg))
        aimc.calibrate(model, [x])
        aimc.drift(model, 3600.0)
        models.append(model.eval())
    fast, plain = models
    for _, layer in aimc.analog_layers(plain):  # a hook: every read is a plain call
        layer.register_forward_hook(lambda module, args, out: None)
    counts = _count_tile_forwards(monkeypatch)
    outs = []
    with torch.no_grad():
        for model in (fast, plain):
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            runs = [model(x), model(x), model[0](packed)]
            outs.append([torch.cat([o.flatten() for o in _flat(r)]) for r in runs])
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    for (name, a), (_, b) in zip(aimc.analog_layers(fast), aimc.analog_layers(plain)):
        assert a.crossbar.state_dict()["draws"] == b.crossbar.state_dict()["draws"], name
    # one plain call per forward (the first read), then reads without the per-forward work
    assert counts[fast.rnn.hh_l0_reverse] == 3
    assert counts[plain.rnn.hh_l0_reverse] == 3 * 5


def _flat(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if hasattr(value, "data") and isinstance(value.data, torch.Tensor):
        return [value.data]
    return [t for v in value for t in _flat(v)]


@pytest.mark.filterwarnings("ignore:.*backward through an eval forward")
def test_time_loop_with_gradients_makes_plain_calls(monkeypatch):
    torch.manual_seed(0)
    lstm = AnalogLSTM(4, 6, config=aimc.AnalogConfig()).eval()
    x = torch.randn(5, 3, 4)
    aimc.calibrate(lstm, [x])
    counts = _count_tile_forwards(monkeypatch)
    xg = x.clone().requires_grad_()
    lstm(xg)[0].sum().backward()  # eval with autograd on: the input gets its gradient
    assert xg.grad is not None and counts[lstm.hh_l0] == 4
    with torch.no_grad():
        lstm(x)
    assert counts[lstm.hh_l0] == 4 + 1


_HWA = aimc.AnalogConfig(
    training=aimc.TrainingConfig(
        hardware_aware=True, weight_noise="gaussian", weight_noise_std=0.05
    ),
    seed=3,
)


@pytest.mark.parametrize("noise", ["gaussian", "device"])
def test_training_noise_is_one_draw_per_forward_held_over_the_sequence(noise, monkeypatch):
    tc = aimc.TrainingConfig(hardware_aware=True, weight_noise=noise, weight_noise_std=0.05)
    cfg = aimc.AnalogConfig(training=tc, seed=3)
    torch.manual_seed(0)
    digital = nn.LSTM(4, 6)
    x = torch.randn(5, 2, 4)
    reads = record_train_reads(monkeypatch)
    runs = []
    for _ in range(2):  # two models from one seed
        lstm = AnalogLSTM.from_digital(digital, cfg).train()
        hh = lstm.hh_l0.crossbar
        per_forward = []
        for _ in range(2):
            reads.clear()
            out, _ = lstm(x)
            out.sum().backward()  # gradients flow through the held draw
            steps = [w for crossbar, w in reads if crossbar is hh]
            assert len(steps) == 4  # every step after the all-zero state
            for w in steps[1:]:
                assert torch.equal(w, steps[0])  # one draw over the sequence
            per_forward.append(steps[0])
        assert not torch.equal(per_forward[0], per_forward[1])  # a new forward draws anew
        assert lstm.weight_hh_l0.grad.abs().sum() > 0
        runs.append(per_forward)
    for a, b in zip(*runs):  # seeded: the same draws again
        assert torch.equal(a, b)


def test_held_noise_nests_and_follows_changed_weights(monkeypatch):
    cell = AnalogGRUCell(4, 6, config=_HWA).train()
    x, h = torch.randn(3, 2, 4), torch.zeros(2, 6)
    reads = record_train_reads(monkeypatch)
    hh = cell.hh.crossbar

    def hh_reads():
        return [w for crossbar, w in reads if crossbar is hh]

    for x_t in x:  # a plain loop over a cell: a draw per call (none for the zero state)
        h = cell(x_t, h)
    free = hh_reads()
    assert len(free) == 2 and not torch.equal(free[0], free[1])
    reads.clear()
    draws = hh._train_draws
    with cell.hold_noise():
        for x_t in x:
            with cell.hold_noise():  # a block inside a block keeps the outer draw
                h = cell(x_t, h)
        held = hh_reads()
        assert len(held) == 3 and all(torch.equal(w, held[0]) for w in held)
        assert hh._train_draws == draws + 1
        with torch.no_grad():
            cell.weight_hh[0, 0] += 1.0  # changed weights: a new draw
        cell(x[0], h)
        assert hh._train_draws == draws + 2
    cell(x[0], h)  # after the block: a draw per call again
    assert hh._train_draws == draws + 3


def test_a_cell_loop_from_zeros_ranges_hh_on_the_first_nonzero_state():
    torch.manual_seed(0)
    cell = AnalogLSTMCell(4, 6, config=aimc.AnalogConfig()).eval()
    x = torch.randn(3, 2, 4)
    h = (torch.zeros(2, 6), torch.zeros(2, 6))
    with torch.no_grad():
        for t, x_t in enumerate(x):  # the first step's all-zero state: no read, no range
            h = cell(x_t, h)
            assert (float(cell.hh.dac.range) > 0) == (t > 0)
    assert float(cell.hh.dac.range) > 0


@pytest.mark.filterwarnings("ignore:.*the weights changed since aimc.calibrate")
def test_a_step_reader_notices_what_changed_between_its_reads():
    torch.manual_seed(0)
    layer = AnalogLinear(6, 4, config=aimc.AnalogConfig()).eval()
    twin = AnalogLinear(6, 4, config=aimc.AnalogConfig()).eval()
    twin.load_state_dict(layer.state_dict())
    h = torch.randn(3, 6)
    aimc.calibrate(layer, [h])
    aimc.calibrate(twin, [h])
    read = layer.step_reader()
    changes = [
        lambda m: None,
        lambda m: m.weight.mul_(-0.5),  # an in-place edit: reprogrammed by the plain call
        lambda m: m.drift_to(86400.0),  # a new read time
        lambda m: m.dac.range.mul_(2.0),  # a new converter range
        lambda m: m.program(seed=5),  # a new device draw
        lambda m: None,
    ]
    with torch.no_grad():
        for change in changes:
            change(layer)
            change(twin)
            assert torch.equal(read(h), twin(h))
