"""Linear-algebra primitives: inverse, solve, determinant, log|det|, Cholesky, singular values.

These are primitives (not compositions) because LAPACK/cuSOLVER factorizations
have no stable expression in elementwise ops. Each backward is written with
Tensor ops (mostly these same primitives), so second derivatives work, except
for ``Svdvals`` whose backward needs the singular vectors (first order only).
Inputs are ``(..., n, n)`` arrays (``(..., m, n)`` for ``Svdvals``); float16
and bfloat16 are computed in float32, since LAPACK has no half precision.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...errors import AxonmlError, ShapeError
from ..custom_function import Function, once_differentiable
from ..function import Primitive
from ..tensor import Tensor


class LinAlgError(AxonmlError, RuntimeError):
    """A matrix that the operation cannot handle: singular, or not positive definite."""


# ----- helpers on raw arrays ---------------------------------------------------------
def _square(op: str, a: Any) -> int:
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"{op}: expected a batch of square matrices (..., n, n), got shape {tuple(a.shape)}")
    return int(a.shape[-1])


def _work(a: Any) -> Any:
    """``a`` in a dtype LAPACK accepts (half precision is computed in float32)."""
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float32)


def _finite_or_raise(xp: Any, a: Any, out: Any, msg: str) -> None:
    # cuSOLVER reports failure only through NaN/inf results; NumPy raises itself.
    if out.size and not bool(xp.isfinite(out).all()) and bool(xp.isfinite(a).all()):
        raise LinAlgError(msg)


def _lapack(xp: Any, fn: str, op: str, *arrays: Any, msg: str) -> Any:
    """``xp.linalg.<fn>(*arrays)`` in the dtype of the last array; LinAlgError ``msg`` where it fails."""
    try:
        out = getattr(xp.linalg, fn)(*(_work(a) for a in arrays))
    except np.linalg.LinAlgError:
        raise LinAlgError(f"{op}: {msg}") from None
    _finite_or_raise(xp, arrays[0], out, f"{op}: {msg}")
    return out.astype(arrays[-1].dtype, copy=False)


def _lapack_square(xp: Any, fn: str, op: str, a: Any, msg: str) -> Any:
    """``_lapack`` for one batch of square matrices and a result of the same shape."""
    _square(op, a)
    return a.copy() if a.size == 0 else _lapack(xp, fn, op, a, msg=msg)


def _eye_like(t: Tensor, n: int) -> Tensor:
    return Tensor._make(t._device.xp.eye(n, dtype=t._data.dtype), t._device)


def _trace_prod(a: Tensor, b: Tensor) -> Tensor:
    """``tr(a @ b)`` over the last two dimensions, without forming the product."""
    return (a.mT * b).sum(dim=(-2, -1))


# ----- primitives ----------------------------------------------------------------------
class Inv(Primitive):
    """``A^{-1}``. d(A^{-1}) = -A^{-1} dA A^{-1}."""

    saves = "output"

    @staticmethod
    def forward(ctx: Any, a: Any) -> Any:
        return _lapack_square(ctx.xp, "inv", "linalg.inv", a, msg="the matrix is singular")

    def backward(self, grad: Tensor) -> Tensor:
        y = self.output.mT
        return -(y @ grad @ y)

    def jvp(self, t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        y = self.output
        return -(y @ t @ y)


class Solve(Primitive):
    """``X = A^{-1} B`` for ``A (..., n, n)`` and ``B (..., n, k)``; batch dimensions broadcast."""

    saves = "both"
    promote = True

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        n = _square("linalg.solve", a)
        if b.ndim < 2 or b.shape[-2] != n:
            raise ShapeError(f"linalg.solve: A of shape {tuple(a.shape)} and B of shape {tuple(b.shape)} do not match")
        xp = ctx.xp
        try:
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(
                f"linalg.solve: batch shapes of A {tuple(a.shape)} and B {tuple(b.shape)} do not broadcast"
            ) from None
        a = xp.broadcast_to(a, batch + a.shape[-2:])
        b = xp.broadcast_to(b, batch + b.shape[-2:])
        if a.size == 0 or b.size == 0:
            return xp.zeros(b.shape, dtype=b.dtype)
        return _lapack(xp, "solve", "linalg.solve", a, b, msg="the matrix A is singular")

    def backward(self, grad: Tensor) -> tuple[Any, Any]:
        a = self.input(0)
        gb = Solve.apply(a.mT, grad)  # A^{-T} G
        ga = -(gb @ self.output.mT) if self.next_edges[0] is not None else None
        return ga, gb if self.next_edges[1] is not None else None

    def jvp(self, ta: Tensor | None, tb: Tensor | None) -> Tensor | None:
        if ta is None and tb is None:
            return None
        rhs = tb if ta is None else (-(ta @ self.output) if tb is None else tb - ta @ self.output)
        return Solve.apply(self.input(0), rhs)


class Adjugate(Primitive):
    """``adj(A)`` (so that ``adj(A) A = det(A) I``), defined for singular ``A`` too.

    Computed from the SVD ``A = U S V^T``: ``adj(A) = det(U) det(V) V adj(S) U^T``,
    where ``adj(S)`` is diagonal with entries ``prod_{j != i} s_j``. It is the
    gradient of ``det``. Its own backward uses ``A^{-1}``, so third derivatives
    of ``det`` (second of ``adj``) need a non-singular matrix.
    """

    saves = "both"

    @staticmethod
    def forward(ctx: Any, a: Any) -> Any:
        _square("adjugate", a)
        xp = ctx.xp
        if a.size == 0:
            return a.copy()
        w = _work(a)
        u, s, vh = xp.linalg.svd(w)
        ones = xp.ones((*s.shape[:-1], 1), dtype=s.dtype)
        left = xp.cumprod(xp.concatenate([ones, s[..., :-1]], axis=-1), axis=-1)  # prod_{j<i} s_j
        right = xp.flip(xp.cumprod(xp.concatenate([ones, xp.flip(s[..., 1:], -1)], axis=-1), axis=-1), -1)
        p = left * right  # (..., n): prod_{j != i} s_j, with no division by a zero s_i
        sign = xp.linalg.det(u) * xp.linalg.det(vh)  # each is +-1 (orthogonal factors)
        out = (xp.swapaxes(vh, -1, -2) * p[..., None, :]) @ xp.swapaxes(u, -1, -2)
        out = out * xp.round(sign)[..., None, None]
        return out.astype(a.dtype, copy=False)

    def backward(self, grad: Tensor) -> Tensor:
        # adj = det A^{-1}  =>  d adj = tr(A^{-1} dA) adj - A^{-1} dA adj
        y = _inv_for_adjugate(self.input(0))
        adj = self.output
        inner = (grad * adj).sum(dim=(-2, -1), keepdim=True)
        return inner * y.mT - y.mT @ grad @ adj.mT

    def jvp(self, t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        y = _inv_for_adjugate(self.input(0))
        adj = self.output
        return _trace_prod(y, t).unsqueeze(-1).unsqueeze(-1) * adj - y @ t @ adj


def _inv_for_adjugate(a: Tensor) -> Tensor:
    try:
        return Inv.apply(a)  # type: ignore[no-any-return]
    except LinAlgError:
        raise LinAlgError(
            "the second derivative of det (derivative of the adjugate) at a singular matrix is not supported"
        ) from None


class _DetLike(Primitive):
    """A function ``f`` of square matrices, one value each, with ``df = tr(D(A) dA)``.

    Subclasses give the op's name, ``f`` (on LAPACK arrays), its value at 0x0
    matrices and ``D``; the gradient is then ``g D(A)^T``, the tangent ``tr(D(A) t)``.
    """

    saves = "inputs"
    op: ClassVar[str]
    empty_value: ClassVar[float]

    @staticmethod
    def value(xp: Any, a: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def derivative(self) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def forward(ctx: Any, a: Any) -> Any:
        _square(ctx.op, a)
        xp = ctx.xp
        if a.size == 0:
            return xp.full(a.shape[:-2], ctx.empty_value, dtype=a.dtype)
        return ctx.value(xp, _work(a)).astype(a.dtype, copy=False)

    def backward(self, grad: Tensor) -> Tensor:
        return grad.unsqueeze(-1).unsqueeze(-1) * self.derivative().mT

    def jvp(self, t: Tensor | None) -> Tensor | None:
        return None if t is None else _trace_prod(self.derivative(), t)


class Det(_DetLike):
    """``det(A)``; its gradient is ``adj(A)^T``, which stays finite for singular matrices."""

    op = "linalg.det"
    empty_value = 1.0

    @staticmethod
    def value(xp: Any, a: Any) -> Any:
        return xp.linalg.det(a)

    def derivative(self) -> Tensor:
        return Adjugate.apply(self.input(0))


class LogAbsDet(_DetLike):
    """``log|det(A)|`` straight from the LU factors: ``log(abs(det))`` over- or underflows."""

    op = "linalg.slogdet"
    empty_value = 0.0

    @staticmethod
    def value(xp: Any, a: Any) -> Any:
        return xp.linalg.slogdet(a)[1]

    def derivative(self) -> Tensor:
        return Inv.apply(self.input(0))


class Cholesky(Primitive):
    """Lower ``L`` with ``A = L L^T`` for symmetric positive-definite ``A``.

    Only the lower triangle of ``A`` is read; gradients are returned symmetric
    (as PyTorch does), i.e. for the symmetric matrix the lower triangle stands for.
    """

    saves = "output"

    @staticmethod
    def forward(ctx: Any, a: Any) -> Any:
        return _lapack_square(ctx.xp, "cholesky", "linalg.cholesky", a, msg="the matrix is not positive definite")

    def _phi_mask(self, like: Tensor) -> Tensor:
        n = like.shape[-1]
        xp = like._device.xp
        mask = xp.tril(xp.ones((n, n), dtype=like._data.dtype)) - 0.5 * xp.eye(n, dtype=like._data.dtype)
        return Tensor._make(mask, like._device)  # lower triangle, halved diagonal

    def backward(self, grad: Tensor) -> Tensor:
        # gA = L^{-T} Phi(L^T G) L^{-1}, then symmetrized
        low = self.output
        p = (low.mT @ grad) * self._phi_mask(low)
        s = Solve.apply(low.mT, Solve.apply(low.mT, p).mT).mT
        return (s + s.mT) * 0.5

    def jvp(self, t: Tensor | None) -> Tensor | None:
        # dL = L Phi(L^{-1} sym(dA) L^{-T})
        if t is None:
            return None
        low = self.output
        sym = (t + t.mT) * 0.5
        c = Solve.apply(low, Solve.apply(low, sym).mT)
        return low @ (c * self._phi_mask(low))


class Svdvals(Function):
    """Singular values (descending) of ``(..., m, n)``; first-order gradient ``U diag(g) V^T``.

    A Function rather than a Primitive: its backward needs the singular
    vectors, which no single-output primitive can differentiate, so a second
    derivative raises instead of silently being wrong.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor) -> Tensor:  # type: ignore[override]
        xp = a._device.xp
        data = a._data
        if data.ndim < 2:
            raise ShapeError(f"linalg.svdvals: expected a batch of matrices (..., m, n), got shape {a.shape}")
        k = min(data.shape[-2:])
        ctx.shape = data.shape
        if data.size == 0:
            ctx.u = ctx.vh = None
            s = xp.zeros((*data.shape[:-2], k), dtype=data.dtype)
            return Tensor._make(s, a._device)
        u, s, vh = xp.linalg.svd(_work(data), full_matrices=False)
        ctx.u = Tensor._make(u.astype(data.dtype, copy=False), a._device)
        ctx.vh = Tensor._make(vh.astype(data.dtype, copy=False), a._device)
        return Tensor._make(s.astype(data.dtype, copy=False), a._device)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        if ctx.u is None:
            return Tensor._make(grad._device.xp.zeros(ctx.shape, dtype=grad._data.dtype), grad._device)
        return (ctx.u * grad.unsqueeze(-2)) @ ctx.vh  # type: ignore[no-any-return]

    @staticmethod
    def jvp(ctx: Any, t: Tensor | None) -> Tensor | None:  # type: ignore[override]
        if t is None or ctx.u is None:
            return None
        return (ctx.u * (t @ ctx.vh.mT)).sum(dim=-2)  # type: ignore[no-any-return]
