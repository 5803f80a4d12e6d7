"""A convolution's CUDA work worked out once: its forward and both gradients as bare launches.

For a one-group float32/float64 convolution on CUDA, the general path (``conv.py``'s forward and the
two adjoint primitives its backward calls) re-derives at every call what depends only on the shapes:
the column plan, the operands' layouts for cuBLAS, the kernels' argument signatures and grids. Timed
inside a ResNet-18 training step on an H100 host, that came to about half of a convolution's host
time (a backward took ~206 us, of which its five launches and two GEMMs are ~90). A :class:`Recipe`
holds all of it; a call allocates its results and launches. The kernels and GEMMs are the general
path's own, called the same way, so the results are the same bits (tests compare the two).

GEMMs are column-major (``backend.blas``): a row-major (r, c) matrix is its own transpose there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...backend.fused import grid
from ...backend.helpers import OP_N, OP_T, blas
from . import _conv_cuda
from ._conv_plan import _Plan

_ALL_ARRAYS3 = 0b111  # im2col (x, g, col) and col2im (dcol, g, dx): every argument an array
_CHANNEL_MAJOR_ARRAYS = 0b10001  # channel_major (g, nb, nc, ns, out): the first and last


class Recipe:
    """``Conv``'s CUDA launches for one geometry, input channel count, dtype and device (see the module
    docstring); ``forward`` and ``backward`` take and return CuPy arrays."""

    def __init__(self, xp: Any, plan: _Plan, channels: int, out_channels: int, dtype: Any) -> None:
        self.xp = xp
        self.dtype = dtype = np.dtype(dtype)
        B, C, Co = plan.B, channels, out_channels
        L = math.prod(plan.O)
        CK, M = C * plan.nk, B * L
        self.B, self.C, self.Co, self.L, self.CK, self.M = B, C, Co, L, CK, M
        self.x_shape, self.y_shape = (B, C, *plan.S), (B, Co, *plan.O)
        self.w_shape = (Co, C, *plan.K)
        self.pointwise = plan.pointwise
        self.geometry = plan._geometry(xp, C)
        index = "i32" if CK * M < 2**31 and B * C * math.prod(plan.S) < 2**31 else "i64"
        char = dtype.char
        acc = "double" if char == "d" else "float"
        self.im2col = _conv_cuda._im2col_kernel(index).launcher(char, _ALL_ARRAYS3)
        self.col2im = _conv_cuda._col2im_kernel(index, acc).launcher(char, _ALL_ARRAYS3)
        self.channel_major = _conv_cuda._CHANNEL_MAJOR.launcher(char, _CHANNEL_MAJOR_ARRAYS)
        # each launch's (grid, block) and element count, as its last argument
        self.cols_launch = (*grid(C * M), np.int64(C * M))
        self.dx_launch = (*grid(B * C * math.prod(plan.S)), np.int64(B * C * math.prod(plan.S)))
        self.gmat_launch = (*grid(Co * M), np.int64(Co * M))
        self.gmat_sizes = (np.int64(B), np.int64(Co), np.int64(L))

    def _cols(self, x: Any) -> Any:
        """im2col of a C-contiguous input: (C * prod(K), B * prod(O))."""
        col = self.xp.ndarray((self.CK, self.M), self.dtype)
        grid_, block, n = self.cols_launch
        self.im2col(grid_, block, (x, self.geometry, col, n))
        return col

    def forward(self, x: Any, w: Any, b: Any) -> Any:
        """``conv(x, w) + b``: one GEMM per sample (batched in one call) writing the (B, Co, *O) output in place,
        over the im2col columns or, for a pointwise convolution, over the input itself."""
        xp, dt = self.xp, self.dtype
        x = x if x.flags.c_contiguous else xp.ascontiguousarray(x)
        w = w if w.flags.c_contiguous else xp.ascontiguousarray(w)
        y = xp.ndarray(self.y_shape, dt)
        L, Co, B = self.L, self.Co, self.B
        if self.pointwise:  # y[b] = W @ x[b]
            blas(xp).gemm(dt, OP_N, OP_N, L, Co, self.C, x, L, self.C * L, w, self.C, 0, y, B)
        else:  # y[b] = W @ columns[b], the columns of sample b a block of L of each row
            blas(xp).gemm(dt, OP_N, OP_N, L, Co, self.CK, self._cols(x), self.M, L, w, self.CK, 0, y, B)
        if b is not None:
            y += b.reshape((1, Co) + (1,) * (len(self.y_shape) - 2))
        return y

    def backward(self, g: Any, x: Any, w: Any, need_x: bool, need_w: bool) -> tuple[Any, Any]:
        """(input gradient, weight gradient) for the output gradient ``g``; None for one not needed."""
        xp, dt = self.xp, self.dtype
        g = g if g.flags.c_contiguous else xp.ascontiguousarray(g)
        w = w if w.flags.c_contiguous else xp.ascontiguousarray(w)
        L, Co, C, CK, M = self.L, self.Co, self.C, self.CK, self.M
        gm = None
        if need_w or not self.pointwise:  # g as a (Co, B * L) matrix, the columns' layout
            gm = xp.ndarray((Co, M), dt)
            grid_, block, n = self.gmat_launch
            self.channel_major(grid_, block, (g, *self.gmat_sizes, gm, n))
        gx = gw = None
        if need_x:
            gx = xp.ndarray(self.x_shape, dt)
            if self.pointwise:  # gx[b] = W^T @ g[b]
                blas(xp).gemm(dt, OP_N, OP_T, L, C, Co, g, L, Co * L, w, C, 0, gx, self.B)
            else:  # columns' gradient W^T @ gm, summed back onto the input
                dcol = xp.ndarray((CK, M), dt)
                blas(xp).gemm(dt, OP_N, OP_T, M, CK, Co, gm, M, 0, w, CK, 0, dcol, 1)
                grid_, block, n = self.dx_launch
                self.col2im(grid_, block, (dcol, self.geometry, gx, n))
        if need_w:  # gm @ columns^T
            x = x if x.flags.c_contiguous else xp.ascontiguousarray(x)
            gw = xp.ndarray(self.w_shape, dt)
            blas(xp).gemm(dt, OP_T, OP_N, CK, Co, M, self._cols(x), M, 0, gm, M, 0, gw, 1)
        return gx, gw
