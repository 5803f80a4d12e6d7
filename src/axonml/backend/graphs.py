"""CUDA graphs: record the GPU work of a piece of code once, then replay it with one launch.

A small model's training step is bound by host time: every op costs the CPU tens of
microseconds to dispatch while the GPU finishes its kernel in a few. A captured graph
replays all the step's kernels (forward, backward, optimizer) in one ``cudaGraphLaunch``.

What capture needs, and how it is met here:
- Capture runs on a private non-blocking stream; a replay runs on the current stream,
  so it is ordered with the eager work around it.
- Every array allocated while capturing comes from the graph's own memory pool, which
  lives as long as the graph: a replay writes the same addresses, and no eager
  allocation can be handed one of them in between. Tensors created during capture
  (the loss, the gradients) are therefore "static": each replay refreshes them in place.
- GEMMs go through :class:`~axonml.backend._cublas.Blas` (CuPy refuses cuBLAS calls while
  capturing).
- Random draws read a per-graph counter on the device that the graph's first node
  advances, so every replay draws fresh numbers (see ``backend.random``).
- Host synchronizations (``.item()``, printing a value, a data-dependent shape) cannot
  be captured: the capture is abandoned and :class:`GraphCaptureError` says so.

Warm up before capturing (a few eager steps): lazily created state (optimizer moments,
cached kernel arguments, compiled kernels) must exist before the capture starts.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import DeviceError, GraphCaptureError

__all__ = ["CUDAGraph", "current_capture", "graph", "is_current_stream_capturing"]

_STATE = threading.local()
_BLAS: dict[int, Any] = {}


def current_capture() -> CUDAGraph | None:
    """The graph this thread is capturing into, or None (cheap: ops call it to pick their capture path)."""
    return getattr(_STATE, "capture", None)


def is_current_stream_capturing() -> bool:
    """True while this thread is inside a CUDA graph capture (PyTorch's name)."""
    return current_capture() is not None


def _cupy() -> Any:
    try:
        cp = importlib.import_module("cupy")
        if cp.cuda.runtime.getDeviceCount() > 0:
            return cp
    except Exception:  # no CuPy, no driver, no device
        pass
    raise DeviceError("CUDA graphs need CUDA: install CuPy (pip install 'axonml[cuda]') on a machine with an NVIDIA "
                      "GPU")


_SCALAR_BYTES = 4096


class CUDAGraph:
    """One captured CUDA graph: ``capture_begin()``/``capture_end()`` (or ``with axonml.cuda.graph(g):``),
    then ``replay()`` as often as needed; ``reset()`` frees it.

    Example (a whole training step, as with ``torch.cuda.CUDAGraph``)::

        for _ in range(3):                       # warm-up: creates optimizer state, compiles kernels
            step(static_x, static_y)
        g = axonml.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with axonml.cuda.graph(g):
            loss = loss_fn(model(static_x), static_y)
            loss.backward()
            opt.step()
        for x, y in batches:
            static_x.copy_(x); static_y.copy_(y)  # new data into the captured inputs
            g.replay()                            # loss and parameters update in place
    """

    def __init__(self) -> None:
        self._graph: Any = None
        self._pool: Any = None
        self._stream: Any = None
        self.blas: Any = None  # the capture-safe cuBLAS handle (``backend.matmul`` uses it while capturing)
        self._exit: contextlib.ExitStack | None = None
        self._guards: list[Callable[[], None]] = []
        self.rng_counter: Any = None  # uint64[1] on the device: replays so far (random draws key on it)
        self._scalars: Any = None  # bytes on the device that no node of the graph writes (``host_scalars``)
        self._scalars_used = 0

    # ----- capture -------------------------------------------------------------------------------
    def capture_begin(self) -> None:
        """Start recording this thread's GPU work into the graph."""
        cp = _cupy()
        if current_capture() is not None:
            raise GraphCaptureError("a CUDA graph capture is already running in this thread: captures do not nest")
        if self._graph is not None:
            raise GraphCaptureError("this CUDAGraph already holds a captured graph: call reset() before capturing "
                                    "again")
        dev = cp.cuda.Device().id
        blas = _BLAS.get(dev)
        if blas is None:
            from ._cublas import Blas

            blas = _BLAS[dev] = Blas(cp)
        self.blas = blas
        self._pool = cp.cuda.MemoryPool()
        self._stream = cp.cuda.Stream(non_blocking=True)
        self.rng_counter = cp.zeros(1, cp.uint64)
        # outside the graph's pool: a block of that pool may also be a temporary that an earlier node writes
        self._scalars, self._scalars_used = cp.empty(_SCALAR_BYTES, cp.uint8), 0
        self._guards = []
        cp.cuda.Device().synchronize()  # the capture stream does not wait for eager work on the default stream
        blas.bind(self._stream.ptr)
        stack = contextlib.ExitStack()
        stack.enter_context(self._stream)
        stack.enter_context(cp.cuda.using_allocator(self._pool.malloc))
        self._exit = stack
        try:
            self._stream.begin_capture()
        except Exception:
            stack.close()
            raise
        _STATE.capture = self
        _tick(cp)(self.rng_counter)  # the graph's first node: a replay counts itself before any draw

    def capture_end(self) -> None:
        """Finish recording and instantiate the graph (nothing has run yet: call ``replay()``)."""
        if current_capture() is not self:
            raise GraphCaptureError("capture_end() without a matching capture_begin() on this graph in this thread")
        try:
            graph = self._stream.end_capture()
        except Exception as e:
            self._graph = None
            raise GraphCaptureError(f"the CUDA graph capture was invalidated: {e}") from e
        finally:
            self._leave()
        graph.upload(self._stream)
        self._graph = graph

    def _abort(self) -> None:
        """End a capture that failed part-way, dropping whatever was recorded."""
        if current_capture() is not self:
            return
        try:
            self._stream.end_capture()
        except Exception:  # an invalidated capture still ends; its error is the one being raised
            pass
        finally:
            self._leave()
        self._graph = None
        self._pool = None

    def _leave(self) -> None:
        _STATE.capture = None
        if self._exit is not None:
            self._exit.close()
            self._exit = None

    def host_scalars(self, values: Callable[[], Any], dtype: Any) -> Any:
        """While capturing: a device array that the graph refills with ``values()`` (numbers computed on the host,
        e.g. from a learning rate) before every replay, for captured kernels to read instead of frozen arguments."""
        if current_capture() is not self:
            raise GraphCaptureError("host_scalars() is for use while this graph is capturing")
        np_dtype = np.dtype(dtype)
        n = len(values())
        start = -(-self._scalars_used // 8) * 8
        end = start + n * np_dtype.itemsize
        if end > _SCALAR_BYTES:
            raise GraphCaptureError(f"a CUDA graph holds at most {_SCALAR_BYTES} bytes of host-refreshed numbers")
        self._scalars_used = end
        arr = self._scalars[start:end].view(np_dtype)
        self.add_guard(lambda: arr.set(np.asarray(values(), np_dtype)))
        return arr

    # ----- use -----------------------------------------------------------------------------------
    def add_guard(self, check: Callable[[], None]) -> None:
        """Run ``check()`` before every replay: it raises :class:`GraphCaptureError` when the captured work no
        longer matches the program's state (e.g. an optimizer's momentum changed), or refreshes numbers the
        captured kernels read from the device (``host_scalars``)."""
        self._guards.append(check)

    def replay(self) -> None:
        """Run the captured work on the current stream (asynchronously, like any kernel launch)."""
        if self._graph is None:
            raise GraphCaptureError("replay() on a CUDAGraph that holds no capture: capture one first")
        for check in self._guards:
            check()
        cp = importlib.import_module("cupy")
        self._graph.launch(cp.cuda.get_current_stream())

    def reset(self) -> None:
        """Free the graph and its memory pool (the static tensors it wrote stay valid until they are dropped)."""
        if current_capture() is self:
            raise GraphCaptureError("reset() while this graph is capturing")
        self._graph = None
        self._guards = []

    def pool(self) -> Any:
        """The graph's private CuPy memory pool (None before a capture)."""
        return self._pool

    def __repr__(self) -> str:
        state = "captured" if self._graph is not None else ("capturing" if current_capture() is self else "empty")
        return f"CUDAGraph({state})"


@contextlib.contextmanager
def graph(cuda_graph: CUDAGraph) -> Iterator[CUDAGraph]:
    """Capture the block's GPU work into ``cuda_graph`` (``torch.cuda.graph``'s form).

    An error inside the block abandons the capture and is raised as :class:`GraphCaptureError`
    naming the cause; the program can carry on eagerly afterwards.
    """
    cuda_graph.capture_begin()
    try:
        yield cuda_graph
    except GraphCaptureError:
        cuda_graph._abort()
        raise
    except Exception as e:
        cuda_graph._abort()
        raise GraphCaptureError(
            f"CUDA graph capture failed: {type(e).__name__}: {e} (at {_origin(e)}). Inside a capture, nothing may "
            "wait for the GPU or copy from the host "
            "(.item(), .tolist(), printing a tensor, copying to the CPU, data-dependent shapes); "
            "warm up eagerly first so that lazily created state exists"
        ) from e
    cuda_graph.capture_end()


def _origin(e: BaseException) -> str:
    """Where the failing call was made: the innermost frame outside CuPy (the op to look at)."""
    where = "?"
    for frame, line in traceback.walk_tb(e.__traceback__):
        name = frame.f_code.co_filename
        if "cupy" not in name and not name.endswith("contextlib.py"):
            where = f"{name}:{line} in {frame.f_code.co_name}"
    return where


_TICK: list[Any] = []


def _tick(cp: Any) -> Any:
    """A one-element kernel ``c += 1`` (uint64), built once."""
    if not _TICK:
        _TICK.append(cp.ElementwiseKernel("", "uint64 c", "c += 1", "axonml_graph_tick"))
    return _TICK[0]
