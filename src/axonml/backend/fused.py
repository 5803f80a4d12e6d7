"""Fused elementwise kernels on CUDA: a chain of arithmetic in one CuPy launch.

A chain of CuPy ufunc calls launches one kernel per call (each launch costs
~10-15 µs of CPU time); an optimizer step written that way launches several per
parameter. :func:`elementwise` names a body of CUDA C++ once and returns a cached
:class:`Kernel`. Its commonest calls (float32/float64, the elementwise arrays of one
shape, every array C-contiguous, scalars of the declared types) launch a raw kernel
compiled from the same body, which costs about half the host time of a
``cupy.ElementwiseKernel`` call (that one resolves types and broadcasting on every
call); other calls go through a ``cupy.ElementwiseKernel`` built on first use
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
import sys
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .device import Device
from .launch import Launcher

__all__ = ["FUSED_DTYPES", "Kernel", "elementwise", "fusable", "grid"]

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


class _Param(NamedTuple):
    """One parameter of a kernel signature: ``[raw] type name``."""

    name: str
    type: str  # "T" or a key of _FIXED
    raw: bool
    out: bool


# the fixed parameter types a raw launch accepts: NumPy scalar type and C type
_FIXED = {"bool": (np.bool_, "bool"), "int32": (np.int32, "int"), "int64": (np.int64, "long long"),
          "uint64": (np.uint64, "unsigned long long"), "float32": (np.float32, "float"),
          "float64": (np.float64, "double")}
_T_CTYPES = {"f": "float", "d": "double"}
_THREADS = 256
_MAX_BLOCKS = 1 << 16  # a grid-stride loop covers the rest


def _parse(params: str, out: bool) -> list[_Param] | None:
    """The parameters of a CuPy signature, or None when one has a type the raw launch does not handle."""
    parsed = []
    for p in params.split(","):
        words = p.split()
        raw = bool(words) and words[0] == "raw"
        if raw:
            words = words[1:]
        if len(words) != 2 or (words[0] != "T" and words[0] not in _FIXED):
            return None
        parsed.append(_Param(words[1], words[0], raw, out))
    return parsed


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

    __slots__ = ("name", "in_params", "out_params", "body", "launch_in_params", "_keep", "_compiled", "_params",
                 "_direct")

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
        ins_parsed, outs_parsed = _parse(self.launch_in_params, False), _parse(out_params, True)
        # bodies that use CuPy's indexer object need the ElementwiseKernel
        direct = ins_parsed is not None and outs_parsed is not None and "_ind" not in used
        self._params: tuple[_Param, ...] | None = (*ins_parsed, *outs_parsed) if direct else None  # type: ignore[misc]
        self._direct: dict[tuple[str, int], Any] = {}

    def __call__(self, *args: Any, size: int | None = None) -> None:
        """Launch over the arrays' broadcast shape, or over ``size`` elements when every array is ``raw``."""
        k = self._compiled
        if k is None:
            k = self._compiled = _build(self)
        Kernel.launches += 1
        keep = self._keep
        if keep is not None:
            args = tuple([args[i] for i in keep])
        if self._params is not None and self._launch_direct(args, size):
            return
        if size is None:
            k(*args)
        else:
            k(*args, size=size)

    def _launch_direct(self, args: tuple[Any, ...], size: int | None) -> bool:
        """Launch the raw kernel when the call allows it (see the module docstring); False leaves it to CuPy."""
        params = self._params
        assert params is not None
        if len(args) != len(params):
            return False
        cp = sys.modules.get("cupy")  # not imported: no CuPy arrays to launch over
        if cp is None:
            return False
        ndarray = cp.ndarray
        dtype = shape = None
        n = size
        arrays = 0  # bit i: argument i is an array
        scalar_types = []  # the types of the T scalars, checked against the arrays' dtype below
        for i, (p, a) in enumerate(zip(params, args)):
            if type(a) is ndarray:
                if not a.flags.c_contiguous:
                    return False
                if p.type == "T":
                    if dtype is None:
                        dtype = a.dtype
                    elif a.dtype != dtype:
                        return False
                elif a.dtype != _FIXED[p.type][0]:
                    return False
                if not p.raw:
                    if shape is None:
                        shape, n = a.shape, a.size
                    elif a.shape != shape:
                        return False
                arrays |= 1 << i
            elif p.raw or p.out:
                return False
            elif p.type == "T":
                scalar_types.append(type(a))
            elif type(a) is not _FIXED[p.type][0]:
                return False
        if dtype is None or dtype.char not in _T_CTYPES or (size is None) == (shape is None):
            return False
        for t in scalar_types:
            if t is not dtype.type:
                return False
        if n:
            self.launcher(dtype.char, arrays)(*grid(n), (*args, np.int64(n)))
        return True

    def over(self, *arrays: Any) -> None:
        """Launch over CuPy arrays the caller has checked are of one shape and one dtype of :data:`FUSED_DTYPES`,
        one per parameter (inputs, then outputs; a kernel of elementwise ``T`` arrays only, no scalars), without
        the checks of a general call: a unary or binary op's launch (ReLU, add) every layer makes. An array that
        is not C-contiguous sends the call the general way."""
        for a in arrays:
            if not a.flags.c_contiguous:
                self(*arrays)
                return
        Kernel.launches += 1
        a0 = arrays[0]
        n = a0.size
        if n:
            self.launcher(a0.dtype.char, (1 << len(arrays)) - 1)(*grid(n), (*arrays, np.int64(n)))

    def launcher(self, char: str, arrays: int) -> Launcher:
        """The raw kernel for float type ``char`` (``"f"`` or ``"d"``) with arrays at the argument positions set in
        ``arrays`` (bit i: argument i, counted after the inputs the body never names), built once.

        For callers that make the same call many times (a convolution's recipe) and have checked what
        ``__call__`` checks: every array C-contiguous and of the kernel's types. Launch it with
        ``launcher(*grid(n), (*args, np.int64(n)))`` for ``n`` elements.
        """
        fn = self._direct.get((char, arrays))
        if fn is None:
            if self._params is None:
                raise TypeError(f"{self.name} has parameters a raw launch does not handle: {self.in_params}")
            fn = self._direct[char, arrays] = _build_direct(self, self._params, char, arrays)
        return fn

    def __repr__(self) -> str:
        return f"Kernel({self.name!r}, in=({self.in_params}), out=({self.out_params}))"


def grid(n: int) -> tuple[tuple[int], tuple[int]]:
    """(grid, block) of a raw elementwise launch over ``n`` elements (a grid-stride loop covers what the grid
    does not)."""
    return (min(_MAX_BLOCKS, -(-n // _THREADS)),), (_THREADS,)


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
    for a in arrays[1:]:  # noqa: SIM110 - a loop, not all() over a generator: this runs at every update
        if a is not None and (a.dtype != dt or a.shape != shape):
            return False
    return True


def _cupy() -> Any:
    return importlib.import_module("cupy")


def _build_direct(k: Kernel, params: tuple[_Param, ...], char: str, arrays: int) -> Any:
    """The raw kernel of ``k``'s body for float type ``char`` and these array arguments (bit i of ``arrays``):
    elementwise arrays are read (written) through a ``const T&`` (``T&``) of element ``i``, as CuPy's
    ElementwiseKernel binds them; ``raw`` arrays are pointers the body indexes."""
    ctype = _T_CTYPES[char]
    decls, binds = [], []
    for j, p in enumerate(params):
        c = ctype if p.type == "T" else _FIXED[p.type][1]
        const = "" if p.out else "const "
        if not arrays >> j & 1:
            decls.append(f"const {c} {p.name}")
        elif p.raw:
            decls.append(f"{const}{c}* {p.name}")
        else:
            decls.append(f"{const}{c}* _axp_{p.name}")
            binds.append(f"{const}{c}& {p.name} = _axp_{p.name}[i];")
    source = (f"typedef {ctype} T;\n{PREAMBLE}\n"
              f'extern "C" __global__ void {k.name}({", ".join(decls)}, const long long _axn) {{\n'
              "    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < _axn;\n"
              "         i += (long long)blockDim.x * gridDim.x) {\n"
              f"        {' '.join(binds)}\n        {k.body}\n    }}\n}}\n")
    return Launcher(_cupy().RawModule(code=source, options=OPTIONS).get_function(k.name))


def _build(k: Kernel) -> Any:
    """Create the ``cupy.ElementwiseKernel`` (CuPy compiles it per dtype at the first launch)."""
    return _cupy().ElementwiseKernel(
        k.launch_in_params, k.out_params, k.body, k.name, preamble=PREAMBLE, options=OPTIONS, no_return=True
    )
