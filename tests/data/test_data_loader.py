"""DataLoader in the main process (num_workers=0): options, lengths, batches as torch.utils.data's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import axonml as ax
from axonml.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    Subset,
    TensorDataset,
    default_collate,
)

sys.path.insert(0, str(Path(__file__).parent))
from datahelp import needs_torch, structure, tdata, torch


class Dicts(Dataset):
    """Samples of mixed types: an array, an int, a float, a string."""

    def __len__(self) -> int:
        return 7

    def __getitem__(self, i: int):
        return {"x": np.full(3, i, np.float32), "y": i, "w": i / 2, "name": f"s{i}"}


class Range(IterableDataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n


class Batched(Dataset):
    """Counts the batch fetches that went through __getitems__."""

    def __init__(self) -> None:
        self.calls = 0

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> int:
        raise AssertionError("__getitems__ should be used")

    def __getitems__(self, idx: list[int]) -> list[int]:
        self.calls += 1
        return [i * 10 for i in idx]


def tensors():
    return ax.arange(20.0).reshape(10, 2), ax.arange(10)


def test_batches_of_a_tensor_dataset():
    x, y = tensors()
    batches = list(DataLoader(TensorDataset(x, y), batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    assert np.array_equal(np.concatenate([b[1].numpy() for b in batches]), np.arange(10))
    assert len(DataLoader(TensorDataset(x, y), batch_size=4)) == 3
    assert len(DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True)) == 2
    assert len(list(DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True))) == 2


def test_shuffle_is_a_permutation_and_reproducible():
    x, y = tensors()
    ds = TensorDataset(x, y)

    def order(loader):
        return np.concatenate([b[1].numpy() for b in loader]).tolist()

    a = order(DataLoader(ds, batch_size=3, shuffle=True, generator=ax.Generator().manual_seed(4)))
    b = order(DataLoader(ds, batch_size=3, shuffle=True, generator=ax.Generator().manual_seed(4)))
    c = order(DataLoader(ds, batch_size=3, shuffle=True, generator=ax.Generator().manual_seed(5)))
    assert sorted(a) == list(range(10)) and a == b and a != c
    loader = DataLoader(ds, batch_size=3, shuffle=True, generator=ax.Generator().manual_seed(4))
    assert order(loader) != order(loader)  # each epoch its own order
    ax.manual_seed(0)
    d = order(DataLoader(ds, batch_size=3, shuffle=True))
    ax.manual_seed(0)
    assert order(DataLoader(ds, batch_size=3, shuffle=True)) == d


def test_batch_size_none_converts_samples():
    out = list(DataLoader(Dicts(), batch_size=None))
    assert len(out) == 7 and isinstance(out[2]["x"], ax.Tensor) and out[2]["y"] == 2


def test_custom_sampler_batch_sampler_and_collate():
    x, y = tensors()
    ds = TensorDataset(x, y)
    out = [b[1].tolist() for b in DataLoader(ds, sampler=[9, 8, 7], batch_size=2)]
    assert out == [[9, 8], [7]]
    out = [b[1].tolist() for b in DataLoader(ds, batch_sampler=[[0, 5], [1]])]
    assert out == [[0, 5], [1]]
    out = list(DataLoader(ds, batch_size=5, collate_fn=lambda s: len(s)))
    assert out == [5, 5]
    bs = DataLoader(ds, batch_sampler=BatchSampler(SequentialSampler(ds), 4, True))
    assert len(bs) == 2 and bs.batch_size is None


class Doubled(TensorDataset):
    def __getitem__(self, i):
        return tuple(t[i] * 2 for t in self.tensors)


def test_tensor_dataset_fast_batches_equal_the_general_path():
    x, y = ax.randn(10, 3), ax.arange(10)
    ds = TensorDataset(x, y)
    idx = [3, -1, 0, 3]
    fast = ds._collated_batch(idx)
    assert structure(fast) == structure(default_collate([ds[i] for i in idx]))
    sub = Subset(ds, [9, 8, 7])
    assert structure(sub._collated_batch([2, 0])) == structure(default_collate([sub[2], sub[0]]))
    with pytest.raises(IndexError, match="index 10 is out of range"):
        ds._collated_batch([1, 10])
    assert ds._collated_batch((1, 2)) is None and ds._collated_batch([np.int64(1)]) is None
    assert TensorDataset(ax.ones(2, requires_grad=True))._collated_batch([0]) is None  # autograd: general path
    assert Doubled(x)._collated_batch([0]) is None  # a subclass's own samples are respected
    assert [b[0].tolist() for b in DataLoader(Doubled(x), batch_size=5)] == [(x[:5] * 2).tolist(), (x[5:] * 2).tolist()]
    loader = DataLoader(Subset(ds, [4, 2, 0]), batch_size=2)
    assert [b[1].tolist() for b in loader] == [[4, 2], [0]]


def test_getitems_is_used():
    ds = Batched()
    out = [b.tolist() for b in DataLoader(ds, batch_size=4)]
    assert out == [[0, 10, 20, 30], [40, 50, 60, 70], [80, 90]] and ds.calls == 3


def test_iterable_dataset_batches():
    loader = DataLoader(Range(10), batch_size=4)
    assert [b.tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] and len(loader) == 3
    loader = DataLoader(Range(10), batch_size=4, drop_last=True)
    assert [b.tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]] and len(loader) == 2
    assert list(DataLoader(Range(3), batch_size=None)) == [0, 1, 2]


def test_frozen_attributes():
    loader = DataLoader(Range(3))
    for name in ("batch_size", "sampler", "dataset", "drop_last", "batch_sampler", "persistent_workers"):
        with pytest.raises(ValueError, match="should not be set"):
            setattr(loader, name, 2)
    loader.num_workers = 0  # others stay settable, as in PyTorch


def test_pin_memory_is_accepted():
    x, y = tensors()
    a = [b[0].tolist() for b in DataLoader(TensorDataset(x, y), batch_size=4, pin_memory=True)]
    assert a == [b[0].tolist() for b in DataLoader(TensorDataset(x, y), batch_size=4)]


# argument combinations PyTorch refuses, with the error type it raises
BAD = [
    {"num_workers": -1},
    {"timeout": -1},
    {"prefetch_factor": 2},
    {"persistent_workers": True},
    {"shuffle": True, "sampler": [0, 1]},
    {"batch_sampler": [[0]], "batch_size": 2},
    {"batch_sampler": [[0]], "shuffle": True},
    {"batch_sampler": [[0]], "sampler": [0]},
    {"batch_sampler": [[0]], "drop_last": True},
    {"batch_size": None, "drop_last": True},
    {"batch_size": 0},
]


@pytest.mark.parametrize("kwargs", BAD, ids=[str(k) for k in BAD])
@needs_torch
def test_invalid_options_like_torch(kwargs):
    x, y = tensors()
    with pytest.raises(ValueError) as ours:
        DataLoader(TensorDataset(x, y), **kwargs)
    with pytest.raises(ValueError):
        tdata.DataLoader(tdata.TensorDataset(torch.zeros(10), torch.zeros(10)), **kwargs)
    assert str(ours.value)


@pytest.mark.parametrize("kwargs", [{"shuffle": True}, {"sampler": [0]}, {"batch_sampler": [[0]]}])
def test_iterable_dataset_refuses_samplers(kwargs):
    with pytest.raises(ValueError, match="IterableDataset"):
        DataLoader(Range(3), **kwargs)


def test_prefetch_factor_and_context_checks():
    with pytest.raises(ValueError, match="prefetch_factor"):
        DataLoader(Range(3), num_workers=1, prefetch_factor=0)
    with pytest.raises(ValueError, match="start method"):
        DataLoader(Range(3), num_workers=1, multiprocessing_context="nope")._mp_context()


@pytest.mark.parametrize("batch_size, drop_last", [(1, False), (3, False), (3, True), (None, False), (7, True)])
@needs_torch
def test_batches_like_torch(batch_size, drop_last):
    ours = list(DataLoader(Dicts(), batch_size=batch_size, drop_last=drop_last))
    theirs = list(tdata.DataLoader(Dicts(), batch_size=batch_size, drop_last=drop_last))
    assert [structure(b) for b in ours] == [structure(b) for b in theirs]
    assert len(DataLoader(Dicts(), batch_size=batch_size, drop_last=drop_last)) == len(
        tdata.DataLoader(Dicts(), batch_size=batch_size, drop_last=drop_last))


@needs_torch
def test_tensor_dataset_batches_like_torch():
    x = np.random.default_rng(0).standard_normal((11, 3, 2)).astype(np.float32)
    y = np.arange(11)
    ours = DataLoader(TensorDataset(ax.tensor(x), ax.tensor(y)), batch_size=4)
    theirs = tdata.DataLoader(tdata.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=4)
    assert [structure(b) for b in ours] == [structure(b) for b in theirs]


@needs_torch
def test_iterable_lengths_like_torch():
    for bs, drop in [(4, False), (4, True), (None, False), (10, False), (11, True)]:
        assert len(DataLoader(Range(10), batch_size=bs, drop_last=drop)) == len(
            tdata.DataLoader(Range(10), batch_size=bs, drop_last=drop))


def test_iterator_len_and_default_collate_identity():
    loader = DataLoader(Dicts(), batch_size=2)
    assert len(iter(loader)) == 4
    assert loader.collate_fn is default_collate
    class NoLen(IterableDataset):
        def __iter__(self):
            return iter([1, 2])

    it = iter(DataLoader(NoLen()))
    with pytest.raises(TypeError):
        len(it)
    assert [b.tolist() for b in it] == [[1], [2]]
