"""``backend.checks``: values computed on the GPU are checked at the next ``run_pending``, oldest first, each
once; a failing check raises there and leaves the later ones pending."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.backend import checks

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")]


def test_deferred_checks_see_the_values_in_order() -> None:
    import cupy as cp

    seen: list[Any] = []
    a = cp.arange(4, dtype=cp.int64)
    checks.defer(cp, a, lambda v: seen.append(v.tolist()))
    a += 10  # queued after the copy: the check sees the values as they were when deferred
    checks.defer(cp, a[:2].copy(), lambda v: seen.append(v.tolist()))
    assert seen == []
    checks.run_pending()
    assert seen == [[0, 1, 2, 3], [10, 11]]
    checks.run_pending()  # each runs once
    assert len(seen) == 2


def test_a_failing_check_raises_and_leaves_the_rest_pending() -> None:
    import cupy as cp

    def fail(v: np.ndarray) -> None:
        raise ValueError(f"bad {int(v[0])}")

    seen: list[int] = []
    checks.defer(cp, cp.full(1, 5), fail)
    checks.defer(cp, cp.full(1, 6), lambda v: seen.append(int(v[0])))
    with pytest.raises(ValueError, match="bad 5"):
        checks.run_pending()
    assert seen == [] and len(checks._PENDING) == 1
    checks.run_pending()
    assert seen == [6]


def test_run_ready_runs_only_what_has_arrived() -> None:
    import cupy as cp

    seen: list[int] = []
    spin = cp.RawKernel(r'''extern "C" __global__ void spin(long long n) {
        const long long t0 = clock64(); while (clock64() - t0 < n) {} }''', "spin")
    checks.defer(cp, cp.full(1, 1), lambda v: seen.append(int(v[0])))
    cp.cuda.Device().synchronize()
    spin((1,), (1,), (np.int64(200_000_000),))  # ~0.1 s of GPU time before the second copy
    checks.defer(cp, cp.full(1, 2), lambda v: seen.append(int(v[0])))
    checks.run_ready()
    assert seen == [1] and len(checks._PENDING) == 1
    checks.run_pending()
    assert seen == [1, 2]
