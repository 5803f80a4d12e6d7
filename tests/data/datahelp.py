"""Helpers shared by the axonml.data tests: PyTorch (when installed) and conversions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import axonml as ax

try:
    import torch
    import torch.utils.data as tdata
except ImportError:  # the comparisons skip
    torch = None
    tdata = None

def needs_torch(fn: Any) -> Any:
    """Mark a test that compares with PyTorch: it skips when PyTorch is not installed."""
    return pytest.mark.torch(pytest.mark.skipif(torch is None, reason="PyTorch is not installed")(fn))


def np_of(x: Any) -> Any:
    """A NumPy view of an axonml or PyTorch tensor (other values unchanged)."""
    if isinstance(x, ax.Tensor):
        return x.numpy()
    if torch is not None and isinstance(x, torch.Tensor):
        return x.numpy()
    return x


def structure(x: Any) -> Any:
    """A comparable description of a batch: container types, and for tensors (shape, dtype name) and values."""
    if isinstance(x, ax.Tensor) or (torch is not None and isinstance(x, torch.Tensor)):
        a = np_of(x)
        return ("tensor", tuple(a.shape), str(a.dtype), a.tolist())
    if isinstance(x, np.ndarray):
        return ("ndarray", x.shape, str(x.dtype), x.tolist())
    if isinstance(x, dict):
        return (type(x).__name__, {k: structure(v) for k, v in x.items()})
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return (type(x).__name__, [structure(v) for v in x])
    if isinstance(x, list | tuple):
        return (type(x).__name__, [structure(v) for v in x])
    return ("value", type(x).__name__, x)
