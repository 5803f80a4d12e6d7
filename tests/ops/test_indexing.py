"""Indexing ops (gather/scatter, index_*, masks, sort/topk, triangles, one_hot, nonzero, unique)."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import AutogradError, DTypeError, IndexingError, ShapeError
from harness import OpSpec, op_tests

T = tr.torch


class Idx(tuple):
    """An input shape whose array is int64 indices in [0, high) (``unique_dim``: no repeats along it)."""

    high: int
    unique_dim: int | None

    def __new__(cls, shape: tuple[int, ...], high: int, unique_dim: int | None = None) -> Idx:
        obj = super().__new__(cls, shape)
        obj.high, obj.unique_dim = high, unique_dim
        return obj


def make(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(shape, Idx):
        return rng.uniform(-2.0, 2.0, size=shape)
    if shape.unique_dim is None:
        return rng.integers(0, shape.high, size=shape, dtype=np.int64)
    d = shape.unique_dim
    moved = (*tuple(s for i, s in enumerate(shape) if i != d), shape[d])
    flat = [rng.permutation(shape.high)[: shape[d]] for _ in range(int(np.prod(moved[:-1])))]
    return np.moveaxis(np.array(flat, dtype=np.int64).reshape(moved), -1, d)


def _along(index: np.ndarray, dim: int) -> tuple[np.ndarray, ...]:
    return tuple(index if i == dim else np.arange(n).reshape([-1 if j == i else 1 for j in range(index.ndim)])
                 for i, n in enumerate(index.shape))


def _corner(a: np.ndarray, shape: tuple[int, ...], skip: int | None = None) -> np.ndarray:
    return a[tuple(slice(None) if i == skip else slice(0, n) for i, n in enumerate(shape))]


def np_gather(x, dim, i):
    return np.take_along_axis(_corner(x, i.shape, dim), i, dim)


def np_scatter_add(x, dim, i, s):
    out = x.copy()
    np.add.at(out, _along(i, dim), _corner(s, i.shape))
    return out


def np_scatter(x, dim, i, s):
    out = x.copy()
    out[_along(i, dim)] = _corner(s, i.shape) if isinstance(s, np.ndarray) else s
    return out


def np_index_add(x, dim, i, s, alpha=1.0):
    out = x.copy()
    np.add.at(out, (slice(None),) * dim + (i,), alpha * s)
    return out


def np_sort(x, dim, descending=False):
    idx = np.argsort(-x if descending else x, axis=dim, kind="stable")
    return np.take_along_axis(x, idx, dim), idx


def np_topk(x, k, dim, largest=True):
    v, i = np_sort(x, dim, largest)
    sl = (slice(None),) * (dim % x.ndim) + (slice(0, k),)
    return v[sl], i[sl]


def np_unique(a, dim=None):
    v, inv, c = np.unique(a, return_inverse=True, return_counts=True, axis=dim)
    return v, inv.reshape(a.shape if dim is None else -1), c


def _np_take_along_dim(x, i, dim):
    outer = np.broadcast_shapes((*x.shape[:dim], 1, *x.shape[dim + 1:]), (*i.shape[:dim], 1, *i.shape[dim + 1:]))
    xb = np.broadcast_to(x, (*outer[:dim], x.shape[dim], *outer[dim + 1:]))
    ib = np.broadcast_to(i, (*outer[:dim], i.shape[dim], *outer[dim + 1:]))
    return np.take_along_axis(xb, ib, dim)


def _np_index_fill(x, dim, i, v):
    out = x.copy()
    out[(slice(None),) * dim + (i,)] = v
    return out


def _np_masked_select(x, m):
    xb, mb = np.broadcast_arrays(x, m)
    return xb[mb]


def _idx(name, fn, ref, shapes, grad_inputs=None, **kw) -> OpSpec:
    return OpSpec(name, fn, ref, shapes=shapes, input_maker=make, grad_inputs=grad_inputs, **kw)


F = {"grad": False}  # integer-valued results: forward and torch parity only

SPECS = [
    _idx("gather", lambda x, i: ax.gather(x, 1, i), lambda x, i: np_gather(x, 1, i),
         (((3, 4), Idx((3, 6), 4)), ((3, 4), Idx((2, 2), 4)), ((0, 4), Idx((0, 2), 4)), ((3, 4), Idx((3, 0), 4))),
         (0,), torch_fn=lambda x, i: T().gather(x, 1, i)),
    _idx("gather_dim0", lambda x, i: x.gather(0, i), lambda x, i: np_gather(x, 0, i),
         (((3, 4, 2), Idx((5, 4, 1), 3)),), (0,), torch_fn=lambda x, i: x.gather(0, i)),
    _idx("scatter_add", lambda x, i, s: ax.scatter_add(x, 0, i, s), lambda x, i, s: np_scatter_add(x, 0, i, s),
         (((3, 4), Idx((5, 4), 3), (5, 4)), ((3, 4), Idx((2, 3), 3), (4, 4)), ((3, 4), Idx((0, 4), 3), (0, 4))),
         (0, 2), torch_fn=lambda x, i, s: T().scatter_add(x, 0, i, s)),
    _idx("scatter", lambda x, i, s: ax.scatter(x, 1, i, s), lambda x, i, s: np_scatter(x, 1, i, s),
         (((3, 4), Idx((3, 2), 4, unique_dim=1), (3, 3)), ((2, 5), Idx((1, 5), 5, unique_dim=1), (2, 5))),
         (0, 2), torch_fn=lambda x, i, s: T().scatter(x, 1, i, s)),
    _idx("scatter_value", lambda x, i: ax.scatter(x, 0, i, value=2.5), lambda x, i: np_scatter(x, 0, i, 2.5),
         (((3, 4), Idx((2, 4), 3)), ((3, 4), Idx((0, 4), 3))), (0,),
         torch_fn=lambda x, i: T().scatter(x, 0, i, value=2.5)),
    _idx("take_along_dim", lambda x, i: ax.take_along_dim(x, i, 1), lambda x, i: _np_take_along_dim(x, i, 1),
         (((3, 4), Idx((3, 2), 4)), ((3, 4), Idx((1, 6), 4)), ((2, 3, 1), Idx((1, 4, 5), 3))),
         (0,), torch_fn=lambda x, i: T().take_along_dim(x, i, 1)),
    _idx("take_along_dim_flat", lambda x, i: ax.take_along_dim(x, i), lambda x, i: x.reshape(-1)[i.reshape(-1)],
         (((3, 4), Idx((5,), 12)), ((3, 4), Idx((2, 2), 12))), (0,), torch_fn=lambda x, i: T().take_along_dim(x, i)),
    _idx("index_select", lambda x, i: ax.index_select(x, 1, i), lambda x, i: x[:, i],
         (((3, 4), Idx((5,), 4)), ((3, 4), Idx((0,), 4)), ((0, 4), Idx((3,), 4))),
         (0,), torch_fn=lambda x, i: T().index_select(x, 1, i)),
    _idx("index_add", lambda x, i, s: ax.index_add(x, 0, i, s, alpha=2.0),
         lambda x, i, s: np_index_add(x, 0, i, s, 2.0),
         (((3, 4), Idx((5,), 3), (5, 4)), ((3, 4), Idx((0,), 3), (0, 4))),
         (0, 2), torch_fn=lambda x, i, s: T().index_add(x, 0, i, s, alpha=2.0)),
    _idx("index_fill", lambda x, i: ax.index_fill(x, 1, i, -1.5), lambda x, i: _np_index_fill(x, 1, i, -1.5),
         (((3, 4), Idx((3,), 4)), ((3, 4), Idx((0,), 4))), (0,), torch_fn=lambda x, i: T().index_fill(x, 1, i, -1.5)),
    _idx("masked_fill", lambda x, m: ax.masked_fill(x, m > 0, 0.5), lambda x, m: np.where(m > 0, 0.5, x),
         (((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 0), (2, 0)), ((3, 1), (2, 3, 4))),
         (0,), torch_fn=lambda x, m: T().masked_fill(x, m > 0, 0.5)),
    _idx("masked_fill_tensor_value", lambda x, m, v: ax.masked_fill(x, m > 0, v), lambda x, m, v: np.where(m > 0, v, x),
         (((3, 4), (3, 4), ()),), (0, 2), torch_fn=lambda x, m, v: T().masked_fill(x, m > 0, v)),
    _idx("masked_select", lambda x, m: ax.masked_select(x, m > 0), lambda x, m: _np_masked_select(x, m > 0),
         (((3, 4), (3, 4)), ((3, 4), (4,)), ((1, 4), (3, 1)), ((0,), (0,))),
         (0,), torch_fn=lambda x, m: T().masked_select(x, m > 0)),
    _idx("sort", lambda x: ax.sort(x, dim=1), lambda x: np_sort(x, 1), (((3, 4),), ((0, 3),), ((3, 0),)),
         torch_fn=lambda x: T().sort(x, dim=1)),
    _idx("sort_descending", lambda x: x.sort(0, descending=True), lambda x: np_sort(x, 0, True), (((4, 3),), ((5,),)),
         torch_fn=lambda x: x.sort(0, descending=True)),
    _idx("argsort", lambda x: ax.argsort(x, 0), lambda x: np.argsort(x, 0, kind="stable"), (((4, 3),), ((0,),)),
         torch_fn=lambda x: T().argsort(x, 0), **F),
    _idx("topk", lambda x: ax.topk(x, 2, dim=1), lambda x: np_topk(x, 2, 1), (((3, 4),), ((0, 4),), ((3, 2),)),
         torch_fn=lambda x: T().topk(x, 2, dim=1)),
    _idx("topk_smallest", lambda x: x.topk(3, 0, largest=False), lambda x: np_topk(x, 3, 0, largest=False),
         (((5, 2),),), torch_fn=lambda x: x.topk(3, 0, largest=False)),
    _idx("tril", lambda x: ax.tril(x), lambda x: np.tril(x), (((3, 4),), ((2, 4, 3),), ((0, 3),)),
         torch_fn=tr.fn("tril")),
    _idx("tril_diagonal", lambda x: x.tril(-1), lambda x: np.tril(x, -1), (((4, 3),),), torch_fn=lambda x: x.tril(-1)),
    _idx("triu", lambda x: ax.triu(x, 1), lambda x: np.triu(x, 1), (((3, 4),), ((2, 4, 3),), ((3, 0),)),
         torch_fn=lambda x: T().triu(x, 1)),
    _idx("one_hot", lambda i: ax.one_hot(i, 5), lambda i: np.eye(5, dtype=np.int64)[i],
         ((Idx((3, 4), 5),), (Idx((0,), 5),), (Idx((), 5),)),
         torch_fn=lambda i: T().nn.functional.one_hot(i, 5), **F),
    _idx("one_hot_infer", lambda i: ax.one_hot(i), lambda i: np.eye(i.max() + 1, dtype=np.int64)[i],
         ((Idx((6,), 4),),), torch_fn=lambda i: T().nn.functional.one_hot(i), **F),
    _idx("nonzero", lambda x: ax.nonzero(x > 0), lambda x: np.argwhere(x > 0), (((3, 4),), ((0, 3),), ((),)),
         torch_fn=lambda x: T().nonzero(x > 0), **F),
    _idx("nonzero_tuple", lambda x: ax.nonzero(x > 0, as_tuple=True), lambda x: np.nonzero(x > 0),
         (((3, 4),), ((0,),)), torch_fn=lambda x: T().nonzero(x > 0, as_tuple=True), **F),
    _idx("argwhere", lambda x: ax.argwhere(x > 0), lambda x: np.argwhere(x > 0), (((2, 3, 2),),),
         torch_fn=lambda x: T().argwhere(x > 0), **F),
    _idx("unique", lambda i: ax.unique(i, return_inverse=True, return_counts=True), np_unique,
         ((Idx((4, 5), 6),), (Idx((0,), 3),)),
         torch_fn=lambda i: T().unique(i, return_inverse=True, return_counts=True), **F),
    _idx("unique_dim", lambda i: i.unique(dim=0, return_inverse=True, return_counts=True), lambda i: np_unique(i, 0),
         ((Idx((8, 2), 2),),), torch_fn=lambda i: i.unique(dim=0, return_inverse=True, return_counts=True), **F),
    _idx("unique_values", lambda x: ax.unique(x.round()), lambda x: np.unique(np.round(x)), (((4, 5),),),
         torch_fn=lambda x: T().unique(x.round()), **F),
]


globals().update(op_tests(SPECS))


# ----- semantics the harness does not cover --------------------------------------------------
def test_gather_repeated_indices_accumulate_and_second_derivative():
    x = ax.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = ax.gather(x, 0, ax.tensor([2, 2, 0, 2]))
    (g,) = ax.autograd.grad((y**3).sum(), x, create_graph=True)
    assert g.tolist() == [3.0, 0.0, 81.0]  # 3 x^2, three times at index 2
    (gg,) = ax.autograd.grad(g.sum(), x)
    assert gg.tolist() == [6.0, 0.0, 54.0]


def test_sort_values_are_twice_differentiable():
    x = ax.tensor([[3.0, -1.0, 2.0]], requires_grad=True)
    v = ax.sort(x, descending=True).values
    w = ax.tensor([[1.0, 10.0, 100.0]])
    (g,) = ax.autograd.grad(((v**2) * w).sum(), x, create_graph=True)
    assert g.tolist() == [[6.0, -200.0, 40.0]]
    (gg,) = ax.autograd.grad(g.sum(), x)
    assert gg.tolist() == [[2.0, 200.0, 20.0]]


def test_sort_and_topk_return_named_tuples():
    x = ax.tensor([[1.0, 3.0, 2.0]])
    r = x.sort()
    assert type(r).__name__ == "sort" and r._fields == ("values", "indices")
    values, indices = r
    assert values.tolist() == [[1.0, 2.0, 3.0]] and indices.tolist() == [[0, 2, 1]]
    assert indices.dtype is ax.int64
    t = x.topk(1)
    assert type(t).__name__ == "topk" and t.values.tolist() == [[3.0]] and t.indices.tolist() == [[1]]


def test_sort_nan_ties_and_stability_match_torch():
    torch = pytest.importorskip("torch")
    a = np.array([[2.0, np.nan, 1.0, np.inf, 1.0, -np.inf, 2.0, np.nan, 1.0]])
    for descending in (False, True):
        ours = ax.sort(ax.tensor(a), descending=descending, stable=True)
        theirs = torch.sort(torch.from_numpy(a), descending=descending, stable=True)
        np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())
        np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
        np.testing.assert_array_equal(ax.argsort(ax.tensor(a), descending=descending).numpy(), theirs.indices.numpy())
    v = ax.topk(ax.tensor(a[0]), 3).values.numpy()
    np.testing.assert_array_equal(v, torch.topk(torch.from_numpy(a[0]), 3).values.numpy())


def test_sort_integer_bool_and_scalar_inputs():
    ints = ax.tensor([[3, -1, 2], [0, 5, 5]])
    r = ax.sort(ints, dim=1, descending=True)
    assert r.values.dtype is ax.int64 and r.values.tolist() == [[3, 2, -1], [5, 5, 0]]
    assert r.indices.tolist() == [[0, 2, 1], [1, 2, 0]]
    b = ax.tensor([True, False, True])
    assert ax.sort(b).values.tolist() == [False, True, True]
    assert ax.topk(ax.tensor([7, 1, 9], dtype=ax.uint8), 2).values.tolist() == [9, 7]
    s = ax.sort(ax.tensor(2.5))
    assert s.values.shape == () and s.indices.shape == () and s.indices.item() == 0
    assert ax.topk(ax.tensor(2.5), 1).values.item() == 2.5


def test_take_along_dim_with_argsort_sorts():
    x = ax.tensor(np.random.default_rng(0).normal(size=(3, 5)))
    np.testing.assert_array_equal(x.take_along_dim(x.argsort(1), 1).numpy(), x.sort(1).values.numpy())


def test_inplace_forms_write_into_the_tensor():
    x = ax.zeros(2, 3)
    assert x.scatter_(1, ax.tensor([[2], [0]]), ax.tensor([[1.0], [2.0]])) is x
    assert x.tolist() == [[0.0, 0.0, 1.0], [2.0, 0.0, 0.0]]
    x.scatter_add_(0, ax.tensor([[1, 1, 1]]), ax.ones(1, 3))
    assert x.tolist() == [[0.0, 0.0, 1.0], [3.0, 1.0, 1.0]]
    x.index_add_(1, ax.tensor([0, 0]), ax.ones(2, 2), alpha=2)
    assert x.tolist() == [[4.0, 0.0, 1.0], [7.0, 1.0, 1.0]]
    x.masked_fill_(x > 3, -1.0)
    assert x.tolist() == [[-1.0, 0.0, 1.0], [-1.0, 1.0, 1.0]]
    x.index_fill_(0, ax.tensor([1]), 9.0)
    assert x.tolist() == [[-1.0, 0.0, 1.0], [9.0, 9.0, 9.0]]
    x.scatter_(0, ax.tensor([[0, 1, 0]]), value=5.0)
    assert x.tolist() == [[5.0, 0.0, 5.0], [9.0, 5.0, 9.0]]
    assert x._version_count == 6


def test_inplace_forms_under_autograd():
    w = ax.tensor([1.0, 2.0, 3.0], requires_grad=True)
    src = ax.tensor([10.0, 20.0], requires_grad=True)
    y = w * 2
    y.index_add_(0, ax.tensor([0, 0]), src)
    y.masked_fill_(ax.tensor([False, False, True]), 0.0)
    (y * ax.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert w.grad.tolist() == [2.0, 4.0, 0.0]
    assert src.grad.tolist() == [1.0, 1.0]
    with pytest.raises(AutogradError, match="leaf"):
        w.scatter_(0, ax.tensor([0]), ax.tensor([1.0]))


def test_inplace_scatter_on_a_view_of_a_non_leaf_reaches_the_base():
    w = ax.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = w * 1
    row = y[1]
    val = ax.tensor([5.0], requires_grad=True)
    row.scatter_(0, ax.tensor([0]), val)
    assert y.tolist() == [[1.0, 2.0], [5.0, 4.0]]
    y.sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0], [0.0, 1.0]]
    assert val.grad.tolist() == [1.0]


def test_scatter_gradients_skip_overwritten_positions():
    x = ax.zeros(2, 3, requires_grad=True)
    src = ax.tensor([[1.0, 2.0]], requires_grad=True)
    out = ax.scatter(x, 1, ax.tensor([[2, 0]]), src)
    (out * ax.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
    assert x.grad.tolist() == [[0.0, 2.0, 0.0], [4.0, 5.0, 6.0]]
    assert src.grad.tolist() == [[3.0, 1.0]]


def test_integer_tensors():
    x = ax.tensor([[1, 2, 3], [4, 5, 6]])
    assert ax.gather(x, 1, ax.tensor([[2, 0]])).tolist() == [[3, 1]]
    assert ax.scatter_add(x, 0, ax.tensor([[1, 1, 0]]), ax.tensor([[10, 10, 10]])).tolist() == [[1, 2, 13], [14, 15, 6]]
    assert ax.index_add(x, 0, ax.tensor([0]), ax.tensor([[1, 1, 1]])).tolist() == [[2, 3, 4], [4, 5, 6]]
    assert ax.index_select(x, 0, ax.tensor(1)).tolist() == [[4, 5, 6]]
    assert ax.masked_fill(x, x > 4, 2.7).tolist() == [[1, 2, 3], [4, 2, 2]]  # truncated, dtype kept
    assert ax.masked_fill(x, x > 4, 2.7).dtype is ax.int64
    assert ax.tril(ax.tensor([[True, True], [True, True]])).tolist() == [[True, False], [True, True]]
    assert ax.tril(x).dtype is ax.int64
    assert ax.masked_select(x, x % 2 == 0).tolist() == [2, 4, 6]


def test_masked_fill_tensor_value_keeps_dtype_and_gets_gradient():
    x = ax.ones(2, 2, dtype=ax.float32)
    v = ax.tensor(3.0, dtype=ax.float64, requires_grad=True)
    out = ax.masked_fill(x, ax.tensor([[True, False], [True, True]]), v)
    assert out.dtype is ax.float32
    out.sum().backward()
    assert v.grad.item() == 3.0 and v.grad.dtype is ax.float64
    with pytest.raises(ShapeError, match="masked_fill"):
        ax.masked_fill(x, x > 0, ax.ones(2))


def test_nonzero_unique_one_hot_edge_cases():
    assert ax.nonzero(ax.tensor(3.0)).shape == (1, 0)
    assert ax.nonzero(ax.tensor(0.0)).shape == (0, 0)
    assert [t.tolist() for t in ax.nonzero(ax.tensor(3.0), as_tuple=True)] == [[0]]
    assert ax.nonzero(ax.tensor([0, 2, 0, 1])).tolist() == [[1], [3]]
    u = ax.unique(ax.tensor([3, 1, 2, 1]), sorted=False, return_counts=True)
    assert u[0].tolist() == [1, 2, 3] and u[1].tolist() == [2, 1, 1]
    assert ax.unique(ax.zeros(0)).shape == (0,)
    assert ax.one_hot(ax.tensor([1, 0]), 3).dtype is ax.int64
    assert ax.one_hot(ax.tensor([], dtype=ax.int64), 3).shape == (0, 3)


def test_errors_are_clear():
    x = ax.zeros(2, 3)
    with pytest.raises(IndexingError, match=r"gather.*out of bounds"):
        ax.gather(x, 1, ax.tensor([[3]]))
    with pytest.raises(IndexingError, match="gather"):
        ax.gather(x, 1, ax.tensor([[-1]]))
    with pytest.raises(ShapeError, match="gather"):
        ax.gather(x, 1, ax.tensor([0]))
    with pytest.raises(ShapeError, match="gather"):
        ax.gather(x, 1, ax.zeros(3, 1, dtype=ax.int64))
    with pytest.raises(DTypeError, match="gather"):
        ax.gather(x, 1, ax.tensor([[0.0]]))
    with pytest.raises(DTypeError, match="scatter_add"):
        ax.scatter_add(x, 0, ax.tensor([[0]]), ax.ones(1, 1, dtype=ax.float64))
    with pytest.raises(ShapeError, match="scatter_add"):
        ax.scatter_add(x, 0, ax.tensor([[0, 1]]), ax.ones(1, 1))
    with pytest.raises(ShapeError, match="scatter"):
        ax.scatter(x, 0, ax.tensor([[0]]), ax.tensor(1.0))
    with pytest.raises(TypeError, match="scatter"):
        ax.scatter(x, 0, ax.tensor([[0]]))
    with pytest.raises(IndexingError, match="index_select"):
        ax.index_select(x, 0, ax.tensor([2]))
    with pytest.raises(ShapeError, match="index_select"):
        ax.index_select(x, 0, ax.tensor([[0]]))
    with pytest.raises(ShapeError, match="index_add"):
        ax.index_add(x, 0, ax.tensor([0]), ax.ones(2, 3))
    with pytest.raises(IndexingError, match="index_fill"):
        ax.index_fill(x, 1, ax.tensor([5]), 1.0)
    with pytest.raises(DTypeError, match="masked_fill"):
        ax.masked_fill(x, ax.ones(2, 3), 1.0)
    with pytest.raises(DTypeError, match="masked_select"):
        ax.masked_select(x, ax.ones(2, 3, dtype=ax.int64))
    with pytest.raises(IndexingError, match="topk"):
        ax.topk(x, 4)
    with pytest.raises(ShapeError, match="tril"):
        ax.tril(ax.zeros(3))
    with pytest.raises(IndexingError, match="one_hot"):
        ax.one_hot(ax.tensor([0, 3]), 3)
    with pytest.raises(IndexingError, match="one_hot"):
        ax.one_hot(ax.tensor([-1]))
    with pytest.raises(ShapeError, match="one_hot"):
        ax.one_hot(ax.tensor([], dtype=ax.int64))
    with pytest.raises(DTypeError, match="one_hot"):
        ax.one_hot(ax.tensor([1.0]))
    with pytest.raises(ShapeError):
        x.masked_fill_(ax.tensor([[[True]], [[False]]]), 1.0)  # the result would not fit in x
