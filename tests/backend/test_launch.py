"""``backend.launch.Launcher``: arguments of every width reach the kernel as CuPy's own launch passes them,
on the current stream (captured into CUDA graphs), from several threads at once; bad arguments are refused."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.backend.launch import _MAX_ARGS, Launcher, _layout

# out[i] for i < n: every argument width and kind, including a null pointer that must stay unread
_SOURCE = r"""
extern "C" __global__ void test_launch_mix(const float* x, double* out, const long long* skip, signed char a,
                                           unsigned short b, int n, long long big, float s, double d) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = (double)x[i] * s + d + (double)a + (double)b + (double)(big % 1000) + (skip ? 1e9 : 0.0);
}
"""


class _FakeArray:
    """Stands in for ``cupy.ndarray`` as the array type ``_layout`` packs as a pointer (no CuPy on CI)."""


def test_layout_refuses_python_numbers_and_too_many_arguments() -> None:
    with pytest.raises(TypeError, match="NumPy scalar of a fixed width, got int"):
        _layout((_FakeArray, int), _FakeArray)
    with pytest.raises(TypeError, match="NumPy scalar of a fixed width, got float"):
        _layout((float,), _FakeArray)
    with pytest.raises(TypeError, match=f"at most {_MAX_ARGS} arguments"):
        _layout((np.int32,) * (_MAX_ARGS + 1), _FakeArray)


def test_layout_puts_each_argument_in_its_own_slot() -> None:
    layout = _layout((_FakeArray, np.int32, np.float64, np.int8), _FakeArray)
    packed = layout.pack(2**40 + 3, -7, 0.5, -1)
    assert layout.size == 32
    assert np.frombuffer(packed[0:8], np.uint64)[0] == 2**40 + 3
    assert np.frombuffer(packed[8:12], np.int32)[0] == -7
    assert np.frombuffer(packed[16:24], np.float64)[0] == 0.5
    assert np.frombuffer(packed[24:25], np.int8)[0] == -1


def _mix() -> tuple[Any, Launcher]:
    import cupy as cp

    fn = cp.RawModule(code=_SOURCE).get_function("test_launch_mix")
    return fn, Launcher(fn)


def _args(x: Any, out: Any, n: int) -> tuple[Any, ...]:
    return (x, out, np.uint64(0), np.int8(-3), np.uint16(60000), np.int32(n), np.int64(2**40 + 7),
            np.float32(0.5), np.float64(-1.25))


def _expected(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) * 0.5 - 1.25 - 3 + 60000 + (2**40 + 7) % 1000


@pytest.mark.parametrize("n", [1, 1000, 4097])
@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_launch_matches_numpy_and_cupys_own_launch(n: int) -> None:
    import cupy as cp

    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    xd = cp.asarray(x)
    fn, launch = _mix()
    ours, theirs = cp.full(n + 1, 7.0), cp.full(n + 1, 7.0)
    grid = (-(-n // 256),)
    launch(grid, (256,), _args(xd, ours, n))
    fn(grid, (256,), _args(xd, theirs, n))
    np.testing.assert_array_equal(ours.get(), theirs.get())
    np.testing.assert_allclose(ours.get()[:n], _expected(x), rtol=1e-12)
    assert ours.get()[n] == 7.0  # nothing past n written


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_launch_goes_to_the_current_stream_and_into_a_graph_capture() -> None:
    import cupy as cp

    n = 512
    x = np.arange(n, dtype=np.float32)
    xd = cp.asarray(x)
    _, launch = _mix()
    out = cp.zeros(n)
    cp.cuda.Device().synchronize()  # a non-blocking stream does not wait for the default stream's fills
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        launch((2,), (256,), _args(xd, out, n))
        stream.synchronize()
    np.testing.assert_allclose(out.get(), _expected(x), rtol=1e-12)
    out[...] = 0
    cp.cuda.Device().synchronize()
    with stream:
        stream.begin_capture()
        launch((2,), (256,), _args(xd, out, n))
        graph = stream.end_capture()
    assert not out.get().any(), "a captured launch only records"
    graph.launch(stream)
    stream.synchronize()
    np.testing.assert_allclose(out.get(), _expected(x), rtol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_launches_from_many_threads_keep_their_own_arguments() -> None:
    import cupy as cp

    n = 300
    _, launch = _mix()
    xs = [np.full(n, i, np.float32) for i in range(8)]
    outs = [cp.zeros(n) for _ in xs]
    xds = [cp.asarray(x) for x in xs]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(50):
                launch((2,), (256,), _args(xds[i], outs[i], n))
            cp.cuda.Device().synchronize()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for x, out in zip(xs, outs):
        np.testing.assert_allclose(out.get(), _expected(x), rtol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_launch_refuses_a_python_int() -> None:
    import cupy as cp

    _, launch = _mix()
    out = cp.zeros(4)
    with pytest.raises(TypeError, match="got int"):
        launch((1,), (32,), (cp.zeros(4, np.float32), out, np.uint64(0), np.int8(0), np.uint16(0), 4,
                              np.int64(0), np.float32(0), np.float64(0)))
