"""Creating tensors: from data, NumPy, DLPack, constants and ranges."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.errors import AutogradError, DTypeError

# the creation functions tested here (read by the registry test: they have no gradient to check)
NONDIFF_NAMES = [
    "tensor", "as_tensor", "from_numpy", "from_dlpack", "zeros", "ones", "empty", "full", "zeros_like",
    "ones_like", "empty_like", "full_like", "arange", "linspace", "logspace", "eye", "scalar_tensor",
]


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


@pytest.fixture
def default_dtype() -> Iterator[None]:
    saved = ax.get_default_dtype()
    yield
    ax.set_default_dtype(saved)


def test_all_names_exist() -> None:
    for name in NONDIFF_NAMES:
        assert callable(getattr(ax, name)), name


# ----- tensor ------------------------------------------------------------------------
def test_tensor_from_nested_lists() -> None:
    t = ax.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert t.shape == (2, 3) and t.dtype is ax.float32
    np.testing.assert_array_equal(t.numpy(), [[1, 2, 3], [4, 5, 6]])
    assert ax.tensor(((1, 2), (3, 4))).shape == (2, 2)
    assert ax.tensor(range(4)).tolist() == [0, 1, 2, 3]
    assert ax.tensor([[]]).shape == (1, 0)
    assert ax.tensor(7).shape == ()


def test_tensor_copies() -> None:
    a = np.arange(4.0)
    t = ax.tensor(a)
    a[0] = 100
    assert t[0].item() == 0.0
    u = ax.tensor(t)
    t.add_(1)
    assert u.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert u.data_ptr() != t.data_ptr()


def test_tensor_dtype_and_requires_grad() -> None:
    t = ax.tensor([1, 2], dtype=ax.float64, requires_grad=True)
    assert t.dtype is ax.float64 and t.requires_grad and t.is_leaf
    assert ax.tensor([1.9, -1.9], dtype="int32").tolist() == [1, -1]
    with pytest.raises(DTypeError, match="floating point"):
        ax.tensor([1, 2], requires_grad=True)


def test_tensor_from_tensors() -> None:
    t = ax.tensor([ax.tensor(1.0), ax.tensor(2.0)])
    assert t.dtype is ax.float32 and t.tolist() == [1.0, 2.0]
    t = ax.tensor([ax.tensor([1, 2]), ax.tensor([3, 4])])
    assert t.dtype is ax.int64 and t.shape == (2, 2)
    assert ax.tensor([ax.tensor(1.0, dtype=ax.float64), 2.5]).dtype is ax.float64
    assert ax.tensor([[ax.tensor(1), 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    "data,match",
    [
        ([1, [2]], "ragged"),
        ([[1, 2], [3]], "ragged"),
        ("abc", "str"),
        (["a", "b"], "strings"),
        ([1, "a"], "strings"),
        (None, "NoneType"),
        ({1: 2}, "dict"),
        ([1, None], "NoneType"),
        ([object()], "object"),
        (np.array(["a"]), "dtype"),
        ([ax.tensor([1, 2]), ax.tensor([3])], "ragged"),
    ],
)
def test_tensor_bad_input(data: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        ax.tensor(data)


def test_tensor_integer_overflow() -> None:
    with pytest.raises(OverflowError, match="int64"):
        ax.tensor(2**70)
    with pytest.raises(OverflowError, match="int64"):
        ax.tensor([1, 2**63])
    assert ax.tensor([-(2**63), 2**63 - 1]).dtype is ax.int64


def test_tensor_unsupported_numpy_dtypes() -> None:
    with pytest.raises(DTypeError, match="uint16"):
        ax.tensor(np.array([1], dtype=np.uint16))
    with pytest.raises(DTypeError, match="complex"):
        ax.tensor(np.array([1j]))
    with pytest.raises(DTypeError, match="complex"):
        ax.tensor([1j])


def test_tensor_big_endian_is_stored_native() -> None:
    a = np.array([1, 2, 300], dtype=">i4")
    t = ax.tensor(a)
    assert t.dtype is ax.int32 and t.tolist() == [1, 2, 300]
    assert ax.as_tensor(a).tolist() == [1, 2, 300]


# ----- as_tensor / from_numpy ---------------------------------------------------------------
def test_as_tensor_shares_memory() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = ax.as_tensor(a)
    a[0, 0] = 42
    assert t[0, 0].item() == 42
    assert ax.as_tensor(a, dtype=ax.float32).data_ptr() == t.data_ptr()
    c = ax.as_tensor(a, dtype=ax.float64)  # a dtype change has to copy
    a[0, 1] = -1
    assert c[0, 1].item() == 1.0
    assert ax.as_tensor(t) is t
    assert ax.as_tensor(t, dtype=ax.float64).dtype is ax.float64
    assert ax.as_tensor([1, 2]).tolist() == [1, 2]


def test_from_numpy_zero_copy() -> None:
    a = np.zeros((2, 2), dtype=np.int16)
    t = ax.from_numpy(a)
    assert t.dtype is ax.int16
    a[1, 1] = 7
    assert t[1, 1].item() == 7
    t[0, 0] = 3  # and the other way
    assert a[0, 0] == 3
    assert np.shares_memory(t.numpy(), a)
    # a non-contiguous view is shared too, with its strides
    v = np.arange(12.0).reshape(3, 4)[:, ::2]
    tv = ax.from_numpy(v)
    assert tv.stride() == (4, 2) and not tv.is_contiguous()
    v[2, 1] = -5
    assert tv[2, 1].item() == -5


def test_from_numpy_errors() -> None:
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        ax.from_numpy([1, 2])  # type: ignore[arg-type]
    with pytest.raises(DTypeError, match="uint32"):
        ax.from_numpy(np.zeros(2, dtype=np.uint32))
    with pytest.raises(DTypeError, match="byte order"):
        ax.from_numpy(np.zeros(2, dtype=">f4"))


def test_numpy_item_tolist() -> None:
    t = ax.tensor([[1.5, 2.5]])
    assert t.numpy().dtype == np.float32
    assert np.shares_memory(t.numpy(), t.numpy())
    assert ax.tensor([3]).item() == 3 and isinstance(ax.tensor([3]).item(), int)
    assert isinstance(ax.tensor(2.5).item(), float)
    assert ax.tensor(True).item() is True
    assert ax.tensor(2.0, dtype=ax.bfloat16).item() == 2.0
    assert t.tolist() == [[1.5, 2.5]]
    assert ax.tensor(4).tolist() == 4
    with pytest.raises(ValueError, match="one element"):
        t.item()
    g = ax.tensor([1.0], requires_grad=True)
    with pytest.raises(AutogradError, match="detach"):
        g.numpy()
    assert g.detach().numpy().tolist() == [1.0]
    assert g.numpy(force=True).tolist() == [1.0]
    assert g.item() == 1.0  # item() is fine on a tensor that requires grad


def test_array_protocol() -> None:
    t = ax.tensor([1, 2, 3], dtype=ax.int32)
    a = np.asarray(t)
    assert a.dtype == np.int32 and a.tolist() == [1, 2, 3]
    assert np.asarray(t, dtype=np.float64).dtype == np.float64


# ----- DLPack ----------------------------------------------------------------------------
def test_dlpack_numpy_both_ways() -> None:
    t = ax.arange(6.0).reshape(2, 3)
    a = np.from_dlpack(t)
    a[0, 0] = 100.0
    assert t[0, 0].item() == 100.0
    b = np.arange(4, dtype=np.int32)
    u = ax.from_dlpack(b)
    assert u.dtype is ax.int32
    b[1] = 9
    assert u[1].item() == 9
    # a transposed (strided) tensor keeps its strides
    assert np.from_dlpack(t.T).strides == np.asarray(t.numpy().T).strides


def test_dlpack_errors() -> None:
    with pytest.raises(TypeError, match="__dlpack__ and"):
        ax.from_dlpack([1, 2])
    with pytest.raises(BufferError, match="requires grad"):
        np.from_dlpack(ax.ones(2, requires_grad=True))
    with pytest.raises(BufferError, match="bfloat16"):
        np.from_dlpack(ax.ones(2, dtype=ax.bfloat16))


@pytest.mark.torch
def test_dlpack_torch_both_ways(torch: Any) -> None:
    x = ax.arange(6.0).reshape(2, 3)
    t = torch.from_dlpack(x)
    assert t.dtype == torch.float32 and tuple(t.shape) == (2, 3)
    t[0, 1] = 200.0
    assert x[0, 1].item() == 200.0
    src = torch.arange(4, dtype=torch.int64)
    y = ax.from_dlpack(src)
    assert y.dtype is ax.int64
    src[0] = -3
    assert y[0].item() == -3
    for name in ("bool", "uint8", "int8", "int16", "int32", "float16", "float64"):
        s = torch.ones(3, dtype=getattr(torch, name))
        assert ax.from_dlpack(s).dtype.name == name
        assert torch.from_dlpack(ax.ones(3, dtype=getattr(ax, name))).dtype == getattr(torch, name)
    st = torch.ones(2, 3).t()
    assert ax.from_dlpack(st).stride() == st.stride()


@pytest.mark.torch
def test_dlpack_torch_errors(torch: Any) -> None:
    with pytest.raises(DTypeError, match="unsupported dtype"):
        ax.from_dlpack(torch.ones(2, dtype=torch.bfloat16))
    with pytest.raises(BufferError):
        ax.from_dlpack(torch.ones(2, requires_grad=True))


# ----- constants ---------------------------------------------------------------------------
@pytest.mark.parametrize("fn,value", [(ax.zeros, 0), (ax.ones, 1)])
def test_zeros_ones(fn: Any, value: int) -> None:
    for t in (fn(2, 3), fn((2, 3)), fn([2, 3])):
        assert t.shape == (2, 3) and t.dtype is ax.float32
        assert (t.numpy() == value).all()
    assert fn().shape == ()
    assert fn(0, 4).shape == (0, 4)
    assert fn(2, dtype=ax.int32).dtype is ax.int32
    assert fn(2, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="non-negative"):
        fn(2, -1)
    with pytest.raises(ValueError, match="non-negative"):
        fn(2.5)


def test_empty_and_full() -> None:
    assert ax.empty(3, 2).shape == (3, 2)
    assert ax.empty(0).numel() == 0
    assert ax.full((2,), 3).dtype is ax.int64  # the fill value decides the dtype, as in PyTorch
    assert ax.full((2,), 3.0).dtype is ax.float32
    assert ax.full((2,), True).dtype is ax.bool
    assert ax.full(3, 1.5).tolist() == [1.5, 1.5, 1.5]
    assert ax.full([2], 1.5, dtype=ax.int64).tolist() == [1, 1]
    assert ax.full((1,), ax.tensor(2.0)).tolist() == [2.0]
    assert ax.full((2, 2), 0.5, requires_grad=True).requires_grad


def test_like_functions() -> None:
    x = ax.ones(2, 3, dtype=ax.int32)
    for fn in (ax.zeros_like, ax.ones_like, ax.empty_like):
        y = fn(x)
        assert y.shape == x.shape and y.dtype is ax.int32 and y.device == x.device
        assert fn(x, dtype=ax.float64).dtype is ax.float64
    assert ax.zeros_like(x).tolist() == [[0, 0, 0]] * 2
    assert ax.ones_like(x).tolist() == [[1, 1, 1]] * 2
    assert ax.full_like(x, 7).tolist() == [[7, 7, 7]] * 2
    assert ax.full_like(x, 2.7).tolist() == [[2, 2, 2]] * 2  # x's dtype wins
    assert ax.full_like(x, 2.5, dtype=ax.float32).dtype is ax.float32
    assert ax.zeros_like(ax.ones(2), requires_grad=True).requires_grad
    with pytest.raises(TypeError, match="Tensor"):
        ax.zeros_like(np.ones(2))  # type: ignore[arg-type]


def test_scalar_tensor(default_dtype: None) -> None:
    s = ax.scalar_tensor(3)
    assert s.shape == () and s.dtype is ax.float32 and s.item() == 3.0  # default dtype, as in PyTorch
    assert ax.scalar_tensor(3, dtype=ax.int64).dtype is ax.int64
    assert ax.scalar_tensor(1.5, requires_grad=True).requires_grad
    ax.set_default_dtype(ax.float64)
    assert ax.scalar_tensor(1).dtype is ax.float64


def test_eye() -> None:
    np.testing.assert_array_equal(ax.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(ax.eye(2, 4).numpy(), np.eye(2, 4))
    assert ax.eye(2, 0).shape == (2, 0)
    assert ax.eye(3, dtype=ax.int64).dtype is ax.int64
    with pytest.raises(ValueError):
        ax.eye(-1)


# ----- ranges ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((5,), {}), ((2, 7), {}), ((0, 10, 3), {}), ((5, 0, -1), {}), ((5, 0), {}), ((10, 0, -3), {}),
        ((0.0, 1.0, 0.1), {}), ((1, 2, 0.25), {}), ((0, -1, -0.3), {}), ((3.0,), {}), ((-2.5, 2.5, 0.5), {}),
        ((10,), {"dtype": "float32"}), ((0, 2.5, 0.5), {"dtype": "int64"}),
    ],
)
def test_arange_matches_numpy(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    t = ax.arange(*args, **kwargs)
    ref = np.arange(*args)
    if "dtype" in kwargs:
        ref = ref.astype(kwargs["dtype"])
    elif ref.dtype.kind == "f":
        ref = ref.astype(np.float32)
    assert t.dtype.np == ref.dtype
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-6, atol=1e-6)


def test_arange_dtypes_and_errors() -> None:
    assert ax.arange(5).dtype is ax.int64
    assert ax.arange(5.0).dtype is ax.float32
    assert ax.arange(0, 5, 1.0).dtype is ax.float32
    assert ax.arange(ax.tensor(3)).tolist() == [0, 1, 2]
    big = ax.arange(2**60, 2**60 + 3)  # exact: no trip through float64
    assert (big - 2**60).tolist() == [0, 1, 2]
    assert ax.arange(3, requires_grad=False).requires_grad is False
    assert ax.arange(3.0, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="non-zero"):
        ax.arange(0, 5, 0)
    with pytest.raises(TypeError, match="number"):
        ax.arange("a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        ax.arange(0, float("inf"))


@pytest.mark.torch
def test_arange_length_matches_torch(torch: Any) -> None:
    for args in [(0, 1, 0.1), (1, 2.5, 0.3), (0, -1, -0.3), (-3, 3, 0.7), (0, 10, 3), (10, 0, -3)]:
        assert ax.arange(*args).shape == tuple(torch.arange(*args).shape), args


def test_linspace() -> None:
    np.testing.assert_allclose(ax.linspace(0, 1, 5).numpy(), np.linspace(0, 1, 5, dtype=np.float32))
    np.testing.assert_allclose(ax.linspace(2, -2, 3).numpy(), [2.0, 0.0, -2.0])
    assert ax.linspace(0, 1, 1).tolist() == [0.0]
    assert ax.linspace(0, 1, 0).shape == (0,)
    assert ax.linspace(0, 1, 3, dtype=ax.float64).dtype is ax.float64
    assert ax.linspace(0, 10, 5, dtype=ax.int64).tolist() == [0, 2, 5, 7, 10]
    assert ax.linspace(0.0, 1.0, 3, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="non-negative"):
        ax.linspace(0, 1, -1)
    with pytest.raises(TypeError, match="integer"):
        ax.linspace(0, 1, 2.5)  # type: ignore[arg-type]


def test_logspace() -> None:
    np.testing.assert_allclose(ax.logspace(0, 2, 3).numpy(), [1.0, 10.0, 100.0])
    np.testing.assert_allclose(ax.logspace(0, 3, 4, base=2).numpy(), [1.0, 2.0, 4.0, 8.0])
    assert ax.logspace(0, 1, 2, dtype=ax.float64).dtype is ax.float64
    assert ax.logspace(0, 1, 0).shape == (0,)
    with pytest.raises(ValueError, match="non-negative"):
        ax.logspace(0, 1, -2)


@pytest.mark.torch
def test_ranges_match_torch(torch: Any) -> None:
    pairs = [
        (ax.linspace(-1, 3, 7), torch.linspace(-1, 3, 7)),
        (ax.logspace(-1, 1, 5), torch.logspace(-1, 1, 5)),
        (ax.logspace(0, 4, 5, base=3), torch.logspace(0, 4, 5, base=3)),
        (ax.linspace(0, 10, 5, dtype=ax.int64), torch.linspace(0, 10, 5, dtype=torch.int64)),
        (ax.arange(-2.5, 2.5, 0.5), torch.arange(-2.5, 2.5, 0.5)),
        (ax.eye(3, 2), torch.eye(3, 2)),
        (ax.full((2,), 3), torch.full((2,), 3)),
    ]
    for a, t in pairs:
        assert a.dtype.name == str(t.dtype).removeprefix("torch.")
        np.testing.assert_allclose(a.numpy(), t.numpy(), rtol=1e-6)


def test_python_float_converts_straight_to_the_requested_dtype() -> None:
    # not through the default float32 first: 0.05 must keep its float64 digits
    assert ax.tensor(0.05, dtype=ax.float64).item() == 0.05
    assert ax.tensor([0.1, 0.2], dtype=ax.float64).tolist() == [0.1, 0.2]
    assert ax.tensor([0.05]).dtype is ax.float32
