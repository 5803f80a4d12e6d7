"""CPU-only helpers of the convolutions: work split over threads, and the stride-1 "shift" GEMMs.

Threads: NumPy copies and compiled loops run on one core while PyTorch's kernels use all of
them. NumPy releases the GIL in large copies (and in BLAS calls, and our numba loops do too),
so the convolutions split their work over as many Python threads as OpenBLAS was given
(``OPENBLAS_NUM_THREADS``: the budget the benchmark gives PyTorch): ResNet's 64-channel
im2col ran 2.8x faster on 2 cores. While they do, OpenBLAS runs on one thread
(``scope``): its idle threads spin after each call and would share a core with ours, so the
GEMMs are split here too, over output columns, or over the reduction for small outputs. Work
under ~2 MB, and all of a small convolution (``scope``), stays on the calling thread: waking a
thread (~60 us in this VM) and the GIL round trips cost more.

Shift GEMMs: see ``_conv_cpu_blas``. With the input zero-padded and flattened channel-major as
``(C, M + tail)`` (``M`` = batch x padded positions), kernel offset ``k`` reads the window
``[:, s_k : s_k + M]``, so the convolution, its weight gradient and (through the flipped kernel)
its input gradient are each ``prod(K)`` GEMMs with no column matrix in between.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ...core.function import arrays_only
from ...core.grad_mode import GRAD_ENABLED
from . import _conv_cpu_blas as _blas

_MIN_SPLIT_BYTES = 1 << 21  # below ~2 MB a thread hand-off costs more than it saves
_MIN_REDUCE_SPLIT_BYTES = 1 << 22  # a reduction split adds a sum of the parts: from a few MB
_POOL: dict[str, Any] = {}
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared helper threads (made again after a fork: a child process has none of its parent's threads)."""
    with _POOL_LOCK:
        pool = _POOL.get("pool")
        if pool is None or _POOL["pid"] != os.getpid() or _POOL["workers"] < workers:
            pool = ThreadPoolExecutor(workers, thread_name_prefix="axonml-conv")
            _POOL.update(pool=pool, pid=os.getpid(), workers=workers)
        return pool


# ----- scratch buffers -------------------------------------------------------------------------
# A fresh 64 MB NumPy buffer costs ~10 ms of page faults in this VM; im2col columns are
# temporaries (consumed by the GEMM), so one buffer per slot and thread is reused.
# CuPy's memory pool already recycles device memory.
_LOCAL = threading.local()
_SCRATCH_MAX_BYTES = 1 << 28


def scratch(xp: Any, slot: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """An uninitialized array that is only valid until the next call with the same ``slot``."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    if xp is not np or n * dtype.itemsize > _SCRATCH_MAX_BYTES:
        return xp.empty(shape, dtype)
    bufs = _LOCAL.__dict__.setdefault("bufs", {})
    buf = bufs.get((slot, dtype))
    if buf is None or buf.size < n:
        buf = np.empty(max(n, 1), dtype)
        bufs[(slot, dtype)] = buf
    return buf[:n].reshape(shape)


# ----- arrays a forward derives from its input, kept for its weight gradient -------------------------
class Kept:
    """Arrays a forward derived from its input ``x`` (im2col columns, a packed copy), kept for the same layer's
    weight gradient, which would derive them again: small ones (under ``max_bytes`` together), of the last
    few layers, while a graph is recorded. LeNet's columns: ~0.9 ms of a ~10 ms step.

    Sound because a backward only reaches a weight gradient with a saved input that autograd has checked
    against in-place changes since its forward, or with a gradient made moments before; and only a
    first-order backward (``arrays_only``) reads them.
    """

    def __init__(self, max_bytes: int = 1 << 24) -> None:
        self.max_bytes = max_bytes
        self._local = threading.local()

    @property
    def entries(self) -> list[tuple[Any, Any, Any]]:
        """This thread's (key, x, array) triples, oldest first."""
        return self._local.__dict__.setdefault("entries", [])  # type: ignore[no-any-return]

    def put(self, key: Any, x: Any, arr: Any) -> None:
        """Remember ``arr``, made from array ``x`` as ``key`` says, while a graph is recorded."""
        if not GRAD_ENABLED.get() or arr.nbytes > self.max_bytes:
            return
        kept = self.entries
        kept[:] = [e for e in kept if e[0] != key or e[1] is not x][-3:]  # the last few layers
        while kept and sum(e[2].nbytes for e in kept) + arr.nbytes > self.max_bytes:
            kept.pop(0)
        kept.append((key, x, arr))

    def get(self, key: Any, x: Any) -> Any:
        """The array ``put`` remembered for (key, x), in a first-order backward; else None."""
        if not arrays_only():
            return None
        for k, a, arr in self.entries:
            if k == key and a is x:
                return arr
        return None

    def buffer(self, key: Any, n: int, dtype: Any) -> Any:
        """Flat room for ``n`` elements that may be kept as ``key``: the array last kept as ``key`` (a fresh
        buffer's page faults cost more here than the kept array saves), or a new one."""
        kept = self.entries
        for i, (k, _, arr) in enumerate(kept):
            if k == key and arr.size == n and arr.dtype == dtype:
                del kept[i]
                return arr.reshape(-1)
        return np.empty(n, dtype)


COLUMNS = Kept()  # im2col columns, keyed by their ``_Plan``


_SMALL = threading.local()  # set inside a small convolution: nothing in it is split
_MIN_SPLIT_FLOPS = 6e7  # a convolution below this leaves the threads to OpenBLAS


@contextlib.contextmanager
def scope(flops: float) -> Iterator[None]:
    """Around a CPU convolution of ``flops`` multiply-adds x 2: who uses the threads.

    A large one splits its own work (``split``) with OpenBLAS on one thread (see the module doc).
    A small one (LeNet's: 20-30 MFLOP) splits nothing and leaves its GEMMs to OpenBLAS's threads,
    which stay awake between calls: its parts would be ~0.1 ms, and waking a Python thread costs
    ~60 us here (LeNet's step: 14 ms with our splits, 10 without, 9.9 with OpenBLAS's threads).
    LeNet's direct loops (``_conv_cpu_direct``, 0.2-0.6 ms a call) were split too for a test: two
    halves ran 1.5x faster alone, but the step went from 5.7-6.1 ms to 6.6 (OpenBLAS's threads,
    spinning after the linear layers, hold the other core), so they also stay on one thread.
    """
    if flops >= _MIN_SPLIT_FLOPS:
        with _blas.single_threaded():
            yield
        return
    before = getattr(_SMALL, "on", False)
    _SMALL.on = True
    try:
        yield
    finally:
        _SMALL.on = before


def _parts(n: int, nbytes: int, minimum: int) -> list[int]:
    parts = min(_blas.num_threads(), n) if nbytes >= minimum and not getattr(_SMALL, "on", False) else 1
    return [n * i // parts for i in range(parts + 1)]


def split(n: int, nbytes: int, fn: Callable[[int, int], None]) -> None:
    """``fn(lo, hi)`` over contiguous parts of ``range(n)``, one part per thread; ``nbytes`` is the work's size.

    The parts must touch disjoint memory. The calling thread runs the first part itself.
    """
    bounds = _parts(n, nbytes, _MIN_SPLIT_BYTES)
    if len(bounds) <= 2:
        fn(0, n)
        return
    pool = _pool(len(bounds) - 2)
    futures = [pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, len(bounds) - 1)]
    try:
        fn(bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()


def reduce_split(n: int, nbytes: int, out: Any, fn: Callable[[int, int, Any], None]) -> None:
    """``out = sum of fn(lo, hi, dst)`` over parts of a long reduction ``range(n)``, one part per thread.

    Each part writes its own ``dst`` (``out`` itself for the first): for small GEMM outputs with a
    long reduction (weight gradients), where a split over output columns has too little to share.
    """
    bounds = _parts(n, nbytes, _MIN_REDUCE_SPLIT_BYTES)
    if len(bounds) <= 2:
        fn(0, n, out)
        return
    dsts = [out] + [np.empty_like(out) for _ in range(len(bounds) - 2)]
    with _blas.single_threaded():
        pool = _pool(len(bounds) - 2)
        futures = [pool.submit(fn, bounds[i], bounds[i + 1], dsts[i]) for i in range(1, len(bounds) - 1)]
        try:
            fn(bounds[0], bounds[1], out)
        finally:
            for f in futures:
                f.result()
    for d in dsts[1:]:
        out += d


def run(xp: Any, n: int, nbytes: int, fn: Callable[[int, int], None]) -> None:
    """``split`` on the CPU; one call over everything on a GPU (its kernels are already parallel)."""
    if xp is np:
        split(n, nbytes, fn)
    else:
        fn(0, n)


def copy_into(xp: Any, dst: Any, src: Any, axis: int = 0) -> None:
    """``dst[...] = src`` (same shapes, any strides), split over ``axis`` across threads on the CPU."""
    lead = (slice(None),) * axis

    def part(lo: int, hi: int) -> None:
        part_ix = (*lead, slice(lo, hi))
        dst[part_ix] = src[part_ix]

    run(xp, dst.shape[axis], dst.nbytes, part)


def matmul(a: Any, b: Any, out: Any) -> None:
    """``out = a @ b`` for 2-D NumPy arrays (or stacks of them, split over the stack), split over threads."""
    if a.ndim == 3:  # groups: (G, m, k) @ (G, k, n)
        split(a.shape[0], out.nbytes + b.nbytes, lambda lo, hi: np.matmul(a[lo:hi], b[lo:hi], out=out[lo:hi]))
        return
    direct = _blas.available(out.dtype) and a.dtype == b.dtype == out.dtype

    def part(lo: int, hi: int) -> None:
        if direct:
            _blas.gemm(a, b[:, lo:hi], out[:, lo:hi])
        else:
            out[:, lo:hi] = np.matmul(a, b[:, lo:hi])

    split(out.shape[1], out.nbytes + b.nbytes, part)


def shift_conv(xflat: Any, wk: Any, shifts: list[int], m: int, out: Any) -> None:
    """``out (Co, M) = sum_k wk[k] (Co, C) @ xflat[:, s_k : s_k + M]``: a stride-1 convolution on the grid."""

    def part(lo: int, hi: int) -> None:
        for k, s in enumerate(shifts):
            _blas.gemm(wk[k], xflat[:, s + lo: s + hi], out[:, lo:hi], 0.0 if k == 0 else 1.0)

    split(m, out.nbytes + xflat.nbytes, part)


def shift_weight(gm: Any, xflat: Any, shifts: list[int], m: int, out: Any) -> None:
    """``out[k] (Co, C) = gm (Co, M) @ xflat[:, s_k : s_k + M].T``: the weight gradient, one GEMM per offset."""

    def part(lo: int, hi: int, dst: Any) -> None:
        for k, s in enumerate(shifts):
            _blas.gemm(gm[:, lo:hi], xflat[:, s + lo: s + hi].T, dst[k], 0.0)

    reduce_split(m, gm.nbytes + xflat.nbytes, out, part)



Ints = tuple[int, ...]


def flip_transposed(w: Any, stride: Ints, dilation: Ints, pad_lo: Ints, groups: int, osize: Ints,
                    size: Ints) -> tuple[Any, Ints, Ints] | None:
    """A stride-1 transposed convolution as a convolution: (weight, padding before, after), or None if it costs more.

    ``convT(g, w)`` with stride 1 is ``conv(g, w')``, ``w'`` the kernel flipped with its two channel
    axes swapped, padded by ``d (k - 1) - lo`` before and ``size - O + lo`` after. Its im2col gathers
    (one pass) where col2im accumulates (a read-modify-write per kernel offset): ResNet's 3x3 layers
    gained ~7 ms each on one core, and it can take the shift GEMMs or Winograd. It pays while its
    columns are not much larger than col2im's (``Co * prod(size)`` against ``Ci * prod(O)``; LeNet's
    6 -> 16 layer stays with col2im).
    """
    if any(s != 1 for s in stride):
        return None
    kernel = tuple(w.shape[2:])
    lo = tuple(d * (k - 1) - p for d, k, p in zip(dilation, kernel, pad_lo))
    hi = tuple(n - o + p for n, o, p in zip(size, osize, pad_lo))
    co, cig = w.shape[0], w.shape[1]
    if min(lo + hi, default=0) < 0 or co * math.prod(size) > 1.5 * cig * groups * math.prod(osize):
        return None
    flip = (slice(None),) * 3 + (slice(None, None, -1),) * len(kernel)
    wf = w.reshape(groups, co // groups, cig, *kernel).swapaxes(1, 2)[flip]
    return wf.reshape(groups * cig, co // groups, *kernel), lo, hi


_CHUNK = 4096


def weight_matmul(a: Any, b: Any) -> Any:
    """``a @ b`` for 2-D float arrays with a long reduction (a weight gradient: (Co, M) @ (M, C K)), over threads.

    OpenBLAS ran (6, 50176) @ (50176, 25) 7x faster in 4096-long pieces (they stay in cache); large
    results (64 x 576) gain nothing from that. A few output rows (LeNet's (16, 6400) @ (6400, 150))
    ran ~1.8x faster as ``(b.T @ a.T).T``. The reduction is split over threads (``reduce_split``).
    """
    k = a.shape[1]
    pieces = k > 2 * _CHUNK and a.shape[0] * b.shape[1] <= 4096
    few = a.shape[0] <= 32 and not pieces
    out = np.empty((b.shape[1], a.shape[0]) if few else (a.shape[0], b.shape[1]), a.dtype)

    def part(lo: int, hi: int, dst: Any) -> None:
        if few:
            np.matmul(b[lo:hi].T, a[:, lo:hi].T, out=dst)
        elif not pieces:
            np.matmul(a[:, lo:hi], b[lo:hi], out=dst)
        else:
            np.matmul(a[:, lo: min(lo + _CHUNK, hi)], b[lo: min(lo + _CHUNK, hi)], out=dst)
            for s in range(lo + _CHUNK, hi, _CHUNK):
                dst += a[:, s: min(s + _CHUNK, hi)] @ b[s: min(s + _CHUNK, hi)]

    reduce_split(k, a.nbytes + b.nbytes, out, part)
    return out.T if few else out
