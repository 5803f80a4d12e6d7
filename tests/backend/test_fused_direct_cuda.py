"""The raw launch of fused elementwise kernels computes what CuPy's ElementwiseKernel computes, bit for bit,
and leaves every call it cannot take (strides, broadcasting, other dtypes or scalars) to CuPy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.backend.fused import elementwise

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")]

# every kind of parameter: elementwise arrays in and out, a T scalar, a fixed-type scalar, a raw array
_AXPY = elementwise("test_direct_axpy", "T x, T a, float32 s, raw int32 table", "T y, T z",
                    "y = a * x + (T)s * (T)table[i % 3]; z = y - x;")
_GATHER = elementwise("test_direct_gather", "raw T x, int64 n", "raw T out", "out[i] = x[n - 1 - i];")


def _cuda_arrays(*arrays: np.ndarray) -> list[Any]:
    import cupy as cp

    return [cp.asarray(a) for a in arrays]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_launch_equals_the_elementwise_kernel(dtype: Any) -> None:
    import cupy as cp

    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 29)).astype(dtype)
    table = np.array([1, -2, 3], np.int32)
    xd, td = _cuda_arrays(x, table)
    args = (xd, dtype(1.5), np.float32(0.25), td)
    y1, z1, y2, z2 = (cp.empty(x.shape, dtype) for _ in range(4))
    _AXPY(*args, y1, z1)
    assert _AXPY._direct, "the call should have taken the raw launch"
    _AXPY._compiled(*args, y2, z2)  # CuPy's ElementwiseKernel, the reference
    assert cp.array_equal(y1, y2) and cp.array_equal(z1, z2)
    want = 1.5 * x + np.float32(0.25) * table[np.arange(x.size) % 3].reshape(x.shape)
    np.testing.assert_allclose(cp.asnumpy(y1), want, rtol=1e-6)


def test_size_mode_with_raw_arrays() -> None:
    import cupy as cp

    x = cp.arange(10, dtype=cp.float64)
    out = cp.full(10, -1.0)
    _GATHER(x, np.int64(10), out, size=10)
    assert cp.array_equal(out, x[::-1])


@pytest.mark.parametrize("case", ["strided", "broadcast", "python scalar", "float16", "python int"])
def test_calls_the_raw_launch_cannot_take_go_to_cupy(case: str) -> None:
    import cupy as cp

    k = elementwise(f"test_direct_fallback_{case.replace(' ', '_')}", "T x, T a, int32 n", "T y", "y = a * x + (T)n;")
    dtype = np.float16 if case == "float16" else np.float32
    x = cp.asarray(np.random.default_rng(1).standard_normal((6, 8)).astype(dtype))
    a: Any = dtype(2.0)
    n: Any = np.int32(3)
    y = cp.empty((6, 8), dtype)
    if case == "strided":
        x = cp.asarray(np.random.default_rng(1).standard_normal((8, 6)).astype(dtype)).T
    elif case == "broadcast":
        x = x[:1]
    elif case == "python scalar":
        a = 2.0
    elif case == "python int":
        n = 3
    k(x, a, n, y)
    assert not k._direct
    want = 2.0 * np.broadcast_to(cp.asnumpy(x).astype(np.float64), (6, 8)) + 3.0
    np.testing.assert_allclose(cp.asnumpy(y).astype(np.float64), want, rtol=2e-3 if case == "float16" else 1e-6)
