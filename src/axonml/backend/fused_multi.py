"""One CUDA launch for an elementwise update of many arrays (an optimizer step over all parameters).

An optimizer that launches a fused kernel per parameter pays ~15 us of host time per
parameter (ResNet-18 has 62); PyTorch's ``foreach`` optimizers launch a few kernels per
step instead. :class:`MultiKernel` runs one body over a list of same-dtype arrays in one
launch: the arrays' addresses and the running offsets of their sizes go to the device as
two small tables, and each thread finds its array by a binary search over the offsets.
The tables are uploaded only when an address changes (parameters and optimizer state stay
put; CuPy's pool usually hands the fresh gradients the same blocks every step).

The body is an :func:`axonml.backend.fused.elementwise` body, compiled with the same
preamble and flags, so a multi-array launch computes the same bits as one launch per
array. Not for use while a CUDA graph is being captured (the table upload is a host
copy): callers launch per array then.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from .fused import OPTIONS, PREAMBLE, Kernel

_THREADS = 256
_MAX_BLOCKS = 2048


class MultiKernel:
    """``kernel(groups, *scalars)``: ``body`` over every element of each group of arrays.

    ``arrays``: the per-array names, e.g. ``("g", "p", "buf")``; ``writes``: those the body
    assigns (stored back); ``scalars``: ``"T wd, T mom"`` (the same for every array). Each
    group is a tuple of contiguous arrays of one shape, in the order of ``arrays``; all
    groups share one dtype and device.
    """

    def __init__(self, name: str, arrays: tuple[str, ...], writes: tuple[str, ...], scalars: str, body: str) -> None:
        self.name, self.arrays, self.writes, self.scalars, self.body = name, arrays, writes, scalars, body
        self._modules: dict[str, Any] = {}
        self._tables: dict[tuple[int, ...], tuple[Any, Any, int]] = {}

    def _function(self, cp: Any, ctype: str) -> Any:
        mod = self._modules.get(ctype)
        if mod is None:
            n = len(self.arrays)
            loads = "\n".join(f"        T {a} = ((T*)ptrs[t * {n} + {i}])[k];" for i, a in enumerate(self.arrays))
            stores = "\n".join(f"        ((T*)ptrs[t * {n} + {self.arrays.index(a)}])[k] = {a};" for a in self.writes)
            src = f"""typedef {ctype} T;
{PREAMBLE}
extern "C" __global__ void {self.name}(const unsigned long long* ptrs, const long long* starts, int count,
                                       long long total, {self.scalars}) {{
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < total;
         j += (long long)blockDim.x * gridDim.x) {{
        int t = 0, hi = count;  // starts[t] <= j < starts[t + 1]
        while (hi - t > 1) {{ const int mid = (t + hi) / 2; if (starts[mid] <= j) t = mid; else hi = mid; }}
        const long long k = j - starts[t];
{loads}
        {self.body}
{stores}
    }}
}}
"""
            mod = self._modules[ctype] = cp.RawModule(code=src, options=OPTIONS)
        return mod.get_function(self.name)

    def _table(self, cp: Any, groups: list[tuple[Any, ...]]) -> tuple[Any, Any, int]:
        ptrs = tuple(a.data.ptr for grp in groups for a in grp)
        key = (*ptrs, *(grp[0].size for grp in groups))  # a freed block may come back with another size
        table = self._tables.get(key)
        if table is None:
            sizes = np.array([0] + [grp[0].size for grp in groups], np.int64)
            starts = np.cumsum(sizes)
            if len(self._tables) > 8:  # addresses that keep changing must not grow it forever
                self._tables.clear()
            table = self._tables[key] = (cp.asarray(np.array(ptrs, np.uint64)), cp.asarray(starts),
                                          int(starts[-1]))
        return table

    def __call__(self, groups: list[tuple[Any, ...]], *scalars: Any) -> None:
        cp = importlib.import_module("cupy")
        Kernel.launches += 1
        first = groups[0][0]
        with first.device:
            fn = self._function(cp, "double" if first.dtype == np.float64 else "float")
            ptrs, starts, total = self._table(cp, groups)
            if total:
                blocks = min(_MAX_BLOCKS, -(-total // _THREADS))
                fn((blocks,), (_THREADS,), (ptrs, starts, np.int32(len(groups)), np.int64(total), *scalars))
