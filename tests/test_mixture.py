"""Tests for dataset mixtures: ConcatDataset indexing and seeded InterleaveDataset sampling."""
from collections import Counter

import pytest

from mllm.dataset.utils.mixture import ConcatDataset, InterleaveDataset


def sources(*sizes):
    """Datasets whose items name their origin: ('s<k>', local index)."""
    return [[(f's{k}', i) for i in range(n)] for k, n in enumerate(sizes)]


def items(ds):
    return [ds[i] for i in range(len(ds))]


def test_concat_indexing_across_boundaries():
    ds = ConcatDataset(sources(3, 0, 2, 1))
    assert len(ds) == 6
    assert items(ds) == [('s0', 0), ('s0', 1), ('s0', 2), ('s2', 0), ('s2', 1), ('s3', 0)]
    assert ds.locate(2) == (0, 2) and ds.locate(3) == (2, 0) and ds.locate(5) == (3, 0)
    for bad in (6, 100, -1):
        with pytest.raises(IndexError):
            ds[bad]


def test_concat_needs_a_dataset():
    with pytest.raises(ValueError):
        ConcatDataset([])


def test_interleave_deterministic_per_seed():
    a = InterleaveDataset(sources(20, 20, 20), seed=1)
    b = InterleaveDataset(sources(20, 20, 20), seed=1)
    c = InterleaveDataset(sources(20, 20, 20), seed=2)
    assert a.table == b.table and items(a) == items(b)
    assert a.table != c.table


def test_interleave_reads_each_source_in_order():
    ds = InterleaveDataset(sources(30, 10, 20), probabilities=[0.5, 0.2, 0.3], seed=7)
    for k in range(3):
        local = [i for src, i in items(ds) if src == f's{k}']
        assert local == list(range(len(local)))


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_first_exhausted_never_repeats(seed):
    srcs = sources(15, 5, 10)
    ds = InterleaveDataset(srcs, probabilities=[0.3, 0.3, 0.4], seed=seed, stopping_strategy='first_exhausted')
    seen = items(ds)
    assert len(seen) == len(set(seen))
    counts = Counter(src for src, _ in seen)
    assert any(counts[f's{k}'] == len(s) for k, s in enumerate(srcs))  # stopped because one source ran out


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_all_exhausted_covers_every_item(seed):
    srcs = sources(15, 5, 10)
    ds = InterleaveDataset(srcs, probabilities=[0.6, 0.2, 0.2], seed=seed, stopping_strategy='all_exhausted')
    seen = items(ds)
    assert set(seen) == {x for s in srcs for x in s}
    assert len(seen) >= 30


def test_all_exhausted_stops_right_after_the_last_source_finishes():
    srcs = sources(4, 6)
    ds = InterleaveDataset(srcs, seed=5, stopping_strategy='all_exhausted')
    seen = items(ds)
    assert set(seen[:-1]) != {x for s in srcs for x in s}  # the last item completed the coverage


def test_proportions_follow_probabilities():
    probs = [0.5, 0.3, 0.2]
    ds = InterleaveDataset(sources(6000, 6000, 6000), probabilities=probs, seed=0)
    counts = Counter(ds.table[i][0] for i in range(len(ds)))
    total = sum(counts.values())
    assert total >= 5000
    for k, p in enumerate(probs):
        assert abs(counts[k] / total - p) < 0.03


def test_zero_probability_source_is_never_used():
    ds = InterleaveDataset(sources(5, 5), probabilities=[0.0, 1.0], seed=0, stopping_strategy='all_exhausted')
    assert items(ds) == sources(5, 5)[1]


@pytest.mark.parametrize('probs', [[0.5, 0.6], [1.2, -0.2], [0.5], [0.3, 0.3, 0.4]])
def test_bad_probabilities_raise(probs):
    with pytest.raises(ValueError, match='probabilities'):
        InterleaveDataset(sources(3, 3), probabilities=probs)


def test_bad_stopping_strategy():
    with pytest.raises(ValueError, match='stopping_strategy'):
        InterleaveDataset(sources(3, 3), stopping_strategy='never')


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_all_exhausted_with_an_empty_source(seed):
    srcs = sources(0, 4)
    ds = InterleaveDataset(srcs, seed=seed, stopping_strategy='all_exhausted')
    assert items(ds) == srcs[1]
