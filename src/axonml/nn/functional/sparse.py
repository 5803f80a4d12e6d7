"""Embeddings, as in ``torch.nn.functional``: ``embedding`` and ``embedding_bag``.

Only dense gradients: ``sparse=True`` (PyTorch's sparse COO gradients) is refused
with a clear error, since axonml has no sparse tensors.
"""

from __future__ import annotations

import math
from typing import Any

from ...backend import value_range
from ...core.grad_mode import no_grad
from ...core.methods import cat, where
from ...core.tensor import Tensor
from ...errors import DTypeError, IndexingError, ShapeError
from ...ops.indexing import index_add
from ..prims.embedding import Embedding

__all__ = ["embedding", "embedding_bag"]


def _index_array(op: str, input: Any, weight: Tensor) -> Any:  # noqa: A002
    """The index as an integer array on the weight's device, range-checked (negative indices are errors)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected an integer Tensor of indices, got {type(input).__name__}")
    a = input._data
    if a.dtype.kind not in "iu":
        raise DTypeError(f"{op}: indices must be an integer tensor (int64 or int32), got {input.dtype}")
    if input.device is not weight.device:
        from ...errors import DeviceError

        raise DeviceError(f"{op}: indices on {input.device}, weight on {weight.device}")
    if a.size:
        lo, hi = value_range(input.device.xp, a)
        if lo < 0 or hi >= weight.shape[0]:
            raise IndexingError(f"{op}: index {lo if lo < 0 else hi} is out of range for an embedding table of "
                                f"{weight.shape[0]} rows")
    return a


def _padding_idx(op: str, padding_idx: int | None, rows: int) -> int | None:
    if padding_idx is None:
        return None
    if not -rows <= padding_idx < rows:
        raise IndexingError(f"{op}: padding_idx {padding_idx} must be within the {rows} rows of the weight")
    return padding_idx + rows if padding_idx < 0 else padding_idx


def _check_weight(op: str, weight: Any, sparse: bool) -> None:
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ShapeError(f"{op}: weight must be a 2-d Tensor (num_embeddings, embedding_dim), got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}")
    if sparse:
        raise ValueError(f"{op}: sparse=True (sparse gradients) is not supported by axonml; use sparse=False")


def _renorm_(weight: Tensor, index: Any, max_norm: float, norm_type: float) -> None:
    """Rows of ``weight`` used by ``index`` whose ``norm_type``-norm exceeds ``max_norm`` are scaled to it, in place."""
    xp = weight.device.xp
    rows = xp.unique(index.reshape(-1))
    if not rows.size:
        return
    with no_grad():
        picked = weight._data[rows]
        if norm_type == math.inf:
            norms = xp.abs(picked).max(1)
        else:
            norms = (xp.abs(picked) ** norm_type).sum(1) ** (1.0 / norm_type)
        scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(picked.dtype)
        weight[Tensor._make(rows, weight.device)] = Tensor._make(picked * scale[:, None], weight.device)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,  # noqa: A002
              max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
              sparse: bool = False) -> Tensor:
    """Rows of ``weight`` (V, D) at integer ``input`` of any shape: output (*input.shape, D).

    ``padding_idx``: that row gets no gradient. ``max_norm``: rows used by ``input`` whose
    ``norm_type``-norm exceeds it are rescaled to it in place first (as PyTorch, under
    no_grad). ``scale_grad_by_freq``: each row's gradient is divided by its count in ``input``.
    """
    _check_weight("embedding", weight, sparse)
    index = _index_array("embedding", input, weight)
    pad = _padding_idx("embedding", padding_idx, weight.shape[0])
    if max_norm is not None:
        _renorm_(weight, index, max_norm, norm_type)
    return Embedding.apply(weight, index, pad, scale_grad_by_freq)


def _bags(op: str, input: Tensor, offsets: Tensor | None, include_last_offset: bool,  # noqa: A002
          xp: Any) -> tuple[Any, Any, int]:
    """(flat indices (M,), bag of each index (M,), number of bags)."""
    a = input._data
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError(f"{op}: offsets must be None for a 2-d input (each row is one bag)")
        n_bags, length = a.shape
        return a.reshape(-1), xp.repeat(xp.arange(n_bags), length), n_bags
    if input.ndim != 1:
        raise ShapeError(f"{op}: input must be 1-d (with offsets) or 2-d, got shape {tuple(input.shape)}")
    if offsets is None:
        raise ValueError(f"{op}: a 1-d input needs offsets (the start of each bag)")
    if offsets.ndim != 1 or offsets._data.dtype.kind not in "iu":
        raise ShapeError(f"{op}: offsets must be a 1-d integer tensor, got {tuple(offsets.shape)} {offsets.dtype}")
    starts = offsets._data[:-1] if include_last_offset else offsets._data
    n = a.shape[0]
    if starts.size and int(starts[0]) != 0:
        raise ValueError(f"{op}: offsets[0] must be 0 (the first bag starts at position 0), got {int(starts[0])}")
    if (starts.size > 1 and bool((starts[1:] < starts[:-1]).any())) or (starts.size and int(starts[-1]) > n):
        raise ValueError(f"{op}: offsets must be non-decreasing and at most the input's length {n}")
    bag = xp.searchsorted(starts, xp.arange(n), side="right") - 1
    if include_last_offset and offsets.shape[0]:  # indices past the last offset belong to no bag
        bag = xp.where(xp.arange(n) < int(offsets._data[-1]), bag, -1)
    return a, bag, int(starts.size)


def embedding_bag(input: Tensor, weight: Tensor, offsets: Tensor | None = None,  # noqa: A002
                  max_norm: float | None = None, norm_type: float = 2, scale_grad_by_freq: bool = False,
                  mode: str = "mean", sparse: bool = False, per_sample_weights: Tensor | None = None,
                  include_last_offset: bool = False, padding_idx: int | None = None) -> Tensor:
    """Sums, means or maxima of bags of embeddings: output (B, D).

    Bags are the rows of a 2-d ``input``, or slices of a 1-d ``input`` starting at ``offsets``
    (with ``include_last_offset``, ``offsets`` also holds the end of the last bag). Entries
    equal to ``padding_idx`` are left out (also from a bag's count); empty bags give zeros.
    ``per_sample_weights`` (input's shape) scale each embedding, with ``mode='sum'`` only.
    """
    op = "embedding_bag"
    _check_weight(op, weight, sparse)
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"{op}: mode must be 'sum', 'mean' or 'max', got {mode!r}")
    xp = weight.device.xp
    index = _index_array(op, input, weight)
    flat, bag, n_bags = _bags(op, input, offsets, include_last_offset, xp)
    if per_sample_weights is not None:
        if mode != "sum":
            raise ValueError(f"{op}: per_sample_weights are only supported with mode='sum', got mode={mode!r}")
        if per_sample_weights.shape != input.shape:
            raise ShapeError(f"{op}: per_sample_weights of shape {tuple(per_sample_weights.shape)}, expected "
                             f"the input's {tuple(input.shape)}")
    pad = _padding_idx(op, padding_idx, weight.shape[0])
    keep = bag >= 0
    if pad is not None:
        keep &= flat != pad
    kept = xp.nonzero(keep)[0]
    flat, bag = flat[kept], bag[kept]
    if max_norm is not None:
        _renorm_(weight, index, max_norm, norm_type)
    dev, d = weight.device, weight.shape[1]
    emb = Embedding.apply(weight, flat, None, scale_grad_by_freq)  # (K, D)
    if per_sample_weights is not None:
        emb = emb * per_sample_weights.reshape(-1)[Tensor._make(kept, dev)].unsqueeze(1)
    counts = xp.bincount(bag, minlength=n_bags)[:n_bags] if bag.size else xp.zeros(n_bags, xp.int64)
    if mode == "max":
        return _bag_max(emb, bag, counts, n_bags, xp)
    zeros = Tensor._make(xp.zeros((n_bags, d), weight._data.dtype), dev)
    out = index_add(zeros, 0, Tensor._make(bag, dev), emb)
    if mode == "mean":
        out = out / Tensor._make(xp.maximum(counts, 1).astype(weight._data.dtype)[:, None], dev)
    return out


def _bag_max(emb: Tensor, bag: Any, counts: Any, n_bags: int, xp: Any) -> Tensor:
    """Per-bag maxima: the bags laid out as a dense (B, longest, D) block padded with -inf, then amax."""
    dev, d = emb.device, emb.shape[1]
    longest = int(counts.max()) if counts.size else 0
    if longest == 0:
        return Tensor._make(xp.zeros((n_bags, d), emb._data.dtype), dev)
    starts = xp.concatenate([xp.zeros(1, xp.int64), xp.cumsum(counts)[:-1]])
    pos = xp.arange(bag.shape[0]) - starts[bag]  # position of each entry inside its bag (bags are contiguous)
    slots = xp.full(n_bags * longest, bag.shape[0], xp.int64)  # the sentinel row: -inf
    slots[bag * longest + pos] = xp.arange(bag.shape[0])
    filler = Tensor._make(xp.full((1, d), -math.inf, emb._data.dtype), dev)
    dense = cat([emb, filler], 0)[Tensor._make(slots, dev)].reshape(n_bags, longest, d)
    best = dense.amax(1)
    empty = Tensor._make((counts == 0)[:, None], dev)
    return where(empty, 0.0, best)
