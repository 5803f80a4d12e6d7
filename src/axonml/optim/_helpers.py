"""Helpers for optimizer steps: scratch buffers, state creation, the shared pieces of the updates, validation.

Each update rule exists twice, computing the same operations in the same order:

* on NumPy (and on CuPy for dtypes without a fused kernel), a chain of in-place
  ufuncs on raw arrays (``p._data``, ``p._grad._data``) into reused scratch
  buffers, run by :func:`run_arrays`: large contiguous parameters go block by
  block, so that all passes of the chain over a block stay in the CPU cache;
* on CUDA, one fused kernel per parameter (``axonml.backend.fused``), whose body
  is built from the ``*_src`` snippets below: every operation rounds once, as a
  ufunc does, so both paths give the same bits.

Scalars are computed in Python (float64) and rounded to the arrays' dtype at use,
as NumPy does with a Python float, so they may change every step (learning-rate
schedules, bias corrections) without a new kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..backend import CPU, Device
from ..core import dtypes as _dt
from ..core.tensor import Tensor

__all__ = [
    "BLOCK_BYTES", "Scratch", "adam_moments", "bump_version", "check_betas", "check_lr", "check_range",
    "grad_cpu", "grad_src", "lerp_", "lerp_scalar", "lerp_src", "moments_src", "run_arrays", "scalar_dtype",
    "scalar_state", "step_up", "to_scalar", "torch_flags", "update_moments", "zeros_state",
]

# Block size of the NumPy path: a block of each array involved in an update (up to ~7) fits in a core's L2.
BLOCK_BYTES = 1 << 18


class Scratch:
    """Reusable temporary arrays, one per (slot, dtype, device), as large as the largest request.

    ``take(dev, like, slot)`` returns an uninitialized array shaped like ``like``: a
    view of the slot's buffer, so an optimizer step allocates nothing after the first.
    The views are cached by shape too, since a step asks for the same ones every time.
    """

    __slots__ = ("_bufs", "_views", "_sets")

    def __init__(self) -> None:
        self._bufs: dict[tuple[int, Any, Device], Any] = {}
        self._views: dict[tuple[int, tuple[int, ...], Any, Device], Any] = {}
        self._sets: dict[tuple[int, tuple[int, ...], Any, Device], tuple[Any, ...]] = {}

    def take(self, dev: Device, like: Any, slot: int = 0) -> Any:
        vkey = (slot, like.shape, like.dtype, dev)
        view = self._views.get(vkey)
        if view is not None:
            return view
        key = (slot, like.dtype, dev)
        buf = self._bufs.get(key)
        n = like.size
        if buf is None or buf.size < n:
            buf = self._bufs[key] = dev.xp.empty(max(n, 1), dtype=like.dtype)
            # drop the views of the smaller buffer (rare: the first steps only)
            self._views = {k: v for k, v in self._views.items() if (k[0], k[2], k[3]) != key}
            self._sets.clear()
        view = self._views[vkey] = buf[:n].reshape(like.shape)
        return view

    def take_n(self, dev: Device, like: Any, n: int) -> tuple[Any, ...]:
        """``(take(dev, like, 0), ..., take(dev, like, n - 1))``, cached as one tuple."""
        key = (n, like.shape, like.dtype, dev)
        views = self._sets.get(key)
        if views is None:
            views = self._sets[key] = tuple(self.take(dev, like, i) for i in range(n))
        return views


def run_arrays(fn: Callable[..., None], scratch: Scratch, dev: Device, arrays: Sequence[Any], n_tmp: int,
               *args: Any) -> None:
    """Call ``fn(xp, *arrays, *tmps, *args)``: the ufunc chain of an update, with ``n_tmp`` scratch arrays.

    ``arrays`` are the parameter's array first, its gradient second, then its state
    arrays (``None`` for state an option leaves out); the scratch arrays are like the
    gradient (slots 0, 1, ...). On NumPy, when all arrays are C-contiguous and larger
    than a few blocks, ``fn`` runs on successive blocks of their flat views: the
    update is elementwise, so the result is the same, and each block's passes hit the
    cache instead of memory.
    """
    g = arrays[1]
    if g.nbytes < 2 * BLOCK_BYTES or dev is not CPU or not all(a is None or a.flags.c_contiguous for a in arrays):
        fn(dev.xp, *arrays, *scratch.take_n(dev, g, n_tmp), *args)
        return
    n = g.size
    block = BLOCK_BYTES // g.itemsize
    flats = [None if a is None else a.reshape(-1) for a in arrays]
    tmps = scratch.take_n(dev, g.reshape(-1)[:block], n_tmp)
    for start in range(0, n, block):
        stop = min(start + block, n)
        k = stop - start
        fn(np, *[None if a is None else a[start:stop] for a in flats], *[t[:k] for t in tmps], *args)


def scalar_dtype() -> np.dtype:
    """The dtype of scalar state (``step``, ``mu_product``): float64 if that is the default dtype, else float32."""
    return np.dtype(np.float64) if _dt.get_default_dtype() is _dt.float64 else np.dtype(np.float32)


def scalar_state(value: float) -> Tensor:
    """A 0-d CPU tensor of :func:`scalar_dtype` (how PyTorch keeps ``step``)."""
    return Tensor._make(np.array(value, dtype=scalar_dtype()), CPU)


def zeros_state(p: Tensor, fill: float = 0.0) -> Tensor:
    """A state tensor like ``p`` (same shape, dtype, device) filled with ``fill``."""
    xp = p._device.xp
    arr = xp.zeros(p._data.shape, dtype=p._data.dtype) if fill == 0 else xp.full(p._data.shape, fill, p._data.dtype)
    return Tensor._make(arr, p._device)


def step_up(state: dict[str, Any]) -> float:
    """Add one to ``state["step"]`` (a 0-d tensor) in place and return the new count."""
    st = state["step"]
    if not isinstance(st, Tensor):  # an int from an old-style state dict
        st = state["step"] = scalar_state(float(st))
    arr = st._data
    arr += 1
    return float(arr)


def to_scalar(x: Any) -> Any:
    """A hyperparameter as a Python number (a 1-element tensor gives its value)."""
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise ValueError(f"a tensor hyperparameter must have 1 element, got shape {tuple(x.shape)}")
        return x.item()
    return x


def adam_moments(state: dict[str, Any], p: Tensor) -> float:
    """Create ``step``, ``exp_avg`` and ``exp_avg_sq`` on first use, count the step and return it."""
    if "step" not in state:
        state["step"] = scalar_state(0.0)
        state["exp_avg"] = zeros_state(p)
        state["exp_avg_sq"] = zeros_state(p)
    return step_up(state)


def bump_version(p: Tensor) -> None:
    """Mark ``p`` as modified in place (autograd checks saved tensors against this counter)."""
    p._version[0] += 1


# ----- the shared pieces of the updates: NumPy chains and their CUDA twins ---------------------------------
def grad_cpu(xp: Any, p: Any, g: Any, out: Any, wd: float, maximize: bool) -> Any:
    """The gradient the update uses: ``±g + wd * p`` (minus when maximizing; L2 when ``wd != 0``).

    Returns ``g`` itself when nothing changes (read-only), else ``out`` holding the result.
    """
    if wd != 0:
        xp.multiply(p, wd, out=out)
        if maximize:
            xp.subtract(out, g, out=out)
        else:
            xp.add(out, g, out=out)
        return out
    if maximize:
        xp.negative(g, out=out)
        return out
    return g


def grad_src(has_wd: bool, maximize: bool) -> str:
    """CUDA twin of :func:`grad_cpu`: declares ``T d`` from ``g``, ``p`` and the scalar ``wd``."""
    if has_wd:
        return f"T d = p * wd {'-' if maximize else '+'} g;"
    return "T d = -g;" if maximize else "T d = g;"


def lerp_(xp: Any, a: Any, b: Any, weight: float, tmp: Any) -> None:
    """``a += weight * (b - a)`` in place (``torch.lerp_`` with a scalar weight), using ``tmp``."""
    if abs(weight) < 0.5:
        xp.subtract(b, a, out=tmp)
        tmp *= weight
        a += tmp
    else:  # PyTorch's form for large weights: b - (b - a) * (1 - weight)
        xp.subtract(b, a, out=tmp)
        tmp *= 1.0 - weight
        xp.subtract(b, tmp, out=a)


def lerp_src(a: str, b: str, weight: str, small: bool) -> str:
    """CUDA twin of :func:`lerp_`; ``small`` is ``abs(weight) < 0.5``, and the scalar ``weight`` is then the
    weight itself, else ``1 - weight`` (computed in Python, as :func:`lerp_` does)."""
    if small:
        return f"{a} = {a} + ({b} - {a}) * {weight};"
    return f"{a} = {b} - ({b} - {a}) * {weight};"


def lerp_scalar(weight: float) -> tuple[bool, float]:
    """``(small, scalar)`` for :func:`lerp_src`: which form :func:`lerp_` takes, and the scalar it multiplies by."""
    small = abs(weight) < 0.5
    return small, (weight if small else 1.0 - weight)


def update_moments(xp: Any, m: Any, v: Any, g: Any, beta1: float, beta2: float, tmp: Any) -> None:
    """Adam's running averages in place: ``m = lerp(m, g, 1 - beta1)``, ``v = beta2 v + (1 - beta2) g^2``."""
    lerp_(xp, m, g, 1 - beta1, tmp)
    v *= beta2
    xp.multiply(g, 1 - beta2, out=tmp)
    tmp *= g
    v += tmp


def moments_src(small: bool) -> str:
    """CUDA twin of :func:`update_moments` on ``m``, ``v`` and ``d``, with scalars ``w1`` (from
    :func:`lerp_scalar` of ``1 - beta1``), ``b2`` and ``omb2`` (``1 - beta2``)."""
    return lerp_src("m", "d", "w1", small) + " v = v * b2 + d * omb2 * d;"


# ----- validation ---------------------------------------------------------------------------------------------
def check_range(name: str, value: Any, low: float = 0.0, high: float = math.inf, high_open: bool = False) -> None:
    """Raise ``ValueError("Invalid <name>: <value>")`` unless ``low <= value <= high`` (``< high`` if open)."""
    v = to_scalar(value)
    ok = low <= v < high if high_open else low <= v <= high
    if not ok:
        raise ValueError(f"Invalid {name}: {value}")


def check_betas(betas: Any) -> tuple[float, float]:
    """Validate ``betas`` (two numbers in [0, 1)) and return them as floats."""
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair, got {betas!r}")
    b = tuple(to_scalar(x) for x in betas)
    for i, x in enumerate(b):
        if not 0.0 <= x < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {x}")
    return (b[0], b[1])


def torch_flags(**flags: Any) -> dict[str, Any]:
    """PyTorch's implementation switches (``foreach``, ``fused``, ``capturable``, ``differentiable``), checked and
    kept in the parameter group as PyTorch keeps them, so that constructors and ``state_dict`` match its own.

    axonml has one implementation per device (on CUDA, fused kernels), so these select nothing but this:
    ``foreach=False`` keeps SGD to one launch per parameter on CUDA. ``capturable=True`` does not make an Adam-family
    step capturable (a CUDA graph captures SGD and Lion, docs/cuda-graphs.md); ``differentiable=True`` (autograd
    through ``step``) is refused.
    """
    if flags.get("foreach") and flags.get("fused"):
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if flags.get("differentiable"):
        raise NotImplementedError("differentiable=True (autograd through the optimizer step) is not supported")
    return flags


def adam_defaults(lr: Any, betas: Any, eps: float, weight_decay: float, **options: Any) -> dict[str, Any]:
    """The validated defaults of an Adam-family optimizer: lr, betas, eps, weight_decay, then ``options``."""
    check_lr(lr)
    check_range("epsilon value", eps)
    betas = check_betas(betas)
    check_range("weight_decay value", weight_decay)
    return {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, **options}


def check_lr(lr: Any) -> None:
    """Validate a learning rate: a non-negative number or 1-element tensor."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    check_range("learning rate", lr)
