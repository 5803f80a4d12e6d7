"""CUDA helpers of the nn primitives against NumPy: column sums (bias and norm-weight gradients) and the
channel-major copy of a convolution's output gradient."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import axonml as ax

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2048, 256), (3, 1), (1, 40), (100, 70), (17, 33)])
def test_column_sums_match_numpy(shape: tuple[int, int], dtype: Any) -> None:
    import cupy as cp

    from axonml.nn.prims._fastpath import col_sum, split_col_sum

    a = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    got = col_sum(cp, cp.asarray(a))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cp.asnumpy(got), a.astype(np.float64).sum(0), rtol=tol, atol=tol * shape[0] ** 0.5)
    at = shape[1] // 2
    lo, hi = split_col_sum(cp, cp.asarray(a), at)
    assert lo.base is None and hi.base is None  # own buffers: each can become a .grad as it is
    np.testing.assert_allclose(cp.asnumpy(lo), a[:, :at].astype(np.float64).sum(0), rtol=tol, atol=tol * 50)
    np.testing.assert_allclose(cp.asnumpy(hi), a[:, at:].astype(np.float64).sum(0), rtol=tol, atol=tol * 50)


def test_column_sums_of_a_column_block_read_it_in_place() -> None:
    import cupy as cp

    from axonml.nn.prims._fastpath import col_sum

    a = np.random.default_rng(1).standard_normal((64, 30))
    np.testing.assert_allclose(cp.asnumpy(col_sum(cp, cp.asarray(a)[:, 10:25])), a[:, 10:25].sum(0), rtol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 7, 9), (1, 1, 1, 1), (0, 3, 2, 2)])
def test_channel_major_copy(shape: tuple[int, ...]) -> None:
    import cupy as cp

    from axonml.nn.prims._conv_cuda import channel_major

    g = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    got = channel_major(cp, cp.asarray(g))
    want = g.swapaxes(0, 1).reshape(shape[1], -1)
    assert got.shape == want.shape
    np.testing.assert_array_equal(cp.asnumpy(got), want)
