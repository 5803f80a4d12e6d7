"""``axonml.linalg``: norms, inverse, solve, determinant, Cholesky (all differentiable), as ``torch.linalg``.

Second derivatives work everywhere except through ``svdvals`` (and the matrix
norms 2, -2 and 'nuc' built on it), which are differentiable once, and the
second derivative of ``det`` at a singular matrix.
"""

from __future__ import annotations

from .core.methods import matmul
from .ops.linalg_ops import (
    LinAlgError,
    SlogdetResult,
    cholesky,
    det,
    inv,
    matrix_norm,
    slogdet,
    solve,
    svdvals,
    vector_norm,
)
from .ops.linalg_ops import linalg_norm as norm

__all__ = [
    "LinAlgError", "SlogdetResult", "cholesky", "det", "inv", "matmul", "matrix_norm", "norm", "slogdet",
    "solve", "svdvals", "vector_norm",
]
