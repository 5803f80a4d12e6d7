"""axonml.data datasets: TensorDataset, ConcatDataset, ChainDataset, Subset, random_split (vs torch.utils.data)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import axonml as ax
from axonml.data import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)

sys.path.insert(0, str(Path(__file__).parent))
from datahelp import needs_torch, tdata, torch


class Squares(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i * i


class Stream(IterableDataset):
    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def test_tensor_dataset_items_and_views():
    x = ax.arange(12.0).reshape(4, 3)
    y = ax.tensor([0, 1, 0, 1])
    ds = TensorDataset(x, y)
    assert len(ds) == 4
    a, b = ds[2]
    assert a.tolist() == [6.0, 7.0, 8.0] and b.tolist() == 0 and b.shape == ()
    assert ds[-1][0].tolist() == [9.0, 10.0, 11.0]
    assert ds[ax.tensor([0, 3])][0].shape == (2, 3)  # tensor index: the generic path
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(ValueError, match="size mismatch"):
        TensorDataset(x, ax.zeros(3))
    with pytest.raises(TypeError):
        TensorDataset(np.zeros(3))
    with pytest.raises(ValueError):
        TensorDataset()


def test_tensor_dataset_keeps_autograd():
    x = ax.randn(3, 2, requires_grad=True)
    row = TensorDataset(x)[1][0]
    row.sum().backward()
    assert x.grad.tolist() == [[0, 0], [1, 1], [0, 0]]


@pytest.mark.parametrize("sizes", [(3, 5, 2), (1,), (0, 4, 0, 1)])
def test_concat_dataset_indexing(sizes):
    parts = [Squares(n) for n in sizes]
    ds = ConcatDataset(parts)
    expected = [i * i for n in sizes for i in range(n)]
    assert len(ds) == len(expected)
    assert [ds[i] for i in range(len(ds))] == expected
    assert [ds[-i] for i in range(1, len(ds) + 1)] == expected[::-1]
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds[-len(ds) - 1]
    assert (Squares(2) + Squares(3))[4] == 4


def test_concat_dataset_errors():
    with pytest.raises(ValueError, match="empty"):
        ConcatDataset([])
    with pytest.raises(TypeError, match="IterableDataset"):
        ConcatDataset([Squares(2), Stream(0, 2)])


def test_chain_dataset():
    ds = ChainDataset([Stream(0, 3), Stream(10, 12)])
    assert list(ds) == [0, 1, 2, 10, 11] and len(ds) == 5
    assert list(Stream(0, 2) + Stream(5, 6)) == [0, 1, 5]
    with pytest.raises(TypeError, match="IterableDataset"):
        list(ChainDataset([Squares(2)]))


def test_subset():
    ds = Subset(Squares(10), [9, 0, 4])
    assert len(ds) == 3 and [ds[i] for i in range(3)] == [81, 0, 16]
    assert ds.__getitems__([2, 0]) == [16, 81]
    t = Subset(TensorDataset(ax.arange(10)), [3, 1])
    assert [int(v[0].item()) for v in t.__getitems__([0, 1])] == [3, 1]


def test_base_classes_need_overrides():
    with pytest.raises(NotImplementedError):
        Dataset()[0]
    with pytest.raises(NotImplementedError):
        iter(IterableDataset())


def test_random_split_lengths_and_determinism():
    ds = Squares(10)
    a, b = random_split(ds, [3, 7], generator=ax.Generator().manual_seed(1))
    assert len(a) == 3 and len(b) == 7
    assert sorted(list(a.indices) + list(b.indices)) == list(range(10))
    again = random_split(ds, [3, 7], generator=ax.Generator().manual_seed(1))
    assert list(again[0].indices) == list(a.indices)
    other = random_split(ds, [3, 7], generator=ax.Generator().manual_seed(2))
    assert list(other[0].indices) + list(other[1].indices) != list(a.indices) + list(b.indices)
    ax.manual_seed(5)
    first = random_split(ds, [5, 5])[0].indices
    ax.manual_seed(5)
    assert random_split(ds, [5, 5])[0].indices == first  # the default generator


def test_random_split_errors():
    with pytest.raises(ValueError, match="does not equal"):
        random_split(Squares(10), [3, 3])
    with pytest.raises(ValueError, match="integers or fractions"):
        random_split(Squares(10), [2.5, 7.5])
    with pytest.warns(UserWarning) as rec:
        random_split(Squares(2), [0.9, 0.05, 0.05])
    assert [str(w.message)[:36] for w in rec] == ["random_split: length of split at ind"] * 2


@pytest.mark.parametrize("n, fracs", [(10, [0.3, 0.3, 0.4]), (30, [0.3, 0.3, 0.4]), (11, [0.5, 0.5]),
                                      (7, [0.1, 0.2, 0.7]), (101, [0.25, 0.25, 0.25, 0.25]), (5, [1.0])])
@needs_torch
def test_random_split_fractions_like_torch(n, fracs):
    ours = random_split(Squares(n), fracs, generator=ax.Generator().manual_seed(0))
    theirs = tdata.random_split(range(n), fracs, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    assert sorted(i for s in ours for i in s.indices) == list(range(n))


@needs_torch
def test_tensor_and_concat_datasets_like_torch():
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    ours = TensorDataset(ax.tensor(x), ax.tensor(np.arange(6)))
    theirs = tdata.TensorDataset(torch.tensor(x), torch.arange(6))
    for i in range(-6, 6):
        for a, b in zip(ours[i], theirs[i]):
            assert a.shape == tuple(b.shape) and np.array_equal(a.numpy(), b.numpy())
    oc = ConcatDataset([ours, Subset(ours, [5, 1])])
    tc = tdata.ConcatDataset([theirs, tdata.Subset(theirs, [5, 1])])
    assert len(oc) == len(tc) and oc.cumulative_sizes == tc.cumulative_sizes
    for i in range(-len(oc), len(oc)):
        assert np.array_equal(oc[i][0].numpy(), tc[i][0].numpy())
