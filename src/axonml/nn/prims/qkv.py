"""Self-attention's packed in-projection as one op: ``x @ W^T + b`` split into the q, k and v heads.

When query, key and value are one tensor (self-attention) and the weight is the packed (3E, E)
``in_proj_weight``, PyTorch makes one GEMM. Composed, axonml made three GEMMs on row blocks of
the weight, three bias adds and three head splits, and the backward scattered each block's
gradient into a zero (3E, E) buffer and summed the three (~36 launches on a GPU, ~15 nodes).
Here the forward is one GEMM and one copy that lays the result out as contiguous
(3, N, H, L, hd) heads, which the attention's batched GEMMs read without further copies; the
backward is one copy per head block, two GEMMs and one matrix-vector product.

A batch-first input ((L, N, E) view of a contiguous (N, L, E) tensor) is projected in its own
(N, L) row order, so it is never copied into (L, N) order first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import matmul
from ...core.custom_function import Function
from ...core.grad_mode import GRAD_ENABLED
from ...core.tensor import Tensor
from ...ops.shape import stack
from ._fastpath import col_sum

# (rows a, rows b, 3, H, hd) <-> (3, N, H, L, hd): for (L, N) row order and for (N, L) row order
_TO_HEADS = {False: (2, 1, 3, 0, 4), True: (2, 0, 3, 1, 4)}
_TO_ROWS = {major: tuple(int(i) for i in np.argsort(perm)) for major, perm in _TO_HEADS.items()}  # the inverses
_FROM_HEAD = {False: (2, 0, 1, 3), True: (0, 2, 1, 3)}  # one (N, H, L, hd) block -> (rows a, rows b, H, hd)


def _batch_major(x: Any) -> bool:
    """Whether a (L, N, E) array is the transposed view of a contiguous (N, L, E) one (a batch-first input)."""
    return not x.flags.c_contiguous and bool(x.transpose(1, 0, 2).flags.c_contiguous)


def _rows(xp: Any, x: Any, major: bool) -> Any:
    """x as the GEMM's rows: (N * L, E) in batch-major order (a view), else (L * N, E) (a copy only if needed)."""
    L, N, E = x.shape
    return x.transpose(1, 0, 2).reshape(N * L, E) if major else xp.ascontiguousarray(x).reshape(L * N, E)


class PackedQKV(Function):
    """``PackedQKV.apply(x, weight, bias_or_None, num_heads)`` -> (q, k, v), each (N, H, L, hd).

    x is (L, N, E); weight (3E, E); bias (3E,). The three outputs are blocks of one contiguous
    buffer, internal to attention (never handed to users, who could write into them).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor | None, num_heads: int) -> tuple[Tensor, ...]:
        xd, dev = x._data, x._device
        xp = dev.xp
        L, N, E = xd.shape
        major = _batch_major(xd)
        a, c = (N, L) if major else (L, N)
        y = matmul(xp, _rows(xp, xd, major), w._data.T)
        if b is not None:
            y += b._data
        heads = xp.ascontiguousarray(y.reshape(a, c, 3, num_heads, E // num_heads).transpose(_TO_HEADS[major]))
        ctx.major, ctx.has_bias = major, b is not None
        ctx.save_for_backward(x, w)
        return tuple(Tensor._make(heads[i], dev) for i in range(3))

    @staticmethod
    def backward(ctx: Any, gq: Tensor, gk: Tensor, gv: Tensor) -> tuple[Any, ...]:
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        L, N, E = x.shape
        major = ctx.major
        a, c = (N, L) if major else (L, N)
        if GRAD_ENABLED.get():  # create_graph: the same formula in Tensor ops, so it can be differentiated again
            g2 = stack([gq, gk, gv]).permute(*_TO_ROWS[major]).reshape(a * c, 3 * E)
            xr = x.transpose(0, 1).reshape(N * L, E) if major else x.reshape(L * N, E)
            gx = _rows_to_x((g2 @ w).reshape(a, c, E), major) if need_x else None
            return gx, (g2.mT @ xr if need_w else None), (g2.sum(0) if need_b and ctx.has_bias else None), None
        xp, dev = x._device.xp, x._device
        g5 = xp.empty((a, c, 3, gq.shape[1], gq.shape[3]), gq._data.dtype)
        for i, gi in enumerate((gq, gk, gv)):
            g5[:, :, i] = gi._data.transpose(_FROM_HEAD[major])
        g2 = g5.reshape(a * c, 3 * E)
        gx = gw = gb = None
        if need_x:
            gx = _rows_to_x(Tensor._make(matmul(xp, g2, w._data).reshape(a, c, E), dev), major)
        if need_w:
            gw = Tensor._make(matmul(xp, g2.T, _rows(xp, x._data, major)), dev)
        if need_b and ctx.has_bias:
            gb = Tensor._make(col_sum(xp, g2), dev)
        return gx, gw, gb, None


def _rows_to_x(g: Tensor, major: bool) -> Tensor:
    """A gradient in row order (a, c, E) as x's (L, N, E): a transposed view for batch-major rows."""
    return g.transpose(0, 1) if major else g

