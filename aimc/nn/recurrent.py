"""Recurrent layers and cells with their weight matrices on tiles.

``AnalogLSTM``, ``AnalogGRU``, ``AnalogRNN`` and their cells are drop-ins for torch's: same
signatures, parameters (same names and objects), inputs (batched, unbatched, ``batch_first``,
``PackedSequence``, initial states) and outputs. Each layer and direction puts its input-to-hidden
matrix ``W_ih`` and its hidden-to-hidden matrix ``W_hh`` on **two tile sets** (tile layers
``ih_l{k}`` and ``hh_l{k}``, ``_reverse`` for the backward direction; ``hr_l{k}`` for an LSTM's
projection ``W_hr``); gates, nonlinearities and state updates are digital.

Why two tile sets rather than one array holding ``[W_ih W_hh]``:

- the input-to-hidden products of all time steps do not depend on the recurrence, so they run as
  one batch of MVMs before the time loop (one pass over the sequence instead of one per step);
- inputs and hidden states have different ranges (hidden states lie in ``[-1, 1]``, inputs do
  not), so each tile set gets its own DAC range and weight scales;
- a GRU needs ``W_hn h`` apart from ``W_in x`` (the reset gate multiplies it alone).

The price: each step converts the ``gates`` outputs twice (once per tile set) and adds the two
digitally, which the cost report counts. Training forwards are torch's own unless
``config.training.hardware_aware``; eval forwards read the tiles at every time step.

Each weight matrix is one programmed array read at every time step, so a hardware-aware
training forward draws its weight noise once per forward of the layer and keeps it over the
sequence (:meth:`~aimc.nn.composite.AnalogContainer.hold_noise`), as a feed-forward layer gets
one draw per forward; a new forward draws anew. Eval forwards read the programmed devices (read
noise per read, or per drift time, as configured). Inside one eval forward, every step after
the first reads ``W_hh`` without redoing the per-forward work (:class:`~aimc.nn.linear.StepReader`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from aimc.config import AnalogConfig
from aimc.nn.composite import AnalogContainer
from aimc.nn.linear import AnalogLinear

__all__ = [
    "AnalogLSTM",
    "AnalogGRU",
    "AnalogRNN",
    "AnalogLSTMCell",
    "AnalogGRUCell",
    "AnalogRNNCell",
]

State = tuple[Tensor, ...]


# ---------------------------------------------------------------------------------- cell math
Read = Callable[[Tensor], Tensor]  # an AnalogLinear, or its StepReader inside a time loop


def _recur(hh: AnalogLinear, read: Read, h: Tensor, zero: bool) -> Tensor:
    """``W_hh h + b_hh`` read by ``read`` (``hh`` or its step reader); a known all-zero state
    (no ``hx`` given, first step) skips the read: the product is exactly zero, a chip would not
    run it, and an all-zero batch must not set the tile layer's DAC range."""
    if not zero:
        return read(h)
    if hh.bias is not None:
        return hh.bias.expand(h.shape[0], -1)
    return h.new_zeros(h.shape[0], hh.out_features)


def _gates(gi: Tensor, hh: AnalogLinear, read: Read, h: Tensor, zero: bool) -> Tensor:
    """``gi + W_hh h + b_hh``: a new tensor, the tile read's own output added to in place
    where no gradient is recorded."""
    gh = _recur(hh, read, h, zero)
    if zero or torch.is_grad_enabled():
        return gi + gh
    return gh.add_(gi)


def _lstm_step(
    gi: Tensor, state: State, hh: AnalogLinear, read: Read, proj: Optional[Read], zero: bool
) -> State:
    h, c = state
    n = c.shape[-1]
    gates = _gates(gi, hh, read, h, zero)
    # torch's gate order i, f, g, o: one sigmoid for i and f, few passes (a step's gate math
    # is elementwise work on small tensors, where each operation's overhead counts)
    i_f = torch.sigmoid(gates[:, : 2 * n])
    c = torch.addcmul(i_f[:, n:] * c, i_f[:, :n], torch.tanh(gates[:, 2 * n : 3 * n]))
    h = torch.sigmoid(gates[:, 3 * n :]) * torch.tanh(c)
    if proj is not None:
        h = proj(h)
    return h, c


def _gru_step(
    gi: Tensor, state: State, hh: AnalogLinear, read: Read, proj: None, zero: bool
) -> State:
    (h,) = state
    n = h.shape[-1]
    gh = _recur(hh, read, h, zero)
    r_z = torch.sigmoid(gi[:, : 2 * n] + gh[:, : 2 * n])  # reset and update gates at once
    new = torch.tanh(torch.addcmul(gi[:, 2 * n :], r_z[:, :n], gh[:, 2 * n :]))
    return (torch.lerp(new, h, r_z[:, n:]),)  # (1 - z) n + z h


def _rnn_step(act: Callable[[Tensor], Tensor]):
    def step(
        gi: Tensor, state: State, hh: AnalogLinear, read: Read, proj: None, zero: bool
    ) -> State:
        return (act(gi + _recur(hh, read, state[0], zero)),)

    return step


def _activation(nonlinearity: str) -> Callable[[Tensor], Tensor]:
    return torch.tanh if nonlinearity == "tanh" else torch.relu


# ---------------------------------------------------------------------------------- layers
class _AnalogRNNBase(AnalogContainer):
    """Shared time loop of ``AnalogLSTM``/``AnalogGRU``/``AnalogRNN``."""

    _n_states: int = 1

    def _init_recurrent(self, config: Optional[AnalogConfig]) -> None:
        tiles = []
        for layer in range(self.num_layers):
            for sfx in ("", "_reverse")[: 2 if self.bidirectional else 1]:
                k = f"l{layer}{sfx}"
                b_ih = getattr(self, f"bias_ih_{k}") if self.bias else None
                b_hh = getattr(self, f"bias_hh_{k}") if self.bias else None
                tiles.append((f"ih_{k}", getattr(self, f"weight_ih_{k}"), b_ih))
                tiles.append((f"hh_{k}", getattr(self, f"weight_hh_{k}"), b_hh))
                if getattr(self, "proj_size", 0) > 0:
                    tiles.append((f"hr_{k}", getattr(self, f"weight_hr_{k}"), None))
        self._init_tiles(config, tiles)

    def _step(
        self,
        gi: Tensor,
        state: State,
        hh: AnalogLinear,
        read: Read,
        proj: Optional[Read],
        zero: bool,
    ) -> State:
        """One time step: ``W_hh`` on tiles ``hh`` read by ``read``, ``proj`` the projection."""
        raise NotImplementedError

    def _state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def _zero_state(self, batch: int, like: Tensor) -> State:
        n = self.num_layers * (2 if self.bidirectional else 1)
        return tuple(like.new_zeros(n, batch, size) for size in self._state_sizes())

    @staticmethod
    def _ctor_kwargs(module: nn.Module) -> dict[str, Any]:
        kwargs = {
            "input_size": module.input_size,
            "hidden_size": module.hidden_size,
            "num_layers": module.num_layers,
            "bias": module.bias,
            "batch_first": module.batch_first,
            "dropout": module.dropout,
            "bidirectional": module.bidirectional,
        }
        if isinstance(module, nn.LSTM):
            kwargs["proj_size"] = module.proj_size
        if isinstance(module, nn.RNN):
            kwargs["nonlinearity"] = module.nonlinearity
        return kwargs

    def forward(self, input, hx=None):
        if self._runs_digital():
            return self._FLOAT_MODULE.forward(self, input, hx)
        self._auto_calibrate(lambda: self._analog_forward(input, hx))
        with self._training_noise_held():  # each W is one array read at every step: one noise draw
            return self._analog_forward(input, hx)

    def _analog_forward(self, input, hx):
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            steps = [int(b) for b in batch_sizes]
            batch = steps[0]
        else:
            if not isinstance(input, Tensor) or input.dim() not in (2, 3):
                got = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
                raise ValueError(
                    f"{self.layer_name}: input must be (L, N, H_in), (N, L, H_in) with "
                    f"batch_first, unbatched (L, H_in) or a PackedSequence, got {got}"
                )
            batch_sizes = sorted_indices = unsorted_indices = None
        batched = packed or input.dim() == 3
        states = self._canonical_hx(hx, batched)
        if not packed:
            if not batched:
                input = input.unsqueeze(1)
            elif self.batch_first:
                input = input.transpose(0, 1)
            length, batch = input.shape[:2]
            data = input.reshape(length * batch, input.shape[2])
            steps = [batch] * length
        zero = states is None
        if zero:
            states = self._zero_state(batch, data)
        else:
            if packed:
                states = tuple(s.index_select(1, sorted_indices) for s in states)
            self._check_forward(states, batch)
        out, finals = self._run(data, steps, states, zero)
        if packed:
            if unsorted_indices is not None:
                finals = tuple(s.index_select(1, unsorted_indices) for s in finals)
            output = PackedSequence(out, batch_sizes, sorted_indices, unsorted_indices)
        else:
            output = out.view(len(steps), batch, -1)
            if not batched:
                output = output.squeeze(1)
                finals = tuple(s.squeeze(1) for s in finals)
            elif self.batch_first:
                output = output.transpose(0, 1)
        return output, (finals if self._n_states > 1 else finals[0])

    def _canonical_hx(self, hx, batched: bool) -> Optional[State]:
        if hx is None:
            return None
        states = tuple(hx) if self._n_states > 1 else (hx,)
        if len(states) != self._n_states or not all(isinstance(s, Tensor) for s in states):
            raise TypeError(
                f"{self.layer_name}: hx must be "
                + ("a tuple (h_0, c_0)" if self._n_states > 1 else "a tensor h_0")
            )
        want = 3 if batched else 2
        for s in states:
            if s.dim() != want:
                raise ValueError(
                    f"{self.layer_name}: for {'batched' if batched else 'unbatched'} input the "
                    f"initial states must be {want}-d, got {s.dim()}-d"
                )
        if not batched:
            states = tuple(s.unsqueeze(1) for s in states)
        return states

    def _check_forward(self, states: State, batch: int) -> None:
        n = self.num_layers * (2 if self.bidirectional else 1)
        for s, size in zip(states, self._state_sizes()):
            if tuple(s.shape) != (n, batch, size):
                raise ValueError(
                    f"{self.layer_name}: initial state must have shape {(n, batch, size)}, "
                    f"got {tuple(s.shape)}"
                )

    def _run(
        self, data: Tensor, steps: list[int], states: State, zero: bool
    ) -> tuple[Tensor, State]:
        """All layers and directions over the packed-order ``data`` (time-major rows, step
        ``t`` holding the first ``steps[t]`` sequences); ``zero``: the states are all zero."""
        if data.shape[-1] != self.input_size:
            raise ValueError(
                f"{self.layer_name}: input.size(-1) must be input_size={self.input_size}, "
                f"got {data.shape[-1]}"
            )
        offsets = [0]
        for b in steps[:-1]:
            offsets.append(offsets[-1] + b)
        directions = 2 if self.bidirectional else 1
        finals: list[list[Tensor]] = [[] for _ in range(self._n_states)]
        x = data
        for layer in range(self.num_layers):
            outs = []
            for d in range(directions):
                k = f"l{layer}{'_reverse' if d else ''}"
                idx = layer * directions + d
                state = tuple(s[idx] for s in states)
                out, state = self._direction(
                    x,
                    steps,
                    offsets,
                    state,
                    getattr(self, f"ih_{k}"),
                    getattr(self, f"hh_{k}"),
                    getattr(self, f"hr_{k}", None),
                    reverse=bool(d),
                    zero=zero,
                )
                outs.append(out)
                for store, s in zip(finals, state):
                    store.append(s)
            x = outs[0] if directions == 1 else torch.cat(outs, dim=-1)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        return x, tuple(torch.stack(store) for store in finals)

    def _direction(
        self,
        x: Tensor,
        steps: list[int],
        offsets: list[int],
        state: State,
        ih: AnalogLinear,
        hh: AnalogLinear,
        hr: Optional[AnalogLinear],
        reverse: bool,
        zero: bool,
    ) -> tuple[Tensor, State]:
        gi = ih(x)  # the input products of every step: one batch of MVMs
        # one tile read per step, the per-forward work (checks, compensation) done once; a
        # single step reads the layers themselves (a step reader would only decide, not serve)
        single = len(steps) == 1
        read = hh if single else hh.step_reader()
        proj = None if hr is None else (hr if single else hr.step_reader())
        outs: list[Optional[Tensor]] = [None] * len(steps)
        order = range(len(steps) - 1, -1, -1) if reverse else range(len(steps))
        for t in order:
            b, o = steps[t], offsets[t]
            full = b == state[0].shape[0]
            part = state if full else tuple(s[:b] for s in state)
            new = self._step(gi[o : o + b], part, hh, read, proj, zero)
            zero = False  # only the first step starts from the all-zero state
            outs[t] = new[0]
            # sequences that ended (forward) or have not started (reverse) keep their state
            state = new if full else tuple(torch.cat([n, s[b:]]) for n, s in zip(new, state))
        return (outs[0] if single else torch.cat(outs)), state

    def extra_repr(self) -> str:
        return f"{self._FLOAT_MODULE.extra_repr(self)}, {self._analog_repr()}"


def _rnn_doc(name: str, torch_name: str, extra: str = "") -> str:
    return f"""``nn.{torch_name}`` with ``W_ih`` and ``W_hh`` of every layer and direction on tiles.

    The torch signature followed by ``config``; inputs, initial states and outputs as torch's
    (``PackedSequence`` included){extra}. Tile layers: ``ih_l{{k}}`` and ``hh_l{{k}}``
    (suffix ``_reverse`` for the backward direction), sharing torch's
    ``weight_ih_l{{k}}``/``bias_ih_l{{k}}`` and ``weight_hh_l{{k}}``/``bias_hh_l{{k}}``; see
    :mod:`aimc.nn.recurrent` for why two tile sets.

    Examples:
        >>> import torch, aimc
        >>> rnn = {name}(4, 8, config=aimc.AnalogConfig.ideal()).eval()
        >>> out, _ = rnn(torch.randn(5, 2, 4))
        >>> out.shape
        torch.Size([5, 2, 8])
    """


class AnalogLSTM(_AnalogRNNBase, nn.LSTM):
    __doc__ = _rnn_doc(
        "AnalogLSTM",
        "LSTM",
        "; ``proj_size > 0`` adds tile layers ``hr_l{k}`` for ``weight_hr_l{k}``",
    )
    _FLOAT_MODULE = nn.LSTM
    _n_states = 2

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        config: Optional[AnalogConfig] = None,
        *,
        device=None,
        dtype=None,
    ) -> None:
        nn.LSTM.__init__(
            self,
            input_size,
            hidden_size,
            num_layers=num_layers,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            proj_size=proj_size,
            device=device,
            dtype=dtype,
        )
        self._init_recurrent(config)

    def _state_sizes(self) -> tuple[int, ...]:
        return (self.proj_size or self.hidden_size, self.hidden_size)

    def _step(self, gi, state, hh, read, proj, zero):
        return _lstm_step(gi, state, hh, read, proj, zero)


class AnalogGRU(_AnalogRNNBase, nn.GRU):
    __doc__ = _rnn_doc("AnalogGRU", "GRU")
    _FLOAT_MODULE = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        config: Optional[AnalogConfig] = None,
        *,
        device=None,
        dtype=None,
    ) -> None:
        nn.GRU.__init__(
            self,
            input_size,
            hidden_size,
            num_layers=num_layers,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            device=device,
            dtype=dtype,
        )
        self._init_recurrent(config)

    def _step(self, gi, state, hh, read, proj, zero):
        return _gru_step(gi, state, hh, read, None, zero)


class AnalogRNN(_AnalogRNNBase, nn.RNN):
    __doc__ = _rnn_doc("AnalogRNN", "RNN", "; ``nonlinearity`` ``'tanh'`` or ``'relu'``")
    _FLOAT_MODULE = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        config: Optional[AnalogConfig] = None,
        *,
        device=None,
        dtype=None,
    ) -> None:
        nn.RNN.__init__(
            self,
            input_size,
            hidden_size,
            num_layers=num_layers,
            nonlinearity=nonlinearity,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            device=device,
            dtype=dtype,
        )
        self._init_recurrent(config)

    def _step(self, gi, state, hh, read, proj, zero):
        return _rnn_step(_activation(self.nonlinearity))(gi, state, hh, read, None, zero)


# ---------------------------------------------------------------------------------- cells
class _AnalogCellBase(AnalogContainer):
    """Shared forward of the analog cells: tile layers ``ih`` and ``hh``."""

    _n_states = 1

    def _init_cell(self, config: Optional[AnalogConfig]) -> None:
        self._init_tiles(
            config,
            [("ih", self.weight_ih, self.bias_ih), ("hh", self.weight_hh, self.bias_hh)],
        )

    @staticmethod
    def _ctor_kwargs(module: nn.Module) -> dict[str, Any]:
        kwargs = {
            "input_size": module.input_size,
            "hidden_size": module.hidden_size,
            "bias": module.bias,
        }
        if isinstance(module, nn.RNNCell):
            kwargs["nonlinearity"] = module.nonlinearity
        return kwargs

    def _step(self, gi: Tensor, state: State, zero: bool) -> State:
        raise NotImplementedError

    def forward(self, input: Tensor, hx=None):
        if self._runs_digital():
            return self._FLOAT_MODULE.forward(self, input, hx)
        self._auto_calibrate(lambda: self._analog_forward(input, hx))
        return self._analog_forward(input, hx)

    def _analog_forward(self, input: Tensor, hx):
        if not isinstance(input, Tensor) or input.dim() not in (1, 2):
            got = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(
                f"{self.layer_name}: input must be (N, input_size) or (input_size,), got {got}"
            )
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if x.shape[1] != self.input_size:
            raise ValueError(
                f"{self.layer_name}: input must have input_size={self.input_size} features, "
                f"got {x.shape[1]}"
            )
        if hx is None:
            states = tuple(x.new_zeros(x.shape[0], self.hidden_size) for _ in range(self._n_states))
        else:
            states = tuple(hx) if self._n_states > 1 else (hx,)
            states = states if batched else tuple(s.unsqueeze(0) for s in states)
            for s in states:
                if tuple(s.shape) != (x.shape[0], self.hidden_size):
                    raise ValueError(
                        f"{self.layer_name}: hidden state must have shape "
                        f"{(x.shape[0], self.hidden_size)}, got {tuple(s.shape)}"
                    )
        new = self._step(self.ih(x), states, hx is None or self._unset_and_zero(states[0]))
        if not batched:
            new = tuple(s.squeeze(0) for s in new)
        return new if self._n_states > 1 else new[0]

    def _unset_and_zero(self, h: Tensor) -> bool:
        """An all-zero hidden state given to a ``hh`` tile layer that has no input range yet
        (or is calibrating): skip the read as for ``hx=None`` (the product is exactly zero),
        so a loop over the cell that starts from zeros does not range ``hh`` on zeros."""
        if not (self.hh.uncalibrated or self.hh.observing):
            return False
        return not bool(h.detach().any())

    def extra_repr(self) -> str:
        return f"{self._FLOAT_MODULE.extra_repr(self)}, {self._analog_repr()}"


def _cell_doc(name: str, torch_name: str) -> str:
    return f"""``nn.{torch_name}`` with ``weight_ih`` and ``weight_hh`` on tiles (``ih``, ``hh``).

    The torch signature followed by ``config``; one step, inputs and states as torch's.

    Examples:
        >>> import torch, aimc
        >>> cell = {name}(4, 8, config=aimc.AnalogConfig.ideal()).eval()
        >>> out = cell(torch.randn(2, 4))
    """


class AnalogLSTMCell(_AnalogCellBase, nn.LSTMCell):
    __doc__ = _cell_doc("AnalogLSTMCell", "LSTMCell")
    _FLOAT_MODULE = nn.LSTMCell
    _n_states = 2

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        config: Optional[AnalogConfig] = None,
        *,
        device=None,
        dtype=None,
    ) -> None:
        nn.LSTMCell.__init__(self, input_size, hidden_size, bias, device=device, dtype=dtype)
        self._init_cell(config)

    def _step(self, gi, state, zero):
        return _lstm_step(gi, state, self.hh, self.hh, None, zero)


class AnalogGRUCell(_AnalogCellBase, nn.GRUCell):
    __doc__ = _cell_doc("AnalogGRUCell", "GRUCell")
    _FLOAT_MODULE = nn.GRUCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        config: Optional[AnalogConfig] = None,
        *,
        device=None,
        dtype=None,
    ) -> None:
        nn.GRUCell.__init__(self, input_size, hidden_size, bias, device=device, dtype=dtype)
        self._init_cell(config)

    def _step(self, gi, state, zero):
        return _gru_step(gi, state, self.hh, self.hh, None, zero)


class AnalogRNNCell(_AnalogCellBase, nn.RNNCell):
    __doc__ = _cell_doc("AnalogRNNCell", "RNNCell")
    _FLOAT_MODULE = nn.RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        config: Optional[AnalogConfig] = None,
        *,
        device=None,
        dtype=None,
    ) -> None:
        nn.RNNCell.__init__(
            self, input_size, hidden_size, bias, nonlinearity, device=device, dtype=dtype
        )
        self._init_cell(config)

    def _step(self, gi, state, zero):
        return _rnn_step(_activation(self.nonlinearity))(gi, state, self.hh, self.hh, None, zero)
