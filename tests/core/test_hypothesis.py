"""Property tests: random shapes (broadcasting, zero-size dims) for core ops against NumPy.

Values come from a NumPy generator seeded by Hypothesis (no adversarial ties or
overflows); Hypothesis explores the shapes, dims and seeds. Forward results must
equal NumPy in float64; for differentiable ops the gradient has the input's shape
and, on small inputs, matches central finite differences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import axonml as ax  # noqa: E402
from harness import numeric_grad  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
SMALL = 12  # finite differences only up to this many elements per input

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0, max_side=4)
seeds = st.integers(0, 2**32 - 1)


def _values(shape: tuple[int, ...], seed: int, lo: float = -2.0, hi: float = 2.0, away: float = 0.0) -> np.ndarray:
    """Uniform values in [lo, hi]; with ``away``, at least that far from zero (for division, abs, ...)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(lo, hi, size=shape)
    if away:
        x = np.where(x >= 0, x + away, x - away)
    return x


def _check_grads(fn: Callable[..., Any], arrays: list[np.ndarray], seed: int) -> None:
    """Backward of sum(fn(*x) * w): gradient shapes equal input shapes; small cases match finite differences."""
    xs = [ax.tensor(a, dtype=ax.float64, requires_grad=True) for a in arrays]
    out = fn(*xs)
    w = np.random.default_rng(seed + 1).uniform(0.5, 1.5, size=out.shape)
    (out * ax.tensor(w)).sum().backward()
    for x, a in zip(xs, arrays):
        assert x.grad is not None and x.grad.shape == a.shape and x.grad.dtype is ax.float64

    def value(arrs: list[np.ndarray]) -> float:
        with ax.no_grad():
            return float((fn(*[ax.tensor(v, dtype=ax.float64) for v in arrs]) * ax.tensor(w)).sum().item())

    for i, (x, a) in enumerate(zip(xs, arrays)):
        if 0 < a.size <= SMALL:
            expected = numeric_grad(value, [v.copy() for v in arrays], i)
            np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5, atol=1e-6)


# ----- binary ops --------------------------------------------------------------------------
BINARY: dict[str, tuple[Callable[..., Any], Callable[..., Any], bool]] = {
    "add": (lambda a, b: a + b, np.add, True),
    "sub": (lambda a, b: a - b, np.subtract, True),
    "mul": (lambda a, b: a * b, np.multiply, True),
    "div": (lambda a, b: a / b, np.divide, True),
    "maximum": (ax.maximum, np.maximum, True),
    "minimum": (ax.minimum, np.minimum, True),
    "lt": (lambda a, b: a < b, np.less, False),
    "ge": (lambda a, b: a >= b, np.greater_equal, False),
    "eq": (lambda a, b: a == b, np.equal, False),
    "ne": (lambda a, b: a != b, np.not_equal, False),
}


@pytest.mark.parametrize("name", list(BINARY))
@SETTINGS
@given(shapes=pairs, seed=seeds)
def test_binary_ops(name: str, shapes: Any, seed: int) -> None:
    fn, ref, diff = BINARY[name]
    sa, sb = shapes.input_shapes
    a = _values(sa, seed)
    b = _values(sb, seed + 7, away=0.5 if name == "div" else 0.0)
    got = fn(ax.tensor(a), ax.tensor(b))
    want = ref(a, b)
    assert got.shape == want.shape == shapes.result_shape
    if diff:
        assert got.dtype is ax.float64
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-13, atol=0)
        _check_grads(fn, [a, b], seed)
    else:
        assert got.dtype is ax.bool
        np.testing.assert_array_equal(got.numpy(), want)


@SETTINGS
@given(shapes=pairs, seed=seeds)
def test_equal_values_compare_equal(shapes: Any, seed: int) -> None:
    """Comparisons on values drawn from a small set, so ties are common."""
    sa, sb = shapes.input_shapes
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 3, size=sa).astype(np.float32), rng.integers(0, 3, size=sb).astype(np.float32)
    x, y = ax.tensor(a), ax.tensor(b)
    for op, ref in ((x == y, a == b), (x <= y, a <= b), (x > y, a > b), (x != y, a != b)):
        np.testing.assert_array_equal(op.numpy(), ref)


@SETTINGS
@given(shapes=pairs, seed=seeds, scalar=st.sampled_from([2, -3, 0.5, 2.5]))
def test_float32_with_scalars(shapes: Any, seed: int, scalar: float) -> None:
    sa, _ = shapes.input_shapes
    a = _values(sa, seed).astype(np.float32)
    x = ax.tensor(a)
    s = np.float32(scalar)
    for got, want in ((x * scalar, a * s), (scalar - x, s - a), (x + scalar, a + s)):
        assert got.dtype is ax.float32 and got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


@SETTINGS
@given(shapes=pairs, seed=seeds)
def test_integer_binary_ops(shapes: Any, seed: int) -> None:
    sa, sb = shapes.input_shapes
    rng = np.random.default_rng(seed)
    a, b = rng.integers(-20, 20, size=sa), rng.integers(1, 6, size=sb)
    x, y = ax.tensor(a), ax.tensor(b)
    np.testing.assert_array_equal((x + y).numpy(), a + b)
    np.testing.assert_array_equal((x * y).numpy(), a * b)
    np.testing.assert_array_equal((x // y).numpy(), a // b)
    np.testing.assert_array_equal((x % y).numpy(), a % b)
    q = x / y
    assert q.dtype is ax.float32
    np.testing.assert_allclose(q.numpy(), (a / b).astype(np.float32), rtol=1e-6)


# ----- unary ops ---------------------------------------------------------------------------
def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


UNARY: dict[str, tuple[Callable[..., Any], Callable[..., Any], dict[str, float]]] = {
    "exp": (ax.exp, np.exp, {}),
    "log": (ax.log, np.log, {"lo": 0.2, "hi": 3.0}),
    "sqrt": (ax.sqrt, np.sqrt, {"lo": 0.2, "hi": 3.0}),
    "sin": (ax.sin, np.sin, {}),
    "tanh": (ax.tanh, np.tanh, {}),
    "sigmoid": (ax.sigmoid, _sigmoid, {}),
    "abs": (ax.abs, np.abs, {"away": 0.1}),
    "neg": (lambda x: -x, np.negative, {}),
    "relu": (ax.relu, lambda a: np.maximum(a, 0.0), {"away": 0.1}),
    "square": (lambda x: x**2, np.square, {}),
    "reciprocal": (lambda x: 1 / x, np.reciprocal, {"away": 0.3}),
}


@pytest.mark.parametrize("name", list(UNARY))
@SETTINGS
@given(shape=shapes, seed=seeds)
def test_unary_ops(name: str, shape: tuple[int, ...], seed: int) -> None:
    fn, ref, dom = UNARY[name]
    a = _values(shape, seed, **dom)
    got = fn(ax.tensor(a))
    assert got.shape == shape and got.dtype is ax.float64
    np.testing.assert_allclose(got.numpy(), ref(a), rtol=1e-12, atol=1e-15)
    _check_grads(fn, [a], seed)


# ----- reductions and movement ---------------------------------------------------------------
@st.composite
def shape_and_dims(draw: Any) -> tuple[tuple[int, ...], Any, bool]:
    shape = draw(shapes)
    nd = len(shape)
    if nd == 0 or draw(st.booleans()):
        dims: Any = None
    else:
        axes = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
        dims = tuple(d - nd if draw(st.booleans()) else d for d in axes)  # negative dims too
        if len(dims) == 1 and draw(st.booleans()):
            dims = dims[0]
    return shape, dims, draw(st.booleans())


@SETTINGS
@given(case=shape_and_dims(), seed=seeds)
def test_sum(case: tuple[tuple[int, ...], Any, bool], seed: int) -> None:
    shape, dims, keepdim = case
    a = _values(shape, seed)
    fn = (lambda x: x.sum()) if dims is None and not keepdim else (lambda x: x.sum(dim=dims, keepdim=keepdim))
    got = fn(ax.tensor(a))
    want = np.sum(a, axis=dims, keepdims=keepdim)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    _check_grads(fn, [a], seed)
    i = ax.tensor(np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape))
    assert i.sum().dtype is ax.int64  # integer sums accumulate in int64, as in PyTorch


@st.composite
def reshapes(draw: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    shape = draw(shapes)
    n = int(np.prod(shape))
    if n == 0:
        return shape, draw(st.sampled_from([(0,), (0, 3), (2, 0, 1)]))
    target: list[int] = []  # random factors of n, in a random order
    rest = n
    while rest > 1 and len(target) < 3:
        d = draw(st.sampled_from([k for k in range(1, rest + 1) if rest % k == 0]))
        target.append(d)
        rest //= d
    target.append(rest)
    if draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return shape, tuple(draw(st.permutations(target)))


@SETTINGS
@given(case=reshapes(), seed=seeds)
def test_reshape(case: tuple[tuple[int, ...], tuple[int, ...]], seed: int) -> None:
    shape, target = case
    a = _values(shape, seed)
    x = ax.tensor(a)
    got = x.reshape(target)
    want = a.reshape(target)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.numpy(), want)
    if a.size:
        assert np.shares_memory(got.numpy(), x.numpy())  # a contiguous tensor reshapes to a view
    _check_grads(lambda t: t.reshape(target), [a], seed)


@st.composite
def shape_and_pair(draw: Any) -> tuple[tuple[int, ...], int, int]:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4))
    nd = len(shape)
    return shape, draw(st.integers(-nd, nd - 1)), draw(st.integers(-nd, nd - 1))


@SETTINGS
@given(case=shape_and_pair(), seed=seeds)
def test_transpose(case: tuple[tuple[int, ...], int, int], seed: int) -> None:
    shape, d0, d1 = case
    a = _values(shape, seed)
    x = ax.tensor(a)
    got = x.transpose(d0, d1)
    want = np.swapaxes(a, d0, d1)
    assert got.shape == want.shape and got.stride() == tuple(s // 8 for s in want.strides)
    np.testing.assert_array_equal(got.numpy(), want)
    _check_grads(lambda t: t.transpose(d0, d1), [a], seed)
    perm = tuple(np.random.default_rng(seed).permutation(len(shape)).tolist())
    np.testing.assert_array_equal(x.permute(perm).numpy(), a.transpose(perm))
    np.testing.assert_array_equal(x.permute(perm).contiguous().numpy(), a.transpose(perm))


@SETTINGS
@given(case=shape_and_pair(), seed=seeds)
def test_composed_expression(case: tuple[tuple[int, ...], int, int], seed: int) -> None:
    """A chain of the above: broadcasting, a transpose, a reduction and an elementwise op together."""
    shape, d0, d1 = case
    a = _values(shape, seed)
    b = _values(shape[-1:], seed + 3, away=0.5)

    def fn(x: Any, y: Any) -> Any:
        return ((x * y).tanh() / y).transpose(d0, d1).sum(dim=0) + x.sum()

    def ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.swapaxes(np.tanh(x * y) / y, d0, d1).sum(axis=0) + x.sum()

    got = fn(ax.tensor(a), ax.tensor(b))
    np.testing.assert_allclose(got.numpy(), ref(a, b), rtol=1e-12, atol=1e-12)
    _check_grads(fn, [a, b], seed)
