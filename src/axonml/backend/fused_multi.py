"""One CUDA launch for an elementwise update of many arrays (an optimizer step over all parameters).

An optimizer that launches a fused kernel per parameter pays ~15 us of host time per
parameter (ResNet-18 has 62); PyTorch's ``foreach`` optimizers launch a few kernels per
step instead. :class:`MultiKernel` runs one body over a list of same-dtype arrays in one
launch: the arrays' addresses and the running offsets of their sizes travel as one struct
in the kernel's parameters (4 KB, the limit of every CUDA GPU; more arrays take more
launches), and each thread finds its array by a binary search over the offsets. Passing
them by value costs no host-to-device copy: an uploaded table cost a copy whenever a
gradient came back at another address, which on a busy step waited for the GPU.

The body is an :func:`axonml.backend.fused.elementwise` body, compiled with the same
preamble and flags, so a multi-array launch computes the same bits as one launch per
array. CUDA graph captures launch per array (their scalars are read from the device).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from .fused import OPTIONS, PREAMBLE, Kernel

_THREADS = 256
_MAX_BLOCKS = 2048
_PARAM_BYTES = 4096 - 64  # the kernel's parameter space, less room for the other arguments


def capacity(n_arrays: int) -> int:
    """How many groups of ``n_arrays`` arrays one launch takes (8 bytes per address, 8 per offset)."""
    return (_PARAM_BYTES - 8) // (8 * n_arrays + 8)


class MultiKernel:
    """``kernel(groups, *scalars)``: ``body`` over every element of each group of arrays.

    ``arrays``: the per-array names, e.g. ``("g", "p", "buf")``; ``writes``: those the body
    assigns (stored back); ``scalars``: ``"T wd, T mom"`` (the same for every array). Each
    group is a tuple of contiguous arrays of one shape, in the order of ``arrays``; all
    groups share one dtype and device.
    """

    def __init__(self, name: str, arrays: tuple[str, ...], writes: tuple[str, ...], scalars: str, body: str) -> None:
        self.name, self.arrays, self.writes, self.scalars, self.body = name, arrays, writes, scalars, body
        self.capacity = capacity(len(arrays))
        n, cap = len(arrays), self.capacity
        # the parameter struct as NumPy sees it: addresses, then cap + 1 running offsets
        self._struct = np.dtype({"names": ["ptrs", "starts"],
                                 "formats": [(np.uint64, (cap * n,)), (np.int64, (cap + 1,))]})
        self._modules: dict[str, Any] = {}

    def _function(self, cp: Any, ctype: str) -> Any:
        mod = self._modules.get(ctype)
        if mod is None:
            n, cap = len(self.arrays), self.capacity
            loads = "\n".join(f"        T {a} = ((T*)tab.ptrs[t * {n} + {i}])[k];" for i, a in enumerate(self.arrays))
            stores = "\n".join(f"        ((T*)tab.ptrs[t * {n} + {self.arrays.index(a)}])[k] = {a};"
                               for a in self.writes)
            src = f"""typedef {ctype} T;
{PREAMBLE}
struct Tables {{ unsigned long long ptrs[{cap * n}]; long long starts[{cap + 1}]; }};
extern "C" __global__ void {self.name}(const Tables tab, int count, long long total, {self.scalars}) {{
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < total;
         j += (long long)blockDim.x * gridDim.x) {{
        int t = 0, hi = count;  // starts[t] <= j < starts[t + 1]
        while (hi - t > 1) {{ const int mid = (t + hi) / 2; if (tab.starts[mid] <= j) t = mid; else hi = mid; }}
        const long long k = j - tab.starts[t];
{loads}
        {self.body}
{stores}
    }}
}}
"""
            mod = self._modules[ctype] = cp.RawModule(code=src, options=OPTIONS)
        return mod.get_function(self.name)

    def _tables(self, groups: list[tuple[Any, ...]]) -> tuple[Any, int]:
        """The parameter struct of up to ``capacity`` groups, and their total size."""
        n, cap = len(self.arrays), self.capacity
        words = np.zeros(cap * n + cap + 1, np.int64)
        words[: len(groups) * n] = [a.data.ptr for grp in groups for a in grp]
        starts = words[cap * n:]
        np.cumsum([grp[0].size for grp in groups], out=starts[1: len(groups) + 1])
        return words.view(self._struct), int(starts[len(groups)])

    def __call__(self, groups: list[tuple[Any, ...]], *scalars: Any) -> None:
        cp = importlib.import_module("cupy")
        first = groups[0][0]
        with first.device:
            fn = self._function(cp, "double" if first.dtype == np.float64 else "float")
            for lo in range(0, len(groups), self.capacity):
                chunk = groups[lo: lo + self.capacity]
                tables, total = self._tables(chunk)
                if total:
                    Kernel.launches += 1
                    blocks = min(_MAX_BLOCKS, -(-total // _THREADS))
                    fn((blocks,), (_THREADS,), (tables, np.int32(len(chunk)), np.int64(total), *scalars))
