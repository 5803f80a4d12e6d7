"""Fused loss primitives: cross entropy against class indices, and the squared error's sum.

Primitives because composed they are long chains of small recorded ops, each a Python
dispatch and a pass over memory. Cross entropy composed (log_softmax, then nll_loss's
gather, weight and mean) is ~15 ops forward and ~13 backward for a (N, C) input: on the
MLP benchmark (N=128, C=10) that chain cost ~5x PyTorch's whole loss; here the forward
is a handful of array calls and the backward two passes, ``(softmax - onehot) * coef``.
The squared error (``mse_loss``) composed makes 3 passes forward and ~4 backward over
its input; here 2 and 1. Each backward formula also exists in Tensor ops (used under
``create_graph=True`` or with forward-mode tangents), so higher derivatives work. Only
the common cases come here (see ``cross_entropy`` and ``mse_loss``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ...backend import checks, matmul
from ...backend.fused import elementwise, fusable
from ...backend.graphs import current_capture
from ...core.function import Primitive
from ...core.tensor import Tensor
from ...errors import IndexingError
from ...ops import math as _math
from . import _loss_cuda
from ._fastpath import arrays_only

# Up to this many classes the rows are short, and NumPy reduces a (N, C) array along C at
# ~100 ns a row: the forward works on the (C, N) transpose instead, reducing along axis 0
# in long vectorized passes (the transposing copy is cheap at this size; 2x on N=128, C=10).
_CLASSES_FIRST_MAX = 64


def fused_targets(t: Any, n_classes: int, ignore_index: int, dtype: Any) -> tuple[Any, Any]:
    """(class indices, None or float weights 0 at ignored targets) of a target array for ``CrossEntropy``.

    Raises the IndexingError of ``cross_entropy`` for a target out of range.
    """
    valid = t != ignore_index
    w = None
    if not valid.all():
        w = valid.astype(dtype).reshape(-1)  # (N,)
        t = np.where(valid, t, 0)
    if t.size:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= n_classes:
            raise IndexingError(f"cross_entropy: target {lo if lo < 0 else hi} is out of bounds for "
                                f"{n_classes} classes")
    return t, w


class CrossEntropy(Primitive):
    """``-log_softmax(x)[target]`` per row, reduced; x (N, C) or (C,), integer targets.

    Called as ``CrossEntropy.apply(x, targets, weights, reduction)``: ``targets`` the class
    indices (an array of the target's shape, checked to be in range, ignored ones set to
    any valid class) and ``weights`` None, or a float array (N,) that is 0 where the target
    is ignored and 1 elsewhere.
    """

    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, x: Any, targets: Any, w: Any, reduction: str) -> Any:
        xp = ctx.xp
        n_cls = x.shape[-1]
        x2 = x.reshape(-1, n_cls)  # (N, C)
        n = x2.shape[0]
        first = n_cls <= _CLASSES_FIRST_MAX
        a = xp.ascontiguousarray(x2.T) if first else x2  # (C, N) or (N, C)
        ax = 0 if first else 1
        m = a.max(ax)  # (N,)
        if not xp.isfinite(m).all():
            m = xp.where(xp.isinf(m), 0, m).astype(x.dtype)  # as log_softmax: no inf - inf
        z = a - (m if first else m[:, None])  # the shifted logits
        e = xp.exp(z)
        s = e.sum(ax)  # (N,)
        rows = xp.arange(n)
        t = targets.reshape(-1)
        loss = xp.log(s) - (z[t, rows] if first else z[rows, t])  # (N,): -log p[target]
        if w is not None:
            loss *= w
        if reduction == "mean":
            out = loss.sum() / (w.sum() if w is not None else x.dtype.type(n))
        elif reduction == "sum":
            out = loss.sum()
        else:
            out = loss.reshape(targets.shape)
        e /= s if first else s[:, None]  # the softmax: all the backward needs
        ctx._saved = (e, rows, t)
        ctx.reduction, ctx.classes_first = reduction, first
        return out

    def _targets(self) -> tuple[Any, Any, Any]:
        """(row indices (N,), class indices (N,) with ignored ones set to a valid class, None or 0/1 weights (N,))."""
        return self._saved[1], self._saved[2], self._inputs[2]

    def _coef(self, g: Any) -> Any:
        """d loss / d(-log p[target]) per row (N,): the incoming gradient, spread and weighted."""
        _, _, w = self._targets()
        n = self._saved[1].shape[0]
        if self.reduction == "mean":
            c = g / (w.sum() if w is not None else g.dtype.type(n))
            c = self.xp.full(n, c, g.dtype) if w is None else w * c
        elif self.reduction == "sum":
            c = self.xp.full(n, g, g.dtype) if w is None else w * g
        else:
            c = g.reshape(-1) if w is None else w * g.reshape(-1)
        return c

    def backward(self, grad: Tensor) -> tuple[Any, None, None, None]:  # type: ignore[override]
        if self.next_edges[0] is None:
            return None, None, None, None
        if not arrays_only():
            return self._graph_backward(grad), None, None, None
        p, rows, t = self._saved
        xp = self.xp
        c = self._coef(grad._data)  # (N,)
        gx = xp.empty((rows.shape[0], p.shape[1 - self.classes_first]), p.dtype)  # (N, C)
        xp.multiply(p.T if self.classes_first else p, c[:, None], out=gx)
        gx[rows, t] -= c
        return Tensor._make(gx.reshape(self.input_meta[0][0]), self.device), None, None, None

    def _graph_backward(self, grad: Tensor) -> Tensor:
        """The same gradient in Tensor ops, recording a graph (higher derivatives, forward mode)."""
        x = self.input(0)
        rows, t, w = self._targets()
        n_cls = x.shape[-1]
        onehot = self.xp.zeros((rows.shape[0], n_cls), x._data.dtype)
        onehot[rows, t] = 1
        prob = _math.log_softmax(x.reshape(-1, n_cls), -1).exp()
        c = self._spread(grad.reshape(-1) if self.reduction == "none" else grad, rows.shape[0])
        if w is not None:
            c = c * Tensor._make(w, self.device)
        gx = (prob - Tensor._make(onehot, self.device)) * c.reshape(-1, 1)
        return gx.reshape(x.shape)

    def _spread(self, g: Tensor, n: int) -> Tensor:
        """The reduction's backward: ``g`` for each of the ``n`` rows (divided by the count for 'mean')."""
        if self.reduction == "none":
            return g
        _, _, w = self._targets()
        if self.reduction == "mean":
            count = w.sum() if w is not None else n
            g = g / Tensor._make(self.xp.asarray(count, g._data.dtype), self.device)
        return g.reshape(1).expand(n)

    def jvp(self, tx: Any, *_: Any) -> Any:
        if tx is None:
            return None
        x = self.input(0)
        rows, t, w = self._targets()
        n_cls = x.shape[-1]
        prob = _math.log_softmax(x.reshape(-1, n_cls), -1).exp()
        t2 = tx.reshape(-1, n_cls)
        idx = Tensor._make(t.reshape(-1, 1), self.device)
        d = (prob * t2).sum(-1) - t2.gather(1, idx).reshape(-1)  # (N,): d(-log p[target])
        if w is not None:
            d = d * Tensor._make(w, self.device)
        if self.reduction == "mean":
            count = w.sum() if w is not None else rows.shape[0]
            return d.sum() / Tensor._make(self.xp.asarray(count, d._data.dtype), self.device)
        if self.reduction == "sum":
            return d.sum()
        return d.reshape(self._inputs[1].shape)


def _check_target_range(classes: int, span: np.ndarray) -> None:
    """Raise for a (lowest, highest) target not ignored outside ``[0, classes)`` (lowest > highest: none)."""
    lo, hi = int(span[0]), int(span[1])
    if lo <= hi and (lo < 0 or hi >= classes):
        raise IndexingError(f"cross_entropy: target {lo if lo < 0 else hi} is out of bounds for {classes} classes")


class CrossEntropyCuda(CrossEntropy):
    """``CrossEntropy`` on CUDA in three launches (``_loss_cuda``).

    Called as ``CrossEntropyCuda.apply(x, targets, ignore_index, reduction)`` with x (N, C) or (C,)
    float32/float64 and the integer targets as given: the kernels skip ignored targets and find
    the range of the others, which is checked without stalling the host (``backend.checks``: at
    the end of the backward if the values have arrived, else at the next read of a value or the
    next call; not inside a CUDA graph capture, which cannot read values). Rows with a bad target
    read no logit at it.
    """

    @staticmethod
    def forward(ctx: Any, x: Any, targets: Any, ignore_index: int, reduction: str) -> Any:
        xp = ctx.xp
        x2 = xp.ascontiguousarray(x.reshape(-1, x.shape[-1]))
        t = xp.ascontiguousarray(targets.reshape(-1).astype(np.int64, copy=False))
        checks.run_pending()  # an earlier call's targets first (their values arrived long ago)
        loss, prob, count, span = _loss_cuda.forward(xp, x2, t, ignore_index, reduction)
        if current_capture() is None:  # a capture cannot read values: its replays go unchecked
            checks.defer(xp, span, functools.partial(_check_target_range, x2.shape[1]))
        ctx._saved = (prob, t, count)
        ctx.reduction, ctx.ignore_index = reduction, ignore_index
        return loss.reshape(targets.shape) if reduction == "none" else loss

    def _targets(self) -> tuple[Any, Any, Any]:
        _, t, _ = self._saved
        valid = t != self.ignore_index
        return self.xp.arange(t.shape[0]), self.xp.where(valid, t, 0), valid.astype(self._saved[0].dtype)

    def backward(self, grad: Tensor) -> tuple[Any, None, None, None]:  # type: ignore[override]
        if self.next_edges[0] is None:
            return None, None, None, None
        if not arrays_only():
            return self._graph_backward(grad), None, None, None
        prob, t, count = self._saved
        g = grad._data.astype(prob.dtype, copy=False)
        gx = _loss_cuda.backward(self.xp, prob, t, self.ignore_index, g, count, self.reduction)
        return Tensor._make(gx.reshape(self.input_meta[0][0]), self.device), None, None, None


# MSE's difference and gradient in raw launches (CuPy's ufuncs spend several times their host time); the
# gradient rounds as ``d * (g * c)`` did: the 0-d loss gradient times the constant, then times d
_DIFFERENCE = elementwise("axonml_difference", "T x, T y", "T d", "d = x - y;")
_SQUARED_ERROR_GRAD = elementwise("axonml_squared_error_grad", "raw T g, T c, T d", "T gd", "gd = d * (g[0] * c);")


class SquaredError(Primitive):
    """``sum((x - y)**2)``, divided by the element count for ``reduction='mean'``; x, y of one shape and dtype.

    Called as ``SquaredError.apply(x, y, reduction)`` with reduction 'mean' or 'sum'.
    """

    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, x: Any, y: Any, reduction: str) -> Any:
        xp = ctx.xp
        if xp is not np and type(x) is type(y) and fusable(ctx.device, x, y):
            d = xp.ndarray(x.shape, x.dtype)
            _DIFFERENCE.over(x, y, d)
        else:
            d = x - y
        flat = d.reshape(-1)
        total = matmul(ctx.xp, flat, flat)  # the sum of squares in one pass (a BLAS dot), no (x - y)**2 temporary
        ctx._saved = d
        ctx.reduction = reduction
        return total / x.dtype.type(d.size) if reduction == "mean" else total

    def _scale(self) -> float:
        """d loss / d(d**2) per element."""
        return 1.0 / self._saved.size if self.reduction == "mean" else 1.0

    def backward(self, grad: Tensor) -> tuple[Any, Any, None]:  # type: ignore[override]
        ex, ey = self.next_edges[:2]
        if not arrays_only():
            x, y = self.inputs[:2]
            gd = (x - y) * (grad * (2.0 * self._scale()))
            return (gd if ex is not None else None), (-gd if ey is not None else None), None
        d, g = self._saved, grad._data
        c = d.dtype.type(2.0 * self._scale())
        if self.xp is not np and g.size == 1 and fusable(self.device, d) and g.dtype == d.dtype:
            gd = self.xp.ndarray(d.shape, d.dtype)
            _SQUARED_ERROR_GRAD(g, c, d, gd)
        else:
            gd = d * (g * c)  # one pass: d * (2 g / n)
        gx = Tensor._make(gd, self.device) if ex is not None else None
        gy = Tensor._make(-gd, self.device) if ey is not None else None
        return gx, gy, None

    def jvp(self, tx: Any, ty: Any, _: Any) -> Any:
        if tx is None and ty is None:
            return None
        x, y = self.inputs[:2]
        td = tx if ty is None else (-ty if tx is None else tx - ty)
        return ((x - y) * td).sum() * (2.0 * self._scale())
