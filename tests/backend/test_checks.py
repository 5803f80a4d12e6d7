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
