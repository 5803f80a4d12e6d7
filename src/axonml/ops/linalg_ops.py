"""Composed linear algebra: matrix products with PyTorch's shape rules, einsum, norms,
and the wrappers behind ``axonml.linalg`` (inverse, solve, determinants, Cholesky).

Products and einsum are built from movement ops, mul, sum and matmul, so they
need no backward code and are differentiable to any order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..core.methods import matmul, norm_dims, where
from ..core.prims import linalg as L
from ..core.tensor import Tensor, _wrap_dim
from ..errors import DTypeError, ShapeError

__all__ = [
    "mm", "bmm", "mv", "dot", "outer", "inner", "einsum",
    "det", "inverse", "logdet", "slogdet", "norm",
]


def _tensors(op: str, *ts: Any) -> None:
    for t in ts:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected Tensor arguments, got {type(t).__name__}")


def _floats(op: str, *ts: Any) -> None:
    _tensors(op, *ts)
    for t in ts:
        if not t.is_floating_point():
            raise DTypeError(f"{op}: expected a floating point tensor, got {t.dtype}")


# ----- products -------------------------------------------------------------------------
def _operands(op: str, a: Any, b: Any, ndims: tuple[int, int], expected: str) -> None:
    """Both are Tensors with ``ndims`` dimensions (``expected`` says so in words)."""
    _tensors(op, a, b)
    if (a.ndim, b.ndim) != ndims:
        raise ShapeError(f"{op}: expected {expected}, got shapes {a.shape} and {b.shape}")


def _product(op: str, a: Any, b: Any, ndims: tuple[int, int], expected: str) -> Tensor:
    """``a @ b`` for the products of fixed ranks, which (as in PyTorch) do not broadcast."""
    _operands(op, a, b, ndims, expected)
    k = b.shape[-2] if b.ndim > 1 else b.shape[-1]  # the contracted size of b
    if a.shape[-1] != k or a.shape[:-2] != b.shape[:-2]:
        raise ShapeError(f"{op}: shapes {a.shape} and {b.shape} cannot be multiplied")
    return matmul(a, b)


def mm(input: Tensor, mat2: Tensor) -> Tensor:  # noqa: A002 - PyTorch's name
    """Matrix product of two 2-D tensors ``(n, k) @ (k, m) -> (n, m)``; no broadcasting."""
    return _product("mm", input, mat2, (2, 2), "2-D tensors")


def bmm(input: Tensor, mat2: Tensor) -> Tensor:  # noqa: A002
    """Batched matrix product ``(b, n, k) @ (b, k, m) -> (b, n, m)``; batch sizes must be equal."""
    return _product("bmm", input, mat2, (3, 3), "3-D tensors")


def mv(input: Tensor, vec: Tensor) -> Tensor:  # noqa: A002
    """Matrix-vector product ``(n, k) @ (k,) -> (n,)``."""
    return _product("mv", input, vec, (2, 1), "a 2-D matrix and a 1-D vector")


def dot(input: Tensor, tensor: Tensor) -> Tensor:  # noqa: A002
    """Inner product of two 1-D tensors of the same length (a 0-d result)."""
    return _product("dot", input, tensor, (1, 1), "1-D tensors")


def outer(input: Tensor, vec2: Tensor) -> Tensor:  # noqa: A002
    """Outer product of two 1-D tensors ``(n,), (m,) -> (n, m)``."""
    _operands("outer", input, vec2, (1, 1), "1-D tensors")
    return input.unsqueeze(1) * vec2


def inner(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """Sum over the last dimension of both: result shape ``input.shape[:-1] + other.shape[:-1]``."""
    _tensors("inner", input, other)
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    k = input.shape[-1]
    if other.shape[-1] != k:
        raise ShapeError(f"inner: last dimensions of {input.shape} and {other.shape} differ")
    a = input.reshape(math.prod(input.shape[:-1]), k)  # (P, k)
    b = other.reshape(math.prod(other.shape[:-1]), k)  # (Q, k)
    return matmul(a, b.mT).reshape(input.shape[:-1] + other.shape[:-1])


# ----- einsum ---------------------------------------------------------------------------
# A label is a letter (str) or, for the dimensions an ellipsis stands for, an int:
# 0 .. m-1 from the left of the broadcast ellipsis shape, aligned to the right.
Label = str | int


def _parse_term(term: str, equation: str) -> tuple[list[str], bool, list[str]]:
    pre, ell, post = term.partition("...")
    for c in pre + post:
        if not (c.isascii() and c.isalpha()):
            raise ValueError(f"einsum: invalid subscript {c!r} in equation {equation!r} (use letters and '...')")
    return list(pre), bool(ell), list(post)


def _diagonals(t: Tensor, labels: list[Label]) -> tuple[Tensor, list[Label]]:
    """Take the diagonal over every label repeated within one operand ('ii->i')."""
    while len(set(labels)) != len(labels):
        lab = next(x for x in labels if labels.count(x) > 1)
        pos = [i for i, x in enumerate(labels) if x == lab]
        rest = [i for i, x in enumerate(labels) if x != lab]
        sizes = {t.shape[i] for i in pos}
        if len(sizes) != 1:
            raise ShapeError(f"einsum: subscript {lab!r} is repeated with different sizes {sorted(sizes)}")
        n, k = sizes.pop(), len(pos)
        xp = t._device.xp
        delta = xp.zeros((n,) * k, dtype=t._data.dtype)  # 1 where all k indices are equal
        delta[(xp.arange(n),) * k] = 1
        # masking and summing (not strided slicing) keeps every derivative order and forward mode simple
        t = _sum(_permute(t, rest + pos) * Tensor._make(delta, t._device), range(t.ndim - k + 1, t.ndim))
        labels = [labels[i] for i in rest] + [lab]
    return t, labels


def _permute(t: Tensor, order: Sequence[int]) -> Tensor:
    return t if list(order) == list(range(t.ndim)) else t.permute(tuple(order))


def _sum(t: Tensor, dims: Sequence[int]) -> Tensor:
    if not dims:
        return t
    if t.is_floating_point():
        return t.sum(dim=tuple(dims))
    return t.sum(dim=tuple(dims), dtype=t.dtype)  # einsum keeps integer dtypes, as in PyTorch


def _drop(t: Tensor, labels: list[Label], keep: set[Label]) -> tuple[Tensor, list[Label]]:
    """Sum out the labels not in ``keep``."""
    gone = [i for i, x in enumerate(labels) if x not in keep]
    return _sum(t, gone), [x for x in labels if x in keep]


def _contract(a: Tensor, la: list[Label], b: Tensor, lb: list[Label], keep: set[Label]) -> tuple[Tensor, list[Label]]:
    """The product of two operands, summed over their shared labels that are not kept."""
    a, la = _drop(a, la, keep | set(lb))
    b, lb = _drop(b, lb, keep | set(la))
    shared = [x for x in la if x in lb]
    contr = [x for x in shared if x not in keep]
    for x in list(contr):  # sizes n and 1 (broadcast): sum the n side, then both drop the label
        ia, ib = la.index(x), lb.index(x)
        if a.shape[ia] != b.shape[ib]:
            a = a.squeeze(ia) if a.shape[ia] == 1 else _sum(a, [ia])
            b = b.squeeze(ib) if b.shape[ib] == 1 else _sum(b, [ib])
            la, lb = la[:ia] + la[ia + 1:], lb[:ib] + lb[ib + 1:]
            contr.remove(x)
    batch = [x for x in shared if x in keep]
    aonly = [x for x in la if x not in lb]
    bonly = [x for x in lb if x not in la]
    sa = {x: a.shape[i] for i, x in enumerate(la)}
    sb = {x: b.shape[i] for i, x in enumerate(lb)}
    a_batch = tuple(sa[x] for x in batch)
    b_batch = tuple(sb[x] for x in batch)
    a_sizes = tuple(sa[x] for x in aonly)
    b_sizes = tuple(sb[x] for x in bonly)
    if not contr:  # no summation: a broadcast product
        a = _permute(a, [la.index(x) for x in batch + aonly]).reshape(a_batch + a_sizes + (1,) * len(bonly))
        b = _permute(b, [lb.index(x) for x in batch + bonly]).reshape(b_batch + (1,) * len(aonly) + b_sizes)
        return a * b, batch + aonly + bonly
    k = math.prod(sa[x] for x in contr)
    a = _permute(a, [la.index(x) for x in batch + aonly + contr]).reshape((*a_batch, math.prod(a_sizes), k))
    b = _permute(b, [lb.index(x) for x in batch + contr + bonly]).reshape((*b_batch, k, math.prod(b_sizes)))
    out = matmul(a, b)  # (batch..., M, N); batch dimensions of size 1 broadcast
    return out.reshape(out.shape[:-2] + a_sizes + b_sizes), batch + aonly + bonly


def einsum(equation: str, *operands: Any) -> Tensor:
    """Einstein summation, as ``torch.einsum``: ``einsum('bij,bjk->bik', a, b)``.

    Operands come as arguments or as one list. ``...`` stands for broadcast
    dimensions; without ``->`` the output holds the ellipsis dimensions and
    then the labels that appear once, in alphabetical order (upper case first).
    A label repeated in one operand takes its diagonal (``'ii->i'``).
    """
    if not isinstance(equation, str):
        raise TypeError(f"einsum: the equation must be a string, got {type(equation).__name__}")
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = tuple(operands[0])
    _tensors("einsum", *operands)
    eq = "".join(equation.split())
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: equation {equation!r} has {len(terms)} operand(s), got {len(operands)} tensor(s)")
    parsed = [_parse_term(term, equation) for term in terms]
    n_ell = []
    for k, ((pre, ell, post), t) in enumerate(zip(parsed, operands)):
        extra = t.ndim - len(pre) - len(post)
        if extra < 0 or (extra and not ell):
            raise ShapeError(
                f"einsum: operand {k} has {t.ndim} dimension(s) but subscripts {terms[k]!r} "
                f"{'need at least' if ell else 'name'} {len(pre) + len(post)}"
            )
        n_ell.append(extra)
    m = max(n_ell, default=0)
    labels: list[list[Label]] = [
        [*pre, *range(m - e, m), *post] for (pre, _, post), e in zip(parsed, n_ell)
    ]
    sizes: dict[Label, int] = {}
    for k, (labs, t) in enumerate(zip(labels, operands)):
        for x, n in zip(labs, t.shape):
            old = sizes.get(x, n)
            if old != n and 1 not in (old, n):
                raise ShapeError(f"einsum: subscript {x!r} has size {n} in operand {k} but {old} before")
            sizes[x] = max(old, n) if 1 in (old, n) else n
    if arrow:
        pre, ell, post = _parse_term(rhs, equation)
        out: list[Label] = [*pre, *(range(m) if ell else ()), *post]
        letters = pre + post
        if len(set(letters)) != len(letters):
            raise ValueError(f"einsum: output subscripts repeat a letter in {equation!r}")
        missing = [x for x in letters if x not in sizes]
        if missing:
            raise ValueError(f"einsum: output subscript {missing[0]!r} does not appear in the operands of {equation!r}")
    else:
        flat = [x for labs in parsed for x in labs[0] + labs[2]]
        out = [*range(m), *sorted(x for x in set(flat) if flat.count(x) == 1)]
    ops = [_diagonals(t, list(labs)) for t, labs in zip(operands, labels)]
    out_set = set(out)
    if len(ops) == 1:
        t, labs = _drop(*ops[0], out_set)
        if t is operands[0] and labs == out:
            return t.view_as(t)
    else:
        while len(ops) > 1:
            (a, la), (b, lb) = ops[0], ops[1]
            keep = out_set.union(*(set(labs) for _, labs in ops[2:]))
            ops = [_contract(a, la, b, lb, keep), *ops[2:]]
        t, labs = _drop(*ops[0], out_set)
    return _permute(t, [labs.index(x) for x in out])


# ----- inverse, solve, determinants, Cholesky ----------------------------------------------
LinAlgError = L.LinAlgError


def inv(A: Tensor) -> Tensor:  # noqa: N803 - PyTorch's name
    """Inverse of a batch of square matrices ``(..., n, n)``; raises LinAlgError if singular."""
    _floats("linalg.inv", A)
    return L.Inv.apply(A)  # type: ignore[no-any-return]


inverse = inv


def solve(A: Tensor, B: Tensor, *, left: bool = True) -> Tensor:  # noqa: N803
    """``X`` with ``A X = B`` (``X A = B`` if ``left=False``), as ``torch.linalg.solve``.

    ``B`` is a batch of vectors when it is 1-D or has shape ``A.shape[:-1]``;
    otherwise a batch of ``(n, k)`` matrices. Batch dimensions broadcast.
    """
    _floats("linalg.solve", A, B)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ShapeError(f"linalg.solve: A must be a batch of square matrices, got shape {A.shape}")
    if not left:
        return solve(A.mT, B.mT).mT
    if B.ndim == 1 or (B.ndim == A.ndim - 1 and B.shape == A.shape[:-1]):
        return L.Solve.apply(A, B.unsqueeze(-1)).squeeze(-1)  # type: ignore[no-any-return]
    return L.Solve.apply(A, B)  # type: ignore[no-any-return]


def det(A: Tensor) -> Tensor:  # noqa: N803
    """Determinant of ``(..., n, n)``; differentiable also at singular matrices (first order)."""
    _floats("linalg.det", A)
    return L.Det.apply(A)  # type: ignore[no-any-return]


class SlogdetResult(NamedTuple):
    sign: Tensor
    logabsdet: Tensor


def slogdet(A: Tensor) -> SlogdetResult:  # noqa: N803
    """``(sign, log|det|)`` of ``(..., n, n)``, without over- or underflow; the sign has no gradient."""
    _floats("linalg.slogdet", A)
    logabs = L.LogAbsDet.apply(A)
    xp = A._device.xp
    data = A._data
    if data.size == 0:
        sign = xp.ones(data.shape[:-2], dtype=data.dtype)
    else:
        sign = xp.linalg.slogdet(L._work(data))[0].astype(data.dtype, copy=False)
    return SlogdetResult(Tensor._make(sign, A._device), logabs)


def logdet(A: Tensor) -> Tensor:  # noqa: N803
    """``log(det(A))``: ``-inf`` where det is 0, NaN where it is negative (as PyTorch)."""
    sign, logabs = slogdet(A)
    return where(sign < 0, float("nan"), logabs)


def cholesky(A: Tensor, *, upper: bool = False) -> Tensor:  # noqa: N803
    """Cholesky factor of a symmetric positive-definite ``(..., n, n)``: lower ``L`` with ``A = L L^T``.

    With ``upper=True`` returns ``U = L^T`` (``A = U^T U``). The lower triangle
    of ``A`` is read; raises LinAlgError if ``A`` is not positive definite.
    """
    _floats("linalg.cholesky", A)
    low = L.Cholesky.apply(A)
    return low.mT if upper else low


def svdvals(A: Tensor) -> Tensor:  # noqa: N803
    """Singular values of ``(..., m, n)`` in descending order (first-order differentiable)."""
    _floats("linalg.svdvals", A)
    return L.Svdvals.apply(A)  # type: ignore[no-any-return]


# ----- norms ----------------------------------------------------------------------------------
def _safe_root(s: Tensor, p: float) -> Tensor:
    """``s ** (1/p)`` whose gradient is 0 (not NaN) where ``s == 0``, as PyTorch's norms."""
    pos = s.detach() > 0
    root = where(pos, s, 1.0).sqrt() if p == 2 else where(pos, s, 1.0) ** (1.0 / p)
    return where(pos, root, 0.0)


def vector_norm(x: Tensor, ord: float = 2, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:  # noqa: A002
    """``(sum |x|^ord)^(1/ord)`` over ``dim`` (all by default); ``ord`` may be inf, -inf or 0."""
    _floats("linalg.vector_norm", x)
    if isinstance(ord, str):
        raise ValueError(f"linalg.vector_norm: ord must be a number, got {ord!r}")
    if dtype is not None:
        x = x.to(dtype)
    dims = norm_dims(dim, x.ndim)
    if ord == math.inf:
        return x.abs().amax(dim=dims, keepdim=keepdim)
    if ord == -math.inf:
        return x.abs().amin(dim=dims, keepdim=keepdim)
    if ord == 0:
        return (x != 0).sum(dim=dims, keepdim=keepdim).to(x.dtype)
    if ord == 1:
        return x.abs().sum(dim=dims, keepdim=keepdim)
    if ord == 2:
        return _safe_root((x * x).sum(dim=dims, keepdim=keepdim), 2)
    s = (x.abs() ** ord).sum(dim=dims, keepdim=keepdim)
    return _safe_root(s, ord) if ord > 0 else s ** (1.0 / ord)


def matrix_norm(A: Tensor, ord: Any = "fro", dim: tuple[int, int] = (-2, -1), keepdim: bool = False,  # noqa: A002, N803
                *, dtype: Any = None) -> Tensor:
    """Matrix norm over the two dimensions ``dim``: 'fro', 'nuc', 1, -1, 2, -2, inf, -inf."""
    _floats("linalg.matrix_norm", A)
    if A.ndim < 2:
        raise ShapeError(f"linalg.matrix_norm: expected at least 2 dimensions, got shape {A.shape}")
    if dtype is not None:
        A = A.to(dtype)
    if len(dim) != 2:
        raise ShapeError(f"linalg.matrix_norm: dim must name 2 dimensions, got {dim}")
    d0, d1 = _wrap_dim(dim[0], A.ndim), _wrap_dim(dim[1], A.ndim)
    if d0 == d1:
        raise ShapeError(f"linalg.matrix_norm: dims must differ, got {dim}")
    if ord == "fro":
        return vector_norm(A, 2, (d0, d1), keepdim)
    if ord in ("nuc", 2, -2):
        rest = [i for i in range(A.ndim) if i not in (d0, d1)]
        s = svdvals(_permute(A, [*rest, d0, d1]))  # (..., k)
        r = s.sum(dim=-1) if ord == "nuc" else (s.amax(dim=-1) if ord == 2 else s.amin(dim=-1))
        return r.unsqueeze(min(d0, d1)).unsqueeze(max(d0, d1)) if keepdim else r
    if ord in (1, -1, math.inf, -math.inf):
        inner_dim, outer_dim = (d0, d1) if ord in (1, -1) else (d1, d0)  # 1: max column sum
        sums = A.abs().sum(dim=inner_dim, keepdim=True)
        r = sums.amax(dim=outer_dim, keepdim=True) if ord > 0 else sums.amin(dim=outer_dim, keepdim=True)
        return r if keepdim else r.squeeze((d0, d1))
    raise ValueError(f"linalg.matrix_norm: unsupported ord {ord!r}")


def linalg_norm(A: Tensor, ord: Any = None, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:  # noqa: A002, N803
    """``torch.linalg.norm``: a vector norm over one dimension, a matrix norm over two.

    With ``dim=None``: ``ord=None`` gives the 2-norm of all elements; otherwise
    ``A`` must be 1-D (vector norm) or 2-D (matrix norm).
    """
    _floats("linalg.norm", A)
    if dim is not None:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        if len(dims) == 1:
            return vector_norm(A, 2 if ord is None else ord, dims, keepdim, dtype=dtype)
        if len(dims) == 2:
            return matrix_norm(A, "fro" if ord is None else ord, dims, keepdim, dtype=dtype)  # type: ignore[arg-type]
        raise ShapeError(f"linalg.norm: dim must have 1 or 2 entries, got {dim}")
    if ord is None:
        return vector_norm(A, 2, None, keepdim, dtype=dtype)
    if A.ndim == 1:
        return vector_norm(A, ord, None, keepdim, dtype=dtype)
    if A.ndim == 2:
        return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
    raise ShapeError(f"linalg.norm: with ord={ord!r} and dim=None the input must be 1-D or 2-D, got {A.shape}")


def norm(input: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:  # noqa: A002
    """``torch.norm``: the ``p``-norm over ``dim`` (all elements by default); 'fro' is the 2-norm, 'nuc' nuclear."""
    if p == "nuc":
        return matrix_norm(input, "nuc", (-2, -1) if dim is None else tuple(dim), keepdim, dtype=dtype)
    if p == "fro":
        p = 2
    return vector_norm(input, p, dim, keepdim, dtype=dtype)


METHODS: dict[str, Any] = {
    "mm": mm, "bmm": bmm, "mv": mv, "dot": dot, "outer": outer, "inner": inner,
    "det": det, "inverse": inverse, "logdet": logdet, "slogdet": slogdet, "norm": norm,
}
