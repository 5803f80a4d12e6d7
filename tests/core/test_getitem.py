"""Tensor indexing: ``x[index]`` and ``x[index] = value`` against NumPy and PyTorch, with autograd."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import AutogradError, IndexingError
from harness import OpSpec, op_tests

T = tr.torch


def _get(name: str, index, shapes=(((2, 3, 4),),), torch_ok: bool = True) -> OpSpec:
    """``x[index]`` with a fixed index (no tensors in it, so the same call indexes NumPy and torch)."""
    fn = lambda x: x[index]
    return OpSpec(name, fn, lambda x: x[index], shapes=shapes, torch_fn=fn if torch_ok else None)


def _set(name: str, index, shapes, via_view: bool = False) -> OpSpec:
    """``y = x * 1; y[index] = v`` (or through the view ``y[1:]``): gradients reach both x and v."""

    def fn(x, v):
        y = x * 1
        (y[1:] if via_view else y)[index] = v
        return y

    def ref(x, v):
        y = x.copy()
        (y[1:] if via_view else y)[index] = v
        return y

    return OpSpec(name, fn, ref, shapes=shapes, torch_fn=fn)


def _mask_get(x, m):
    return x[m > 0]


def _mask_set(x, m, v):
    y = x * 1
    y[m > 0] = v
    return y


def _set_int_then_list(x, v):
    y = x * 1
    y[1, :, [0, 2]] = v  # (3, 2): PyTorch selects x[1] first, then indexes its columns
    return y


def _np_set_int_then_list(x, v):
    y = x.copy()
    y[1][:, [0, 2]] = v
    return y


def _set_into_plain(x, v):
    # the base does not require grad; the value does, written through a chained view
    y = x.detach() * 1
    y[1][1:] = v
    return y


def _np_set(x, index, v):
    y = x.copy()
    y[index] = v
    return y


SPECS = [
    _get("getitem_int", 1),
    _get("getitem_negative_int", -1),
    _get("getitem_ints", (1, -2, 3)),
    _get("getitem_slices", (slice(None, None, 2), slice(1, None), slice(-3, -1))),
    _get("getitem_slice_out_of_range", (slice(1, 10), slice(-10, 2))),
    _get("getitem_negative_step", (slice(None, None, -1), slice(2, 0, -2)), torch_ok=False),
    _get("getitem_ellipsis", (Ellipsis, 1)),
    _get("getitem_ellipsis_middle", (0, Ellipsis, slice(1, 3))),
    _get("getitem_none", (None, slice(None), None, 0)),
    _get("getitem_bool_scalar", True),
    _get("getitem_bool_false", False),
    _get("getitem_empty_tuple", ()),
    _get("getitem_int_list", ([0, 1, 1, 0],)),
    _get("getitem_two_lists", ([0, 1, 1], [2, 0, 2])),
    _get("getitem_list_between_slices", (slice(None), [0, 2, 2], slice(1, 3))),
    _get("getitem_separated_lists", ([0, 1], slice(None), [1, 3])),
    _get("getitem_int_and_lists", (0, [0, 1], [1, 1])),
    _get("getitem_nested_list", ([[0, 1], [1, 0]],)),
    _get("getitem_bool_list", ([True, False],)),
    _get("getitem_numpy_index", (np.array([1, 0]),), torch_ok=False),
    _get("getitem_zero_size", (slice(None), 1), shapes=(((0, 3),), ((2, 3, 0),))),
    _get("getitem_empty_slice", slice(2, 2), shapes=(((4, 3),),)),
    _get("getitem_scalar_tensor", (None, Ellipsis), shapes=(((),),)),
    OpSpec("getitem_mask", _mask_get, _mask_get, (((3, 4), (3, 4)), ((3, 4), (3,)), ((0, 2), (0, 2))),
           grad_inputs=(0,), torch_fn=_mask_get),
    _set("setitem_int", 0, (((3, 4), (4,)),)),
    _set("setitem_broadcast", (slice(None), 1), (((3, 4), ()), ((3, 4), (1,)))),
    _set("setitem_slices", (slice(None, None, 2), slice(1, 3)), (((3, 4), (2, 2)), ((3, 4), (2,)))),
    _set("setitem_ellipsis_none", (Ellipsis, None, 2), (((3, 4), (3, 1)),)),
    _set("setitem_lists", ([0, 2], [3, 1]), (((3, 4), (2,)),)),
    _set("setitem_zero_size", slice(0, 0), (((3, 4), (0, 4)),)),
    _set("setitem_through_view", (0, slice(None, None, 2)), (((3, 4), (2,)), ((3, 4), ())), via_view=True),
    OpSpec("getitem_int_then_list", lambda x: x[1, :, [0, 0, 3]], lambda x: x[1][:, [0, 0, 3]], (((2, 3, 4),),),
           torch_fn=lambda x: x[1, :, [0, 0, 3]]),
    OpSpec("setitem_int_then_list", _set_int_then_list, _np_set_int_then_list, (((2, 3, 4), (3, 2)),),
           torch_fn=_set_int_then_list),
    OpSpec("setitem_mask", _mask_set, _mask_set, (((3, 4), (3, 4), ()),), grad_inputs=(0, 2), torch_fn=_mask_set),
    OpSpec("setitem_into_plain_base", _set_into_plain, lambda x, v: _np_set(x, (1, slice(1, None)), v),
           (((3, 4), (3,)),),
           grad_inputs=(1,), torch_fn=_set_into_plain),
]


globals().update(op_tests(SPECS))


# ----- forward semantics ---------------------------------------------------------------------
A = np.arange(24.0).reshape(2, 3, 4)

INDICES = [
    1, -2, (1, 2, 3), (slice(None), -1), (Ellipsis, None), (None, 1, None), [1, 0, 1], ([0, 1], [2, 0], [3, 3]),
    (slice(None), [2, 0]), ([1, 0], slice(None), [0, 3]), (Ellipsis, [1, 2]), ([[1], [0]], [[0, 2]]),
    (slice(None, None, 3), Ellipsis, slice(1, None, 2)), A[:, :, 0] > 5, A > 10, (A[:, 0, 0] > 0, slice(None), 1),
    ([0, 1], 2, [1, 3]), (None, 1, [2, 0], None),
]
# PyTorch applies integers as selects before the advanced indices, so unlike NumPy they never separate
# advanced indices (which would move the advanced dimensions to the front)
TORCH_RULE = [
    ((1, slice(None), [0, 0, 3]), lambda a: a[1][:, [0, 0, 3]]),
    (([1, 0], slice(None), 0), lambda a: a[:, :, 0][[1, 0], :]),
    ((slice(None), [2, 1], 1), lambda a: a[:, :, 1][:, [2, 1]]),
]


def _check_against_torch(ours, index):
    torch = pytest.importorskip("torch")
    t_index = torch.from_numpy(index) if isinstance(index, np.ndarray) else index
    np.testing.assert_array_equal(ours.numpy(), torch.from_numpy(A)[t_index].numpy())


@pytest.mark.parametrize("index", INDICES)
def test_getitem_matches_numpy_and_torch(index):
    ours = ax.tensor(A)[ax.tensor(index) if isinstance(index, np.ndarray) else index]
    np.testing.assert_array_equal(ours.numpy(), A[index])
    _check_against_torch(ours, index)


@pytest.mark.parametrize(("index", "expected"), TORCH_RULE)
def test_integers_select_before_advanced_indexing(index, expected):
    ours = ax.tensor(A)[index]
    np.testing.assert_array_equal(ours.numpy(), expected(A))
    _check_against_torch(ours, index)
    x = ax.zeros(2, 3, 4)
    x[index] = ax.tensor(expected(A))  # setitem reads the index the same way
    np.testing.assert_array_equal(x[index].numpy(), expected(A))


def test_integer_tensor_indices():
    x = ax.tensor(A)
    i = ax.tensor([[1, 0], [0, 0]])
    np.testing.assert_array_equal(x[i].numpy(), A[[[1, 0], [0, 0]]])
    np.testing.assert_array_equal(x[1, ax.tensor(2)].numpy(), A[1, 2])
    np.testing.assert_array_equal(x[:, ax.tensor([2, 0]), ax.tensor([1, 3])].numpy(), A[:, [2, 0], [1, 3]])
    for dt in (ax.int32, ax.int16, ax.uint8):
        np.testing.assert_array_equal(x[ax.tensor([1, 0], dtype=dt)].numpy(), A[[1, 0]])
    assert x[ax.tensor(1)].shape == (3, 4)  # a 0-d integer tensor acts as an int
    assert x[[]].shape == (0, 3, 4)  # an empty list selects nothing


def test_basic_indexing_makes_views_and_advanced_makes_copies():
    x = ax.tensor(A.copy())
    v = x[1, :, ::2]
    assert np.shares_memory(v.numpy(), x.numpy())
    x[1, 0, 0] = -5.0
    assert v[0, 0].item() == -5.0  # the view sees writes into the base
    v[2, 1] = 99.0
    assert x[1, 2, 2].item() == 99.0  # and the base sees writes through the view
    assert v._version_count == x._version_count == 2
    c = x[[1], :, :]
    assert not np.shares_memory(c.numpy(), x.numpy())
    assert not np.shares_memory(x[x > 3].numpy(), x.numpy())


# ----- gradients -----------------------------------------------------------------------------
def test_repeated_integer_indices_accumulate_gradients():
    x = ax.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x[[0, 2, 2, 2]] * ax.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 9.0]
    m = ax.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    i = ax.tensor([1, 1, 0])
    (m[i, i] ** 2).sum().backward()
    assert m.grad.tolist() == [[2.0, 0.0], [0.0, 16.0]]


def test_getitem_second_derivative():
    x = ax.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x[[2, 2, 0]] ** 3).sum()
    (g,) = ax.autograd.grad(y, x, create_graph=True)
    assert g.tolist() == [3.0, 0.0, 54.0]
    (gg,) = ax.autograd.grad(g.sum(), x)
    assert gg.tolist() == [6.0, 0.0, 36.0]


def test_setitem_gradients_to_value_and_to_the_rest():
    w = ax.ones(2, 3, requires_grad=True)
    v = ax.tensor([5.0, 6.0, 7.0], requires_grad=True)
    y = w * 2
    y[1] = v
    (y * ax.arange(6.0).reshape(2, 3)).sum().backward()
    assert w.grad.tolist() == [[0.0, 2.0, 4.0], [0.0, 0.0, 0.0]]
    assert v.grad.tolist() == [3.0, 4.0, 5.0]


def test_setitem_broadcast_scalar_tensor_value_gets_summed_gradient():
    w = ax.ones(2, 3, requires_grad=True)
    v = ax.tensor(5.0, requires_grad=True)
    y = w * 2
    y[:, 1] = v
    y.sum().backward()
    assert v.grad.item() == 2.0
    assert w.grad.tolist() == [[2.0, 0.0, 2.0], [2.0, 0.0, 2.0]]


def test_setitem_on_a_view_of_a_non_leaf_reaches_the_base():
    w = ax.ones(2, 3, requires_grad=True)
    y = w * 2
    row = y[1:]
    v = ax.tensor(5.0, requires_grad=True)
    row[0, ::2] = v
    assert y.tolist() == [[2.0, 2.0, 2.0], [5.0, 2.0, 5.0]]
    (y * ax.arange(6.0).reshape(2, 3)).sum().backward()
    assert w.grad.tolist() == [[0.0, 2.0, 4.0], [0.0, 8.0, 0.0]]
    assert v.grad.item() == 8.0


def test_setitem_of_a_grad_value_into_a_plain_tensor_gives_it_a_history():
    v = ax.tensor(3.0, requires_grad=True)
    x = ax.zeros(2, 3)
    x[0, 1] = v
    assert x.requires_grad
    (x * 2).sum().backward()
    assert v.grad.item() == 2.0
    v2 = ax.tensor(4.0, requires_grad=True)
    z = ax.zeros(2, 3)
    z[1][2] = v2  # through a view: the base gets the history too
    assert z.requires_grad and z[1, 2].item() == 4.0
    (z * 3).sum().backward()
    assert v2.grad.item() == 3.0


def test_setitem_mask_and_chained_views():
    w = ax.ones(4, requires_grad=True)
    y = w * ax.tensor([1.0, 2.0, 3.0, 4.0])
    y[y > 2.5] = 0.0
    y.sum().backward()
    assert w.grad.tolist() == [1.0, 2.0, 0.0, 0.0]
    w = ax.ones(2, 3, requires_grad=True)
    y = w * 1
    y[0][1] = w[1, 2] * 3
    y.sum().backward()
    assert w.grad.tolist() == [[1.0, 0.0, 1.0], [1.0, 1.0, 4.0]]


def test_setitem_after_save_is_detected():
    w = ax.tensor([1.0, 2.0], requires_grad=True)
    y = w * 1
    z = y.sin()  # saves y
    y[0] = 5.0
    with pytest.raises(AutogradError, match="in-place"):
        z.sum().backward()


def test_setitem_on_leaf_requiring_grad():
    w = ax.ones(3, requires_grad=True)
    with pytest.raises(AutogradError, match="leaf"):
        w[0] = 2.0
    with pytest.raises(AutogradError, match="leaf"):
        w[1:][0] = 2.0
    with ax.no_grad():
        w[0] = 2.0
    assert w.tolist() == [2.0, 1.0, 1.0] and w.grad_fn is None


# ----- setitem semantics ---------------------------------------------------------------------
def test_setitem_values_dtypes_and_versions():
    x = ax.zeros(2, 3)
    x[0] = ax.tensor([1.0, 2.0, 3.0], dtype=ax.float64)  # cast to x's dtype
    assert x.dtype is ax.float32 and x[0].tolist() == [1.0, 2.0, 3.0]
    x[:, 1] = 7  # Python scalar, broadcast
    x[ax.tensor([True, False])] = ax.tensor([4.0, 5.0, 6.0])
    x[1, [0, 2]] = ax.tensor([8.0, 9.0])
    x[..., None][1, 1] = -1.0
    assert x.tolist() == [[4.0, 5.0, 6.0], [8.0, -1.0, 9.0]]
    assert x._version_count == 5
    n = ax.zeros(3, dtype=ax.int64)
    n[1] = 2.7
    assert n.tolist() == [0, 2, 0] and n.dtype is ax.int64
    b = ax.zeros(2, dtype=ax.bool)
    b[0] = True
    assert b.tolist() == [True, False]
    e = ax.zeros(0, 3)
    e[:, 1] = 5.0
    assert e.shape == (0, 3)


# ----- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("grad", [False, True], ids=["plain", "autograd"])
def test_out_of_range_and_bad_indices_raise_indexing_error(grad):
    x = ax.zeros(2, 3, requires_grad=grad)
    x = x * 1 if grad else x
    for index in (2, -3, (0, 3), (0, 0, 0), ax.tensor([2]), ax.tensor([[True]]), 1.5, "a", ax.tensor([0.0])):
        with pytest.raises(IndexingError):
            x[index]
    with pytest.raises(IndexError):  # IndexingError is also the builtin IndexError
        x[5]
    for index in (2, (0, 3), ax.tensor([3])):
        with pytest.raises(IndexingError, match=r"\(2, 3\)"):
            x[index] = 1.0


@pytest.mark.parametrize("grad", [False, True], ids=["plain", "autograd"])
def test_wrong_shape_assignment_raises(grad):
    x = ax.zeros(2, 3)
    v = ax.ones(4, requires_grad=grad)
    with pytest.raises(IndexingError, match=r"shape \(4,\)"):
        x[0] = v
    with pytest.raises(IndexingError):
        x[:, 0] = ax.ones(3, requires_grad=grad)
    assert x.tolist() == [[0.0] * 3] * 2  # nothing was written
