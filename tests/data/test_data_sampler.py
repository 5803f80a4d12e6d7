"""axonml.data samplers, incl. DistributedSampler, against torch.utils.data's semantics."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import axonml as ax
from axonml.data import (
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

sys.path.insert(0, str(Path(__file__).parent))
from datahelp import needs_torch, tdata


def gen(seed: int) -> ax.Generator:
    return ax.Generator().manual_seed(seed)


def test_sequential_sampler():
    assert list(SequentialSampler(range(5))) == [0, 1, 2, 3, 4]
    assert len(SequentialSampler(range(5))) == 5
    assert list(SequentialSampler([])) == []


def test_sampler_base():
    with pytest.raises(NotImplementedError):
        iter(Sampler(range(3)))


def test_random_sampler_permutation_and_determinism():
    s = RandomSampler(range(20), generator=gen(3))
    first = list(s)
    assert sorted(first) == list(range(20)) and len(s) == 20
    assert list(s) != first  # the generator moves on: a new order each epoch
    assert list(RandomSampler(range(20), generator=gen(3))) == first
    ax.manual_seed(11)
    a = list(RandomSampler(range(20)))
    ax.manual_seed(11)
    assert list(RandomSampler(range(20))) == a  # without a generator: seeded from the default one


def test_random_sampler_num_samples_without_replacement():
    out = list(RandomSampler(range(4), num_samples=10, generator=gen(0)))
    assert len(out) == 10
    assert sorted(out[:4]) == sorted(out[4:8]) == [0, 1, 2, 3]  # whole permutations, then a prefix
    assert len(set(out[8:])) == 2


def test_random_sampler_with_replacement():
    out = list(RandomSampler(range(3), replacement=True, num_samples=5000, generator=gen(1)))
    assert len(out) == 5000 and set(out) == {0, 1, 2}
    counts = Counter(out)
    assert all(abs(c / 5000 - 1 / 3) < 0.05 for c in counts.values())


def test_random_sampler_errors():
    with pytest.raises(TypeError, match="replacement"):
        RandomSampler(range(3), replacement=1)
    with pytest.raises(ValueError, match="num_samples"):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(ValueError, match="empty"):
        list(RandomSampler([], num_samples=2))
    assert list(RandomSampler([])) == []


def test_subset_random_sampler():
    idx = [10, 20, 30, 40]
    s = SubsetRandomSampler(idx, generator=gen(2))
    out = list(s)
    assert sorted(out) == idx and len(s) == 4
    assert list(SubsetRandomSampler(idx, generator=gen(2))) == out


def test_weighted_random_sampler():
    w = [0.0, 1.0, 3.0]
    out = list(WeightedRandomSampler(w, 4000, generator=gen(0)))
    counts = Counter(out)
    assert counts[0] == 0 and abs(counts[2] / 4000 - 0.75) < 0.04
    distinct = list(WeightedRandomSampler([1, 1, 1, 5], 4, replacement=False, generator=gen(0)))
    assert sorted(distinct) == [0, 1, 2, 3]
    assert list(WeightedRandomSampler(ax.tensor(w), 6, generator=gen(4))) == list(
        WeightedRandomSampler(np.array(w), 6, generator=gen(4)))
    s = WeightedRandomSampler(w, 3)
    assert len(s) == 3 and s.weights.dtype == ax.float64
    with pytest.raises(ValueError, match="num_samples"):
        WeightedRandomSampler(w, 0)
    with pytest.raises(ValueError, match="replacement"):
        WeightedRandomSampler(w, 2, replacement="yes")
    with pytest.raises(ValueError, match="1-D"):
        WeightedRandomSampler([[1.0, 2.0]], 2)
    with pytest.raises(ValueError):
        list(WeightedRandomSampler([1.0, 0.0], 2, replacement=False))


@pytest.mark.parametrize("n, size, drop_last", [(10, 3, False), (10, 3, True), (9, 3, True), (2, 5, False),
                                                 (2, 5, True), (0, 2, False)])
def test_batch_sampler(n, size, drop_last):
    out = list(BatchSampler(SequentialSampler(range(n)), size, drop_last))
    expected = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
    if drop_last:
        expected = [b for b in expected if len(b) == size]
    assert out == expected and len(BatchSampler(range(n), size, drop_last)) == len(expected)


def test_batch_sampler_errors():
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="batch_size"):
            BatchSampler(range(3), bad, False)
    with pytest.raises(ValueError, match="drop_last"):
        BatchSampler(range(3), 2, 1)


def _all_ranks(n, replicas, **kw):
    return [list(DistributedSampler(range(n), num_replicas=replicas, rank=r, **kw)) for r in range(replicas)]


@pytest.mark.parametrize("n, replicas", [(10, 3), (9, 3), (2, 4), (7, 1), (1, 3)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_sequential_padding(n, replicas, drop_last):
    parts = _all_ranks(n, replicas, shuffle=False, drop_last=drop_last)
    lengths = {len(p) for p in parts}
    assert len(lengths) == 1  # every replica gets the same count
    flat = [i for j in range(len(parts[0])) for i in (p[j] for p in parts)]  # interleave back
    if drop_last:
        assert flat == list(range(len(flat))) and len(flat) == n - n % replicas
    else:
        # padded by repeating the start of the list
        assert flat == (list(range(n)) * (len(flat) // n + 1))[: len(flat)] and len(flat) >= n


def test_distributed_sampler_shuffle_epochs():
    parts = _all_ranks(11, 2, seed=3)
    assert set(parts[0] + parts[1]) == set(range(11)) and len(parts[0]) == len(parts[1]) == 6  # one padded
    again = _all_ranks(11, 2, seed=3)
    assert again == parts
    s = DistributedSampler(range(11), num_replicas=2, rank=0, seed=3)
    s.set_epoch(1)
    assert list(s) != parts[0] and s.epoch == 1
    assert _all_ranks(11, 2, seed=4) != parts


def test_distributed_sampler_env_and_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    s = DistributedSampler(range(8), shuffle=False)
    assert (s.num_replicas, s.rank, list(s)) == (4, 2, [2, 6])
    monkeypatch.delenv("RANK")
    with pytest.raises(RuntimeError, match="RANK"):
        DistributedSampler(range(8))
    with pytest.raises(ValueError, match="invalid rank"):
        DistributedSampler(range(8), num_replicas=2, rank=2)


@pytest.mark.parametrize("n, replicas", [(10, 3), (9, 3), (2, 4), (5, 2), (100, 7)])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
@needs_torch
def test_distributed_sampler_like_torch(n, replicas, drop_last, shuffle):
    for r in range(replicas):
        ours = DistributedSampler(range(n), num_replicas=replicas, rank=r, shuffle=shuffle, drop_last=drop_last)
        theirs = tdata.DistributedSampler(range(n), num_replicas=replicas, rank=r, shuffle=shuffle,
                                          drop_last=drop_last)
        assert (len(ours), ours.num_samples, ours.total_size) == (len(theirs), theirs.num_samples, theirs.total_size)
        if not shuffle:
            assert list(ours) == list(theirs)  # padding and striding exactly as PyTorch
        else:
            assert len(list(ours)) == len(list(theirs))


@needs_torch
def test_sampler_lengths_like_torch():
    data = range(13)
    pairs = [
        (SequentialSampler(data), tdata.SequentialSampler(data)),
        (RandomSampler(data), tdata.RandomSampler(data)),
        (RandomSampler(data, num_samples=30), tdata.RandomSampler(data, num_samples=30)),
        (RandomSampler(data, True, 5), tdata.RandomSampler(data, True, 5)),
        (SubsetRandomSampler([1, 5]), tdata.SubsetRandomSampler([1, 5])),
        (WeightedRandomSampler([1.0] * 4, 9), tdata.WeightedRandomSampler([1.0] * 4, 9)),
    ]
    for ours, theirs in pairs:
        a, b = list(ours), list(theirs)
        assert len(ours) == len(theirs) == len(a) == len(b)
        assert all(type(v) is int for v in a)
    for size in (1, 4, 13, 20):
        for drop in (False, True):
            ours = BatchSampler(SequentialSampler(data), size, drop)
            theirs = tdata.BatchSampler(tdata.SequentialSampler(data), size, drop)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)
