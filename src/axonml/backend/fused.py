"""Fused elementwise kernels on CUDA: a chain of arithmetic in one CuPy launch.

A chain of CuPy ufunc calls launches one kernel per call (each launch costs
~10-15 µs of CPU time); an optimizer step written that way launches several per
parameter. :func:`elementwise` names a body of CUDA C++ once and returns a cached
:class:`Kernel`, which builds a ``cupy.ElementwiseKernel`` on its first call
(CuPy then caches the binary per dtype, in memory and on disk).

The kernels are compiled without FMA contraction and with IEEE division and
square root, so each ``+ - * /`` and ``ax_sqrt`` rounds once, as one NumPy ufunc
does: a body that writes the operations in the order of a NumPy chain computes
the same bits. The preamble adds NaN-propagating ``ax_max``, ``ax_sign``,
``ax_abs`` and ``ax_sqrt`` with NumPy's semantics. Scalars that change between
calls (a learning rate, a bias correction) are kernel arguments, never part of
the source, so they never cause a recompilation.

CuPy is imported on first use only (never at module import).
"""

from __future__ import annotations

import importlib
import re
from typing import Any, ClassVar

import numpy as np

from .device import Device

__all__ = ["FUSED_DTYPES", "Kernel", "elementwise", "fusable"]

# The dtypes the preamble's helpers are written for (float16 arithmetic and bfloat16 are left to CuPy's ufuncs).
FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

PREAMBLE = r"""
__device__ __forceinline__ float ax_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double ax_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float ax_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double ax_abs(double x) { return fabs(x); }
// numpy.maximum: NaN if either is NaN, else the larger (the second when equal)
template <typename T> __device__ __forceinline__ T ax_max(T a, T b) { return (a > b || a != a) ? a : b; }
// numpy.sign: -1, +0 or 1, NaN for NaN
template <typename T> __device__ __forceinline__ T ax_sign(T x) {
    return x > T(0) ? T(1) : (x < T(0) ? T(-1) : (x == T(0) ? T(0) : x));
}
"""

# No FMA contraction; IEEE-rounded division and square root (NVRTC's defaults, stated so they cannot drift).
OPTIONS = ("--fmad=false", "--prec-div=true", "--prec-sqrt=true")


class Kernel:
    """One fused elementwise kernel: ``kernel(*inputs, *outputs)`` runs it over CuPy arrays.

    Arguments follow ``in_params`` then ``out_params`` (CuPy's ElementwiseKernel
    syntax, e.g. ``"T g, T lr"`` and ``"T p"``); outputs are updated in place and
    nothing is returned. Scalars should be NumPy scalars of the arrays' dtype
    (``arr.dtype.type(x)``), so that ``T`` is the same for all of them. Inputs the
    body never names are accepted and dropped before the launch (each argument
    costs CuPy host time per call), so callers can pass one argument list for all
    the variants of a rule.
    """

    __slots__ = ("name", "in_params", "out_params", "body", "launch_in_params", "_keep", "_compiled")

    launches: ClassVar[int] = 0  # calls of all fused kernels so far (benchmarks read it)

    def __init__(self, name: str, in_params: str, out_params: str, body: str) -> None:
        self.name, self.in_params, self.out_params, self.body = name, in_params, out_params, body
        ins = [p.strip() for p in in_params.split(",")]
        used = set(re.findall(r"[A-Za-z_]\w*", body))
        keep = [i for i, p in enumerate(ins) if p.split()[-1] in used]
        n_out = len(out_params.split(","))
        self.launch_in_params = ", ".join(ins[i] for i in keep)  # the compiled kernel's inputs
        self._keep: tuple[int, ...] | None = None
        if len(keep) < len(ins):
            self._keep = (*keep, *range(len(ins), len(ins) + n_out))
        self._compiled: Any = None

    def __call__(self, *args: Any, size: int | None = None) -> None:
        """Launch over the arrays' broadcast shape, or over ``size`` elements when every array is ``raw``."""
        k = self._compiled
        if k is None:
            k = self._compiled = _build(self)
        Kernel.launches += 1
        keep = self._keep
        if keep is not None:
            args = tuple(args[i] for i in keep)
        if size is None:
            k(*args)
        else:
            k(*args, size=size)

    def __repr__(self) -> str:
        return f"Kernel({self.name!r}, in=({self.in_params}), out=({self.out_params}))"


_CACHE: dict[tuple[str, str, str, str], Kernel] = {}


def elementwise(name: str, in_params: str, out_params: str, body: str) -> Kernel:
    """The cached :class:`Kernel` for this signature and body (compiled on its first call, on CUDA only).

    Args:
        name: the kernel's name (a C identifier; shows in profiles).
        in_params: read-only arguments, CuPy syntax: ``"T g, T lr"`` (arrays and scalars alike).
        out_params: arrays read and written in place, e.g. ``"T p, T m"``.
        body: CUDA C++ for one element, using the names above and the preamble's helpers.
    """
    key = (name, in_params, out_params, body)
    k = _CACHE.get(key)
    if k is None:
        k = _CACHE[key] = Kernel(name, in_params, out_params, body)
    return k


def fusable(dev: Device, *arrays: Any) -> bool:
    """True when ``dev`` is a CUDA device and its arrays can go through one fused kernel: one shape, one dtype of
    :data:`FUSED_DTYPES`. ``None`` entries (state an option leaves out) are skipped; the first must be an array."""
    if dev.type != "cuda":
        return False
    a0 = arrays[0]
    dt, shape = a0.dtype, a0.shape
    if dt not in FUSED_DTYPES:
        return False
    return all(a is None or (a.dtype == dt and a.shape == shape) for a in arrays[1:])


def _build(k: Kernel) -> Any:
    """Create the ``cupy.ElementwiseKernel`` (CuPy compiles it per dtype at the first launch)."""
    cp = importlib.import_module("cupy")
    return cp.ElementwiseKernel(
        k.launch_in_params, k.out_params, k.body, k.name, preamble=PREAMBLE, options=OPTIONS, no_return=True
    )
