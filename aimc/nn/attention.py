"""``AnalogMultiheadAttention``: ``nn.MultiheadAttention`` with its projections on tiles.

The four weight matrices of attention are stored weights, so they go on crossbars: the input
projection as torch stores it (one ``in_proj`` tile layer of ``3 * embed_dim x embed_dim`` for the
packed ``in_proj_weight``, or ``q_proj``/``k_proj``/``v_proj`` for separate ``kdim``/``vdim``
weights) and the output projection ``out_proj``. The score product ``Q K^T``, the softmax and the
value product ``A V`` multiply two *activations*; no operand is a stored weight, so a crossbar
would have to be reprogrammed for every input. They run digitally, as on analog chips that pair
tiles with digital units, and the cost model prices them as digital MACs and ops.

Self-attention (``query is key is value``) drives the packed projection once per token and reads
all ``3 * embed_dim`` columns. With distinct inputs (cross-attention) the packed projection runs
once per distinct input tensor and keeps the columns that input feeds; the unused columns are read
and converted too, as a packed crossbar does, and the cost report counts them.

:func:`route_around_fast_path` keeps ``nn.TransformerEncoderLayer``/``nn.TransformerEncoder`` off
torch's fused inference kernels (which read the raw weights and would bypass every tile layer);
:func:`aimc.convert_to_analog` calls it.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc.config import AnalogConfig
from aimc.nn.base import AnalogLayerBase
from aimc.nn.composite import AnalogContainer

__all__ = ["AnalogMultiheadAttention", "route_around_fast_path"]


def _float_mask(mask: Optional[Tensor], name: str, dtype: torch.dtype) -> Optional[Tensor]:
    """A boolean mask (``True``: masked) as an additive float mask; float masks pass through."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise TypeError(f"{name} must be a bool or floating-point tensor, got {mask.dtype}")
    return mask


class AnalogMultiheadAttention(AnalogContainer, nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose input and output projections run on tiles.

    The torch signature followed by ``config``; the forward takes torch's arguments (masks as
    bool or float, ``need_weights``, ``average_attn_weights``, ``is_causal``, ``batch_first``,
    unbatched inputs) and returns torch's ``(output, weights)``. Parameters keep torch's names
    and objects (``in_proj_weight`` or ``q/k/v_proj_weight``, ``in_proj_bias``, ``bias_k``,
    ``bias_v``, ``out_proj.weight``); the tile layers ``in_proj`` (or ``q_proj``, ``k_proj``,
    ``v_proj``; no bias: ``in_proj_bias`` is added digitally) and ``out_proj`` hold the same
    tensors. Torch has no key/value cache in this module; neither does this one.

    Training forwards are torch's own unless ``config.training.hardware_aware`` (then the
    projections inject the configured noise); eval forwards read the tiles.

    Args:
        embed_dim, num_heads, dropout, bias, add_bias_kv, add_zero_attn, kdim, vdim,
        batch_first: as for ``nn.MultiheadAttention``.
        config: the hardware of every projection; default ``AnalogConfig()``.
        device, dtype: as for ``nn.MultiheadAttention``.

    Shape:
        As ``nn.MultiheadAttention``: query ``(L, N, E)`` (``(N, L, E)`` with ``batch_first``) or
        ``(L, E)``; key/value ``(S, N, kdim/vdim)``; output ``(L, N, E)``; weights ``(N, L, S)``
        or ``(N, num_heads, L, S)`` without averaging.

    Examples:
        >>> import torch, aimc
        >>> attn = AnalogMultiheadAttention(8, 2, config=aimc.AnalogConfig.ideal()).eval()
        >>> x = torch.randn(5, 3, 8)
        >>> out, weights = attn(x, x, x)
        >>> out.shape, weights.shape
        (torch.Size([5, 3, 8]), torch.Size([3, 5, 5]))
    """

    _FLOAT_MODULE = nn.MultiheadAttention

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: Optional[int] = None,
        vdim: Optional[int] = None,
        batch_first: bool = False,
        config: Optional[AnalogConfig] = None,
        *,
        device=None,
        dtype=None,
    ) -> None:
        nn.MultiheadAttention.__init__(
            self,
            embed_dim,
            num_heads,
            dropout,
            bias,
            add_bias_kv,
            add_zero_attn,
            kdim,
            vdim,
            batch_first,
            device=device,
            dtype=dtype,
        )
        if self._qkv_same_embed_dim:
            tiles = [("in_proj", self.in_proj_weight, None)]
        else:
            tiles = [(f"{k}_proj", getattr(self, f"{k}_proj_weight"), None) for k in "qkv"]
        tiles.append(("out_proj", self.out_proj.weight, self.out_proj.bias))
        self._init_tiles(config, tiles)

    @staticmethod
    def _ctor_kwargs(module: nn.Module) -> dict[str, Any]:
        m = module
        return {
            "embed_dim": m.embed_dim,
            "num_heads": m.num_heads,
            "dropout": m.dropout,
            "bias": m.in_proj_bias is not None,
            "add_bias_kv": m.bias_k is not None,
            "add_zero_attn": m.add_zero_attn,
            "kdim": m.kdim,
            "vdim": m.vdim,
            "batch_first": m.batch_first,
        }

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = True,
        attn_mask: Optional[Tensor] = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Optional[Tensor]]:
        if self._runs_digital():
            return nn.MultiheadAttention.forward(
                self,
                query,
                key,
                value,
                key_padding_mask=key_padding_mask,
                need_weights=need_weights,
                attn_mask=attn_mask,
                average_attn_weights=average_attn_weights,
                is_causal=is_causal,
            )
        args = (query, key, value, key_padding_mask, need_weights, attn_mask)
        kw = {"average_attn_weights": average_attn_weights, "is_causal": is_causal}
        self._auto_calibrate(lambda: self._analog_forward(*args, **kw))
        with self._training_noise_held():  # in_proj for query, key, value: one array, one draw
            return self._analog_forward(*args, **kw)

    def _analog_forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Optional[Tensor],
        need_weights: bool,
        attn_mask: Optional[Tensor],
        average_attn_weights: bool,
        is_causal: bool,
    ) -> tuple[Tensor, Optional[Tensor]]:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor) or t.dim() not in (2, 3) or t.is_nested:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(
                    f"{self.layer_name}: {name} must be a dense tensor (L, N, E), (N, L, E) or "
                    f"unbatched (L, E), got {got}"
                )
        batched = query.dim() == 3
        if key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                f"{self.layer_name}: query, key and value must all be batched (3-d) or all "
                f"unbatched (2-d), got {query.dim()}-d, {key.dim()}-d, {value.dim()}-d"
            )
        if self.batch_first and batched:  # transpose once, keeping "is" between the inputs
            if key is value:
                if query is key:
                    query = key = value = query.transpose(1, 0)
                else:
                    query, key = (t.transpose(1, 0) for t in (query, key))
                    value = key
            else:
                query, key, value = (t.transpose(1, 0) for t in (query, key, value))
        out, weights = self._attention(
            query,
            key,
            value,
            key_padding_mask,
            need_weights,
            attn_mask,
            average_attn_weights,
            is_causal,
        )
        if self.batch_first and batched:
            out = out.transpose(1, 0)
        return out, weights

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``q, k, v`` from the tile layers (plus the digital ``in_proj_bias``)."""
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            if query is key and key is value:
                q, k, v = self.in_proj(query).split(e, dim=-1)
            elif key is value:
                q = self.in_proj(query)[..., :e]
                k, v = self.in_proj(key)[..., e:].split(e, dim=-1)
            else:
                q = self.in_proj(query)[..., :e]
                k = self.in_proj(key)[..., e : 2 * e]
                v = self.in_proj(value)[..., 2 * e :]
        else:
            q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = self.in_proj_bias.split(e)
            q, k, v = q + b_q, k + b_k, v + b_v
        return q, k, v

    def _attention(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Optional[Tensor],
        need_weights: bool,
        attn_mask: Optional[Tensor],
        average_attn_weights: bool,
        is_causal: bool,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Torch's multi-head attention on ``(L, N, E)`` inputs, projections on the tiles."""
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        tgt_len, bsz, embed_dim = query.shape
        heads, head_dim = self.num_heads, self.head_dim
        if embed_dim != self.embed_dim:
            raise ValueError(
                f"{self.layer_name}: query has embedding size {embed_dim}, "
                f"embed_dim is {self.embed_dim}"
            )
        if key.shape[:2] != value.shape[:2] or key.shape[1] != bsz:
            raise ValueError(
                f"{self.layer_name}: key {tuple(key.shape)} and value {tuple(value.shape)} must "
                f"share sequence and batch sizes with batch {bsz} of query"
            )
        key_padding_mask = _float_mask(key_padding_mask, "key_padding_mask", query.dtype)
        if is_causal and attn_mask is None:
            raise RuntimeError(
                f"{self.layer_name}: is_causal needs attn_mask (torch's rule); use "
                "nn.Transformer.generate_square_subsequent_mask to build it"
            )
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = None  # the kernel builds the causal mask itself
        else:
            attn_mask = _float_mask(attn_mask, "attn_mask", query.dtype)
            if key_padding_mask is not None:
                is_causal = False

        q, k, v = self._project(query, key, value)
        src_len = k.shape[0]
        if attn_mask is not None:
            want = (tgt_len, src_len) if attn_mask.dim() == 2 else (bsz * heads, tgt_len, src_len)
            if attn_mask.dim() not in (2, 3) or tuple(attn_mask.shape) != want:
                raise ValueError(
                    f"{self.layer_name}: attn_mask must have shape (L, S) = "
                    f"{(tgt_len, src_len)} or (N * num_heads, L, S) = "
                    f"{(bsz * heads, tgt_len, src_len)}, got {tuple(attn_mask.shape)}"
                )
            if attn_mask.dim() == 2:
                attn_mask = attn_mask.unsqueeze(0)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.repeat(1, bsz, 1)])
            v = torch.cat([v, self.bias_v.repeat(1, bsz, 1)])
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))
            if key_padding_mask is not None:
                key_padding_mask = F.pad(key_padding_mask, (0, 1))
        q = q.reshape(tgt_len, bsz * heads, head_dim).transpose(0, 1)
        k = k.reshape(k.shape[0], bsz * heads, head_dim).transpose(0, 1)
        v = v.reshape(v.shape[0], bsz * heads, head_dim).transpose(0, 1)
        if self.add_zero_attn:
            zeros = torch.zeros(bsz * heads, 1, head_dim, dtype=k.dtype, device=k.device)
            k, v = torch.cat([k, zeros], dim=1), torch.cat([v, zeros], dim=1)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))
            if key_padding_mask is not None:
                key_padding_mask = F.pad(key_padding_mask, (0, 1))
        src_len = k.shape[1]
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (bsz, src_len):
                extra = self._extra_keys()  # columns added for bias_k and the zero key
                got = (*key_padding_mask.shape[:-1], key_padding_mask.shape[-1] - extra)
                raise ValueError(
                    f"{self.layer_name}: key_padding_mask must have shape (N, S) = "
                    f"{(bsz, src_len - extra)}, got {got}"
                )
            kpm = key_padding_mask.view(bsz, 1, 1, src_len).expand(-1, heads, -1, -1)
            kpm = kpm.reshape(bsz * heads, 1, src_len)
            attn_mask = kpm if attn_mask is None else attn_mask + kpm
        dropout_p = self.dropout if self.training else 0.0

        if need_weights:
            scores_q = q * math.sqrt(1.0 / float(head_dim))
            if attn_mask is not None:
                scores = torch.baddbmm(attn_mask, scores_q, k.transpose(-2, -1))
            else:
                scores = torch.bmm(scores_q, k.transpose(-2, -1))
            weights = F.softmax(scores, dim=-1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)
            out = torch.bmm(weights, v)
            out = out.transpose(0, 1).reshape(tgt_len * bsz, embed_dim)
            weights = weights.view(bsz, heads, tgt_len, src_len)
            if average_attn_weights:
                weights = weights.mean(dim=1)
        else:
            if attn_mask is not None:
                if attn_mask.size(0) == 1 and attn_mask.dim() == 3:
                    attn_mask = attn_mask.unsqueeze(0)
                else:
                    attn_mask = attn_mask.view(bsz, heads, -1, src_len)
            out = F.scaled_dot_product_attention(
                q.view(bsz, heads, tgt_len, head_dim),
                k.view(bsz, heads, src_len, head_dim),
                v.view(bsz, heads, src_len, head_dim),
                attn_mask,
                dropout_p,
                is_causal,
            )
            out = out.permute(2, 0, 1, 3).reshape(bsz * tgt_len, embed_dim)
            weights = None
        out = self.out_proj(out).view(tgt_len, bsz, -1)
        if not batched:
            out = out.squeeze(1)
            if weights is not None:
                weights = weights.squeeze(0)
        return out, weights

    def _extra_keys(self) -> int:
        return int(self.bias_k is not None) + int(self.add_zero_attn)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
            f"batch_first={self.batch_first}, {self._analog_repr()}"
        )


def _holds_analog(module: nn.Module) -> bool:
    return any(isinstance(m, AnalogLayerBase) for m in module.modules())


def route_around_fast_path(model: nn.Module) -> nn.Module:
    """Keep torch's fused transformer inference kernels away from analog layers.

    In eval mode under ``no_grad``, ``nn.TransformerEncoderLayer`` runs one fused kernel on its
    raw weights (skipping every submodule's forward) and ``nn.TransformerEncoder`` packs padded
    batches into nested tensors for it. For each of them that holds an analog layer this turns
    both off (the layer's fused-activation flag and the encoder's ``use_nested_tensor``), so
    its submodules, and with them the tiles, always run. Other modules are left alone.

    Returns:
        ``model`` (modified in place).
    """
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoderLayer) and _holds_analog(module):
            # the fast path requires a fused ReLU/GELU flag: 0 means "not fusable"
            module.activation_relu_or_gelu = 0
        elif isinstance(module, nn.TransformerEncoder) and _holds_analog(module):
            module.use_nested_tensor = False
    return model
