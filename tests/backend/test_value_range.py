"""``backend.value_range``: the (min, max) that index range checks read back, on each device."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
from axonml.backend import value_range
from axonml.errors import IndexingError

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not ax.cuda.is_available(), reason="no CUDA GPU")])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_value_range_is_min_and_max(device: str, dtype: type) -> None:
    a = np.array([[7, 3, 9], [4, 11, 5]], dtype)
    t = ax.tensor(a, device=device)
    lo, hi = value_range(t.device.xp, t._data)
    assert (lo, hi) == (3, 11) and type(lo) is int and type(hi) is int


@pytest.mark.parametrize("device", DEVICES)
def test_range_checks_still_name_the_bad_index(device: str) -> None:
    x = ax.zeros(2, 3, device=device)
    with pytest.raises(IndexingError, match="index 5 is out of bounds"):
        x.gather(1, ax.tensor([[0, 5], [1, 2]], device=device))
    with pytest.raises(IndexingError, match="target -2 is out of bounds"):
        ax.nn.functional.cross_entropy(x, ax.tensor([1, -2], device=device)).item()  # CUDA: checked at a read
    with pytest.raises(IndexingError, match="class value 4 is not smaller"):
        ax.nn.functional.one_hot(ax.tensor([4, 0], device=device), 3)
