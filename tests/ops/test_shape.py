"""Shape ops (views, splits, joins, repeats, rolls, broadcasting) through the generic harness."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import IndexingError, ShapeError
from harness import OpSpec, op_tests

T = tr.torch


def _spec(name: str, fn, ref, shapes, **kw) -> OpSpec:
    """A spec whose ``fn`` only calls Tensor methods that PyTorch shares, so it is its own torch_fn."""
    return OpSpec(name, fn, ref, shapes=shapes, torch_fn=fn, **kw)


def _np_split(x, sizes, axis):
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _np_chunk(x, chunks, axis):
    n = x.shape[axis]
    if n == 0:
        return tuple(x for _ in range(chunks))
    size = -(-n // chunks)
    return _np_split(x, [min(size, n - s) for s in range(0, n, size)], axis)


def _np_repeat(x, reps):
    return np.tile(x, reps)


def _np_roll_flat(x, k):
    return np.roll(x.reshape(-1), k).reshape(x.shape)


SPECS = [
    # ops backed by core/methods.py
    _spec("reshape", lambda x: x.reshape(-1, 2), lambda x: x.reshape(-1, 2), (((3, 4),), ((2, 0, 3),))),
    _spec("view", lambda x: x.view(2, -1), lambda x: x.reshape(2, -1), (((3, 4),), ((2, 0),))),
    _spec("permute", lambda x: x.permute(2, 0, 1), lambda x: x.transpose(2, 0, 1), (((2, 3, 4),), ((0, 2, 3),))),
    OpSpec("transpose", lambda x: ax.transpose(x, 0, -1), lambda x: np.swapaxes(x, 0, -1),
           (((3, 4),), ((2, 3, 4),), ((0, 3),)), torch_fn=lambda x: T().transpose(x, 0, -1)),
    OpSpec("squeeze", lambda x: ax.squeeze(x), np.squeeze, (((1, 3, 1),), ((1,),), ((2, 0, 1),)),
           torch_fn=tr.fn("squeeze")),
    OpSpec("squeeze_dim", lambda x: ax.squeeze(x, 0), lambda x: np.squeeze(x, 0) if x.shape[0] == 1 else x,
           (((1, 3, 1),), ((3, 1),)), torch_fn=lambda x: T().squeeze(x, 0)),
    OpSpec("squeeze_dims", lambda x: ax.squeeze(x, (0, 2)), lambda x: x.reshape([s for i, s in enumerate(x.shape)
           if not (i in (0, 2) and s == 1)]), (((1, 3, 1),), ((1, 3, 2),)), torch_fn=lambda x: T().squeeze(x, (0, 2))),
    OpSpec("unsqueeze", lambda x: ax.unsqueeze(x, -1), lambda x: np.expand_dims(x, -1), (((3, 4),), ((),), ((0,),)),
           torch_fn=lambda x: T().unsqueeze(x, -1)),
    OpSpec("narrow", lambda x: ax.narrow(x, 1, 1, 2), lambda x: x[:, 1:3], (((3, 4),), ((0, 4),)),
           torch_fn=lambda x: T().narrow(x, 1, 1, 2)),
    OpSpec("flip", lambda x: ax.flip(x, (0, 1)), lambda x: np.flip(x, (0, 1)), (((3, 4),), ((0, 4),)),
           torch_fn=lambda x: T().flip(x, (0, 1))),
    OpSpec("cat", lambda a, b: ax.cat([a, b], 1), lambda a, b: np.concatenate([a, b], 1),
           (((3, 4), (3, 2)), ((2, 0), (2, 3)), ((0, 1), (0, 2))), torch_fn=lambda a, b: T().cat([a, b], 1)),
    OpSpec("contiguous", lambda x: x.mT.contiguous(), lambda x: np.ascontiguousarray(x.T), (((3, 4),),),
           torch_fn=lambda x: x.mT.contiguous()),
    # ops of axonml.ops.shape
    OpSpec("flatten", lambda x: ax.flatten(x, 1), lambda x: x.reshape(x.shape[0], -1), (((2, 3, 4),), ((2, 0, 3),)),
           torch_fn=lambda x: T().flatten(x, 1)),
    OpSpec("flatten_all", lambda x: ax.flatten(x), lambda x: x.reshape(-1), (((2, 3),), ((),)),
           torch_fn=tr.fn("flatten")),
    OpSpec("flatten_middle", lambda x: x.flatten(1, -2), lambda x: x.reshape(x.shape[0], -1, x.shape[-1]),
           (((2, 3, 4, 2),),), torch_fn=lambda x: x.flatten(1, -2)),
    OpSpec("ravel", ax.ravel, np.ravel, (((3, 4),), ((),)), torch_fn=tr.fn("ravel")),
    OpSpec("unflatten", lambda x: ax.unflatten(x, 1, (2, -1)), lambda x: x.reshape(x.shape[0], 2, x.shape[1] // 2),
           (((3, 4),), ((0, 6),)), torch_fn=lambda x: T().unflatten(x, 1, (2, -1))),
    OpSpec("movedim", lambda x: ax.movedim(x, (0, 1), (2, 0)), lambda x: np.moveaxis(x, (0, 1), (2, 0)),
           (((2, 3, 4),), ((0, 3, 1),)), torch_fn=lambda x: T().movedim(x, (0, 1), (2, 0))),
    OpSpec("moveaxis", lambda x: ax.moveaxis(x, 0, -1), lambda x: np.moveaxis(x, 0, -1), (((2, 3, 4),),),
           torch_fn=lambda x: T().moveaxis(x, 0, -1)),
    OpSpec("select", lambda x: ax.select(x, 1, -1), lambda x: x[:, -1], (((3, 4),), ((0, 2),)),
           torch_fn=lambda x: T().select(x, 1, -1)),
    OpSpec("stack", lambda a, b: ax.stack([a, b], 1), lambda a, b: np.stack([a, b], 1),
           (((3, 4), (3, 4)), ((0, 2), (0, 2))), torch_fn=lambda a, b: T().stack([a, b], 1)),
    OpSpec("stack_last", lambda a, b: ax.stack([a, b], -1), lambda a, b: np.stack([a, b], -1),
           (((3, 4), (3, 4)), ((), ())), torch_fn=lambda a, b: T().stack([a, b], -1)),
    OpSpec("hstack", lambda a, b: ax.hstack([a, b]), lambda a, b: np.hstack([a, b]),
           (((3, 4), (3, 2)), ((3,), (2,)), ((), (2,))), torch_fn=lambda a, b: T().hstack([a, b])),
    OpSpec("vstack", lambda a, b: ax.vstack([a, b]), lambda a, b: np.vstack([a, b]),
           (((3, 4), (2, 4)), ((3,), (3,)), ((0, 2), (1, 2))), torch_fn=lambda a, b: T().vstack([a, b])),
    OpSpec("split", lambda x: ax.split(x, 2, 1), lambda x: _np_split(x, [2, 2, 1], 1), (((3, 5),),),
           torch_fn=lambda x: T().split(x, 2, 1)),
    OpSpec("split_empty", lambda x: ax.split(x, 2, 1), lambda x: (x,), (((3, 0),),),
           torch_fn=lambda x: T().split(x, 2, 1)),
    OpSpec("split_sections", lambda x: x.split([1, 3, 1], -1), lambda x: _np_split(x, [1, 3, 1], -1),
           (((3, 5),), ((0, 5),)), torch_fn=lambda x: x.split([1, 3, 1], -1)),
    OpSpec("chunk", lambda x: ax.chunk(x, 3), lambda x: _np_chunk(x, 3, 0),
           (((5, 2),), ((6, 2),), ((0, 2),), ((2, 3),)),
           torch_fn=lambda x: T().chunk(x, 3)),
    OpSpec("unbind", lambda x: ax.unbind(x, 1), lambda x: tuple(np.moveaxis(x, 1, 0)), (((3, 4),), ((0, 3),)),
           torch_fn=lambda x: T().unbind(x, 1)),
    OpSpec("repeat", lambda x: ax.repeat(x, 2, 1, 3), lambda x: _np_repeat(x, (2, 1, 3)),
           (((3, 4),), ((0, 2),), ((),), ((2, 1, 2),)), torch_fn=lambda x: x.repeat(2, 1, 3)),
    OpSpec("repeat_zero", lambda x: x.repeat(0, 2), lambda x: _np_repeat(x, (0, 2)), (((3, 4),),),
           torch_fn=lambda x: x.repeat(0, 2)),
    OpSpec("tile", lambda x: ax.tile(x, (2,)), lambda x: np.tile(x, (2,)), (((3, 4),), ((),), ((3,),)),
           torch_fn=lambda x: T().tile(x, (2,))),
    OpSpec("roll", lambda x: ax.roll(x, 5), lambda x: _np_roll_flat(x, 5), (((3, 4),), ((0,),), ((),)),
           torch_fn=lambda x: T().roll(x, 5)),
    OpSpec("roll_dims", lambda x: ax.roll(x, (1, -2), (0, 1)), lambda x: np.roll(x, (1, -2), (0, 1)),
           (((3, 4),), ((3, 0),)), torch_fn=lambda x: T().roll(x, (1, -2), (0, 1))),
    OpSpec("broadcast_to", lambda x: ax.broadcast_to(x, (2, 3, 4)), lambda x: np.broadcast_to(x, (2, 3, 4)),
           (((3, 1),), ((4,),), ((),)), torch_fn=lambda x: T().broadcast_to(x, (2, 3, 4))),
    OpSpec("broadcast_tensors", lambda a, b: ax.broadcast_tensors(a, b), lambda a, b: tuple(np.broadcast_arrays(a, b)),
           (((3, 1), (4,)), ((2, 0, 1), (3,)), ((), (2,))), torch_fn=lambda a, b: T().broadcast_tensors(a, b)),
    OpSpec("broadcast_shapes", lambda a, b: ax.tensor(ax.broadcast_shapes(a.shape, b.shape), dtype=ax.int64),
           lambda a, b: np.array(np.broadcast_shapes(a.shape, b.shape), dtype=np.int64),
           (((3, 1), (4,)), ((2, 0, 1), (3,))), grad=False,
           torch_fn=lambda a, b: T().tensor(T().broadcast_shapes(a.shape, b.shape))),
]

globals().update(op_tests(SPECS))


# ----- semantics the harness does not cover --------------------------------------------------
def test_views_share_memory_and_copies_do_not():
    x = ax.arange(12.0).reshape(3, 4)
    for v in (ax.flatten(x), ax.unflatten(x, 1, (2, 2)), ax.movedim(x, 0, 1), ax.select(x, 0, 1),
              ax.split(x, 2, 1)[1], ax.chunk(x, 2)[0], ax.unbind(x)[2], ax.broadcast_to(x, (2, 3, 4))):
        assert np.shares_memory(v.numpy(), x.numpy())
    for c in (ax.repeat(x, 1, 1), ax.tile(x, (1,)), ax.roll(x, 0), ax.stack([x]), ax.roll(x, 1, 0)):
        assert not np.shares_memory(c.numpy(), x.numpy())


def test_integer_and_bool_dtypes_are_kept():
    x = ax.tensor([[1, 2], [3, 4]])
    assert ax.repeat(x, 2, 1).dtype is ax.int64
    assert ax.roll(x, 1).tolist() == [[4, 1], [2, 3]]
    assert ax.stack([x, x]).dtype is ax.int64
    b = ax.tensor([True, False])
    assert ax.tile(b, (2,)).tolist() == [True, False, True, False]
    assert ax.stack([b, b], 1).dtype is ax.bool


def test_methods_are_bound():
    x = ax.arange(6.0).reshape(2, 3)
    assert x.flatten().shape == (6,)
    assert x.unflatten(1, (3, 1)).shape == (2, 3, 1)
    assert x.movedim(0, 1).shape == (3, 2)
    assert x.moveaxis(0, 1).shape == (3, 2)
    assert [t.shape for t in x.split(1)] == [(1, 3), (1, 3)]
    assert len(x.chunk(3, 1)) == 3
    assert len(x.unbind(1)) == 3
    assert x.repeat(1, 2).shape == (2, 6)
    assert x.tile((2, 1, 1)).shape == (2, 2, 3)
    assert x.roll(1, 1).tolist() == [[2.0, 0.0, 1.0], [5.0, 3.0, 4.0]]
    assert x.broadcast_to((4, 2, 3)).shape == (4, 2, 3)
    assert x.select(0, -1).tolist() == [3.0, 4.0, 5.0]
    assert x.ravel().shape == (6,)


def test_squeeze_keeps_non_unit_dims_and_scalars():
    x = ax.zeros(1, 3, 1)
    assert x.squeeze(1).shape == (1, 3, 1)
    assert x.squeeze((0, 1, 2)).shape == (3,)
    assert x.squeeze(-1).shape == (1, 3)
    assert ax.tensor(2.0).squeeze().shape == ()
    assert ax.tensor(2.0).squeeze(0).shape == ()
    with pytest.raises(ShapeError):
        x.squeeze((0, 0))


def test_gradient_through_split_pieces_and_stack():
    x = ax.arange(6.0).reshape(2, 3).requires_grad_()
    a, b = x.split([1, 2], dim=1)
    (a.sum() * 2 + (b * b).sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), [[2, 2, 4], [2, 8, 10]])
    y = ax.tensor([1.0, 2.0], requires_grad=True)
    ax.stack([y, y * 3], 0).sum().backward()
    assert y.grad.tolist() == [4.0, 4.0]


def test_repeat_gradient_sums_copies():
    x = ax.tensor([1.0, 2.0], requires_grad=True)
    x.repeat(3, 2).sum().backward()
    assert x.grad.tolist() == [6.0, 6.0]


def test_roll_negative_and_large_shifts_match_torch():
    torch = pytest.importorskip("torch")
    a = np.arange(24.0).reshape(2, 3, 4)
    for shifts, dims in [(-7, None), (13, 2), ((1, 5), (0, -1)), ((-1, -1), (1, 1))]:
        ours = ax.roll(ax.tensor(a), shifts, dims).numpy()
        np.testing.assert_array_equal(ours, torch.roll(torch.from_numpy(a), shifts, dims).numpy())


def test_errors_name_the_op():
    x = ax.zeros(2, 3)
    with pytest.raises(ShapeError, match="stack"):
        ax.stack([x, ax.zeros(3, 2)])
    with pytest.raises(ValueError, match="stack"):
        ax.stack([])
    with pytest.raises(ShapeError, match="split"):
        ax.split(x, [1, 1], 1)
    with pytest.raises(ShapeError, match="split"):
        ax.split(x, 0, 1)
    with pytest.raises(ShapeError, match="chunk"):
        ax.chunk(x, 0)
    with pytest.raises(ShapeError, match="repeat"):
        x.repeat(2)
    with pytest.raises(ShapeError, match="unflatten"):
        ax.unflatten(x, 1, (2, 2))
    with pytest.raises(ShapeError, match="flatten"):
        ax.flatten(ax.zeros(2, 3, 4), 2, 1)
    with pytest.raises(ShapeError, match="movedim"):
        ax.movedim(x, (0, 0), (1, 0))
    with pytest.raises(ShapeError, match="roll"):
        ax.roll(x, (1, 2), 0)
    with pytest.raises(ShapeError, match="broadcast"):
        ax.broadcast_tensors(x, ax.zeros(4))
    with pytest.raises(ShapeError):
        ax.broadcast_to(x, (3, 3))
    with pytest.raises(IndexingError, match="select"):
        ax.select(x, 1, 3)
    with pytest.raises(IndexingError):
        ax.flatten(x, 2)


def test_broadcast_shapes_accepts_ints_and_empty():
    assert ax.broadcast_shapes() == ()
    assert ax.broadcast_shapes(3, (2, 1)) == (2, 3)
    assert ax.broadcast_shapes((0, 1), (1, 5)) == (0, 5)
