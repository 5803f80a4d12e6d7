"""Attention, as in ``torch.nn.functional``: ``scaled_dot_product_attention`` and
``multi_head_attention_forward`` (the math of ``nn.MultiheadAttention``).

Both run the scores and their softmax through one fused primitive
(``nn/prims/attention.py``), then dropout and the product with the values.
"""

from __future__ import annotations

import math
from typing import Any

from ...backend import CPU
from ...core.autocast import AUTOCAST, autocast_op
from ...core.methods import cat
from ...core.random import Generator
from ...core.tensor import Tensor
from ...errors import DTypeError, ShapeError
from ..prims.attention import AttentionProbs
from ..prims.qkv import PackedQKV
from .activation import dropout
from .linear import linear

__all__ = ["multi_head_attention_forward", "scaled_dot_product_attention"]


def _const(x: Tensor, array: Any) -> Tensor:
    return Tensor._make(array, x.device)


def _bool_to_bias(mask: Tensor, dtype: Any, masked_when: bool) -> Tensor:
    """A bool mask as an additive float mask: -inf where ``mask == masked_when``, else 0."""
    xp = mask.device.xp
    out = xp.zeros(mask.shape, dtype.np)
    out[mask._data == masked_when] = -math.inf
    return _const(mask, out)


def _causal_bias(like: Tensor, length: int, source: int) -> Tensor:
    """(L, S) additive mask of the top-left causal pattern: position i sees keys 0..i."""
    xp = like.device.xp
    out = xp.zeros((length, source), like._data.dtype)
    out[xp.triu(xp.ones((length, source), bool), 1)] = -math.inf
    return _const(like, out)


def _repeat_heads(t: Tensor, times: int) -> Tensor:
    """(..., H, S, E) -> (..., H * times, S, E), each head repeated ``times`` in a row (repeat_interleave)."""
    shape = t.shape
    expanded = t.unsqueeze(-3).expand(*shape[:-3], shape[-3], times, *shape[-2:])
    return expanded.reshape(*shape[:-3], shape[-3] * times, *shape[-2:])


@autocast_op("lower")
def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False, *, generator: Generator | None = None) -> Tensor:
    """``softmax(query @ key^T * scale + mask) @ value`` for query (..., L, E), key (..., S, E), value (..., S, Ev).

    ``attn_mask``: bool (True = may attend) or float (added to the scores), broadcastable to
    (..., L, S). ``is_causal``: query i attends to keys 0..i (top-left aligned). ``scale``
    defaults to ``1 / sqrt(E)``. ``enable_gqa``: key and value may have fewer heads (dim -3)
    than the query, each shared by a group of query heads. Rows with every key masked give
    zeros. ``generator`` (an axonml extension) draws the dropout mask.
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention: {name} must be a Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise ShapeError(f"scaled_dot_product_attention: {name} needs at least 2 dimensions, got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise DTypeError(f"scaled_dot_product_attention: {name} must be floating point, got {t.dtype}")
    if not query.dtype == key.dtype == value.dtype:
        raise DTypeError(f"scaled_dot_product_attention: query, key and value must have one dtype, got "
                         f"{query.dtype}, {key.dtype} and {value.dtype}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ShapeError(f"scaled_dot_product_attention: query {tuple(query.shape)}, key {tuple(key.shape)} and value "
                         f"{tuple(value.shape)} do not match (expected (..., L, E), (..., S, E), (..., S, Ev))")
    if enable_gqa and query.ndim >= 3 and key.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        hq, hk = query.shape[-3], key.shape[-3]
        if hq % hk or value.shape[-3] != hk:
            raise ShapeError(f"scaled_dot_product_attention: {hq} query heads cannot be grouped over {hk} key and "
                             f"{value.shape[-3]} value heads")
        key, value = _repeat_heads(key, hq // hk), _repeat_heads(value, hq // hk)
    length, source = query.shape[-2], key.shape[-2]
    bias = None
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
        bias = _causal_bias(query, length, source)
    elif attn_mask is not None:
        if attn_mask.dtype.name == "bool":
            bias = _bool_to_bias(attn_mask, query.dtype, masked_when=False)
        elif attn_mask.is_floating_point():
            bias = attn_mask
        else:
            raise DTypeError(f"scaled_dot_product_attention: attn_mask must be bool or floating point, "
                             f"got {attn_mask.dtype}")
        if attn_mask.ndim == 0 or attn_mask.shape[-1] not in (1, source) or (
                attn_mask.ndim > 1 and attn_mask.shape[-2] not in (1, length)):
            raise ShapeError(f"scaled_dot_product_attention: attn_mask of shape {tuple(attn_mask.shape)} does not "
                             f"broadcast to the scores' shape (..., {length}, {source})")
    s = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    probs = AttentionProbs.apply(query, key, bias, s)
    if dropout_p > 0.0:
        probs = dropout(probs, dropout_p, True, generator=generator)
    return probs @ value


# ----- multi-head attention -------------------------------------------------------------------------
def _canonical_mask(mask: Tensor | None, name: str, dtype: Any) -> Tensor | None:
    """A bool mask (True = masked out, as nn.MultiheadAttention) as an additive float mask; float masks as they are."""
    if mask is None:
        return None
    if mask.dtype.name == "bool":
        return _bool_to_bias(mask, dtype, masked_when=True)
    if not mask.is_floating_point():
        raise DTypeError(f"multi_head_attention_forward: only bool and floating types of {name} are supported, "
                         f"got {mask.dtype}")
    return mask


def _pad_last(mask: Tensor | None) -> Tensor | None:
    """One more key position, not masked: a zero column appended to an additive mask."""
    if mask is None:
        return None
    zeros = _const(mask, mask.device.xp.zeros((*mask.shape[:-1], 1), mask._data.dtype))
    return cat([mask, zeros], -1)


def _mha_shapes(query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None,
                attn_mask: Tensor | None, num_heads: int) -> bool:
    """Whether the call is batched (3-d query) after checking every rank, as PyTorch's checks."""
    op = "multi_head_attention_forward"
    if query.ndim not in (2, 3):
        raise ShapeError(f"{op}: query must be 2-d (L, E) or 3-d (L, N, E), got shape {tuple(query.shape)}")
    batched = query.ndim == 3
    if key.ndim != query.ndim or value.ndim != query.ndim:
        raise ShapeError(f"{op}: key and value must have the query's {query.ndim} dimensions, got shapes "
                         f"{tuple(key.shape)} and {tuple(value.shape)}")
    if key_padding_mask is not None and key_padding_mask.ndim != query.ndim - 1:
        raise ShapeError(f"{op}: key_padding_mask must be {query.ndim - 1}-d, got shape "
                         f"{tuple(key_padding_mask.shape)}")
    if attn_mask is not None and attn_mask.ndim not in (2, 3):
        raise ShapeError(f"{op}: attn_mask must be 2-d or 3-d, got shape {tuple(attn_mask.shape)}")
    if not batched and attn_mask is not None and attn_mask.ndim == 3:
        expected = (num_heads, query.shape[0], key.shape[0])
        if tuple(attn_mask.shape) != expected:
            raise ShapeError(f"{op}: attn_mask of shape {tuple(attn_mask.shape)}, expected {expected}")
    return batched


def _in_projection(query: Tensor, key: Tensor, value: Tensor, w: Tensor, b: Tensor | None,
                   e: int) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v from the packed (3E, E) projection, as three GEMMs with row blocks of the weight.

    One GEMM and three slices of its output would need the slices' backward to scatter three
    (L, N, 3E) gradients; slicing the (3E, E) weight instead costs measurably less (a third
    of the time for L=128, N=16, E=256, forward and backward).
    """
    bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
    return _linear_seq(query, w[:e], bq), _linear_seq(key, w[e:2 * e], bk), _linear_seq(value, w[2 * e:], bv)


def each_once(fn: Any, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``fn`` of query, key and value, called once for arguments that are one tensor: self-attention's
    ``(x, x, x)`` stays one tensor, which ``multi_head_attention_forward`` projects with one GEMM."""
    q = fn(query)
    k = q if key is query else fn(key)
    v = k if value is key else q if value is query else fn(value)
    return q, k, v


def _packed_self_attention(query: Tensor, key: Tensor, value: Tensor, w: Tensor | None, b: Tensor | None,
                           separate: bool, bias_k: Tensor | None, static_k: Tensor | None,
                           static_v: Tensor | None) -> bool:
    """Whether q, k and v come from one GEMM (``PackedQKV``): self-attention with the packed weight, no
    extra key/value rows, one dtype, outside autocast (whose casts ``linear`` applies) and forward-mode AD."""
    if separate or w is None or not (query is key is value) or bias_k is not None:
        return False
    if static_k is not None or static_v is not None or AUTOCAST.get() is not None:
        return False
    same = query.dtype == w.dtype and (b is None or b.dtype == w.dtype)
    return same and all(t is None or t._tangent is None for t in (query, w, b))


def _batch_major(x: Tensor) -> bool:
    """Whether a (L, N, E) CPU tensor is the transposed view of a contiguous (N, L, E) one (batch_first input).

    (CPU only: the CUDA path keeps its measured op sequence.)"""
    return x.ndim == 3 and x._device is CPU and bool(x._data.transpose(1, 0, 2).flags.c_contiguous)


def _linear_seq(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """``linear`` of a (L, N, E) input; a batch-first one is projected in its own (N, L) row order and the
    result transposed back (a view), instead of copying the input into (L, N) order first."""
    if _batch_major(x) and not x.is_contiguous():
        return linear(x.transpose(0, 1), w, b).transpose(0, 1)
    return linear(x, w, b)


def multi_head_attention_forward(
    query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
    in_proj_weight: Tensor | None, in_proj_bias: Tensor | None, bias_k: Tensor | None, bias_v: Tensor | None,
    add_zero_attn: bool, dropout_p: float, out_proj_weight: Tensor, out_proj_bias: Tensor | None,
    training: bool = True, key_padding_mask: Tensor | None = None, need_weights: bool = True,
    attn_mask: Tensor | None = None, use_separate_proj_weight: bool = False, q_proj_weight: Tensor | None = None,
    k_proj_weight: Tensor | None = None, v_proj_weight: Tensor | None = None, static_k: Tensor | None = None,
    static_v: Tensor | None = None, average_attn_weights: bool = True, is_causal: bool = False, *,
    generator: Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The forward of ``nn.MultiheadAttention`` on sequence-first inputs, as PyTorch's function of this name.

    query (L, N, E), key (S, N, Ek), value (S, N, Ev), or unbatched without N. Masks: bool
    (True = not allowed) or float (added); ``attn_mask`` (L, S) or (N * num_heads, L, S);
    ``key_padding_mask`` (N, S). Returns ``(output (L, N, E), weights)`` with weights
    (N, L, S) averaged over heads, (N, num_heads, L, S) with ``average_attn_weights=False``,
    or None without ``need_weights``. ``is_causal`` is a hint that ``attn_mask`` is causal.
    Rows with every key masked give zeros (PyTorch gives NaN weights on its need_weights path).
    """
    op = "multi_head_attention_forward"
    batched = _mha_shapes(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not batched:
        query, key, value = each_once(lambda t: t.unsqueeze(1), query, key, value)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    kpm = _canonical_mask(key_padding_mask, "key_padding_mask", query.dtype)
    if is_causal and attn_mask is None:
        raise ValueError(f"{op}: is_causal is a hint that attn_mask is causal: attn_mask must be given too")
    causal = is_causal and kpm is None and not need_weights
    mask = None if causal else _canonical_mask(attn_mask, "attn_mask", query.dtype)
    if embed_dim != embed_dim_to_check:
        raise ShapeError(f"{op}: expected embedding dimension {embed_dim_to_check}, got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise ShapeError(f"{op}: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    if (use_separate_proj_weight and key.shape[:2] != value.shape[:2]) or (
            not use_separate_proj_weight and key.shape != value.shape):
        raise ShapeError(f"{op}: key of shape {tuple(key.shape)} does not match value of shape {tuple(value.shape)}")
    packed = _packed_self_attention(query, key, value, in_proj_weight, in_proj_bias, use_separate_proj_weight,
                                    bias_k, static_k, static_v)
    if packed:
        q4, k4, v4 = PackedQKV.apply(query, in_proj_weight, in_proj_bias, num_heads)
    elif not use_separate_proj_weight:
        if in_proj_weight is None:
            raise ValueError(f"{op}: use_separate_proj_weight=False needs in_proj_weight")
        q, k, v = _in_projection(query, key, value, in_proj_weight, in_proj_bias, embed_dim)
    else:
        if q_proj_weight is None or k_proj_weight is None or v_proj_weight is None:
            raise ValueError(f"{op}: use_separate_proj_weight=True needs q_, k_ and v_proj_weight")
        b = in_proj_bias
        e = embed_dim
        q = _linear_seq(query, q_proj_weight, None if b is None else b[:e])
        k = _linear_seq(key, k_proj_weight, None if b is None else b[e:2 * e])
        v = _linear_seq(value, v_proj_weight, None if b is None else b[2 * e:])
    src_len = key.shape[0]
    if mask is not None:
        expected = (tgt_len, src_len) if mask.ndim == 2 else (bsz * num_heads, tgt_len, src_len)
        if tuple(mask.shape) != expected:
            raise ShapeError(f"{op}: the {mask.ndim}-d attn_mask has shape {tuple(mask.shape)}, expected {expected}")
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
    if bias_k is not None and bias_v is not None:
        if static_k is not None or static_v is not None:
            raise ValueError(f"{op}: bias_k and bias_v cannot be added to static keys and values")
        k = cat([k, bias_k.reshape(1, 1, -1).expand(1, bsz, bias_k.shape[-1])])
        v = cat([v, bias_v.reshape(1, 1, -1).expand(1, bsz, bias_v.shape[-1])])
        mask, kpm = _pad_last(mask), _pad_last(kpm)
    elif bias_k is not None or bias_v is not None:
        raise ValueError(f"{op}: bias_k and bias_v must be given together")
    if not packed:  # heads: (L, N, E) -> (N, H, L, hd), views where the layout allows
        q4 = _split_heads(q, bsz, num_heads, head_dim)
        k4 = _heads(op, "static_k", static_k, k, bsz, num_heads, head_dim)
        v4 = _heads(op, "static_v", static_v, v, bsz, num_heads, head_dim)
    if add_zero_attn:
        zeros = _const(k4, k4.device.xp.zeros((bsz, num_heads, 1, head_dim), k4._data.dtype))
        k4, v4 = cat([k4, zeros], 2), cat([v4, zeros], 2)
        mask, kpm = _pad_last(mask), _pad_last(kpm)
    src_len = k4.shape[2]
    if kpm is not None:
        if tuple(kpm.shape) != (bsz, src_len):
            raise ShapeError(f"{op}: key_padding_mask of shape {tuple(kpm.shape)}, expected {(bsz, src_len)}")
        kpm4 = kpm.reshape(bsz, 1, 1, src_len)
        mask4 = kpm4 if mask is None else _mask4(mask, bsz, num_heads, src_len) + kpm4
    else:
        mask4 = None if mask is None else _mask4(mask, bsz, num_heads, src_len)
    if causal:
        mask4 = _causal_bias(q4, tgt_len, src_len)
    probs = AttentionProbs.apply(q4, k4, mask4, 1.0 / math.sqrt(head_dim))  # (N, H, L, S)
    if training and dropout_p > 0.0:
        probs = dropout(probs, dropout_p, True, generator=generator)
    if _batch_major(query):  # batch-first input: (N, L, E) rows, returned as a (L, N, E) view of them
        out = (probs @ v4).permute(0, 2, 1, 3).reshape(bsz * tgt_len, embed_dim)
        out = linear(out, out_proj_weight, out_proj_bias).reshape(bsz, tgt_len, -1).transpose(0, 1)
    else:
        out = (probs @ v4).permute(2, 0, 1, 3).reshape(tgt_len * bsz, embed_dim)
        out = linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, -1)
    weights = None
    if need_weights:
        weights = probs.mean(1) if average_attn_weights else probs
    if not batched:
        out = out.squeeze(1)
        weights = None if weights is None else weights.squeeze(0)
    return out, weights


def _heads(op: str, name: str, static: Tensor | None, x: Tensor, bsz: int, num_heads: int, head_dim: int) -> Tensor:
    """(S, N, E) keys or values as (N, H, S, hd), or a given ``static`` (N * H, S, hd) tensor."""
    if static is None:
        return _split_heads(x, bsz, num_heads, head_dim)
    if static.ndim != 3 or static.shape[0] != bsz * num_heads or static.shape[2] != head_dim:
        raise ShapeError(f"{op}: {name} of shape {tuple(static.shape)}, expected ({bsz * num_heads}, S, {head_dim})")
    return static.reshape(bsz, num_heads, static.shape[1], head_dim)


def _split_heads(x: Tensor, bsz: int, num_heads: int, head_dim: int) -> Tensor:
    """(S, N, E) -> (N, H, S, hd), views where the layout allows: from the (N, S, E) storage when ``x`` is a
    view of it, so that the backward merges the heads' gradients straight into that order (one copy, not two)."""
    if _batch_major(x) and not x.is_contiguous():
        return x.transpose(0, 1).reshape(bsz, x.shape[0], num_heads, head_dim).permute(0, 2, 1, 3)
    return x.reshape(x.shape[0], bsz, num_heads, head_dim).permute(1, 2, 0, 3)


def _mask4(mask: Tensor, bsz: int, num_heads: int, src_len: int) -> Tensor:
    """A (1 or N * H, L, S) additive mask as (1 or N, 1 or H, L, S)."""
    if mask.shape[0] == 1:
        return mask.unsqueeze(0)
    return mask.reshape(bsz, num_heads, -1, src_len)
