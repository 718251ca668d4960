"""Tests for dataset mixtures: concat indexing, seeded interleaving (permuted reads, fixed epoch size), subsets,
epoch reshuffle, meta forwarding."""
import sys
from collections import Counter

import numpy as np
import pytest

from mllm.dataset.utils.mixture import ConcatDataset, HoldoutSplit, InterleaveDataset, SubsetDataset


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
    assert np.array_equal(a.table, b.table) and items(a) == items(b)
    assert not np.array_equal(a.table, c.table)
    assert a.source_ids.shape == a.local_indices.shape == (len(a),)  # numpy index tables, not tuples


def reads_of(ds, k):
    """The local indices read from source k, in table order."""
    return ds.local_indices[ds.source_ids == k]


def test_interleave_reads_each_source_through_permutations():
    # 1000 positions over sources of 30, 10, 20 items: each source is read through 10+ times
    ds = InterleaveDataset(sources(30, 10, 20), probabilities=[0.5, 0.2, 0.3], seed=7, num_samples=1000)
    for k, n in enumerate((30, 10, 20)):
        reads = reads_of(ds, k)
        assert len(reads) > 3 * n
        passes = [reads[i:i + n] for i in range(0, len(reads) - n + 1, n)]
        assert all(sorted(p) == list(range(n)) for p in passes)  # each full pass reads every item once
        assert any(list(p) != list(range(n)) for p in passes)  # ... in a shuffled order
        counts = np.bincount(reads, minlength=n)
        assert counts.max() - counts.min() <= 1  # hence an evenly cycled source


def test_large_source_is_read_throughout_not_only_its_head():
    # 1000 items mixed 50/50 with 10: first_exhausted stops after ~10 reads of the large source.
    # Reading in order, those were items 0..~15; through a permutation they are ~10 draws without
    # replacement from 0..999, so their maximum is below 500 with probability about 2**-10.
    big_small = sources(1000, 10)
    ds = InterleaveDataset(big_small, seed=0, reshuffle_each_epoch=True)
    assert len(ds) < 60 and reads_of(ds, 0).max() > 500
    seen = set()
    for epoch in range(30):  # the epochs read other parts of the large source
        ds.set_epoch(epoch)
        seen |= set(reads_of(ds, 0).tolist())
    assert len(np.unique(np.array(sorted(seen)) // 100)) == 10 and len(seen) > 200
    fixed = InterleaveDataset(big_small, seed=0, num_samples=1000)
    reads = reads_of(fixed, 0)  # ~500 reads of a 1000-item source: distinct, over the whole range
    assert len(set(reads.tolist())) == len(reads) and reads.min() < 10 and reads.max() > 990


def test_num_samples_sets_the_length_and_follows_probabilities():
    # 20,000 independent draws: the standard error of a proportion is at most 0.0035; 0.02 is > 5 of them.
    probs = [0.6, 0.25, 0.1, 0.05]
    ds = InterleaveDataset(sources(1000, 30, 5000, 7), probabilities=probs, seed=3, num_samples=20_000,
                           reshuffle_each_epoch=True)
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)
        assert len(ds) == 20_000
        shares = np.bincount(ds.source_ids, minlength=4) / len(ds)
        assert np.abs(shares - probs).max() < 0.02, shares


def test_num_samples_overrides_the_stopping_strategy():
    for strategy in ('first_exhausted', 'all_exhausted', None):
        ds = InterleaveDataset(sources(5, 400), seed=0, stopping_strategy=strategy, num_samples=50)
        assert len(ds) == 50 and len(items(ds)) == 50
    assert len(InterleaveDataset(sources(5, 5), num_samples=0)) == 0
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match='num_samples'):
            InterleaveDataset(sources(5, 5), num_samples=bad)


@pytest.mark.parametrize('kwargs', [dict(num_samples=300), dict(stopping_strategy='first_exhausted'),
                                    dict(stopping_strategy='all_exhausted')])
def test_table_depends_on_seed_and_epoch_only(kwargs):
    srcs = sources(40, 25, 60)
    a = InterleaveDataset(srcs, seed=5, reshuffle_each_epoch=True, **kwargs)
    b = InterleaveDataset(srcs, seed=5, reshuffle_each_epoch=True, **kwargs)
    first = a.table.copy()
    a.set_epoch(3)
    b.set_epoch(2)
    b.set_epoch(3)  # a different path to the same epoch
    assert np.array_equal(a.table, b.table) and len(a) == len(first)
    b.set_epoch(4)
    assert not np.array_equal(a.table, b.table) and len(b) == len(first)
    a.set_epoch(0)
    assert np.array_equal(a.table, first)  # epoch 0 redrawn equals the table built at construction
    still = InterleaveDataset(srcs, seed=5, **kwargs)
    still.set_epoch(7)
    assert np.array_equal(still.table, first)  # without reshuffling every epoch has one table


def count_python_calls(fn):
    """How many Python-level and C-level calls `fn()` makes (a count, not a timing)."""
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        calls += event in ('call', 'c_call')

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize('strategy', ['num_samples', 'all_exhausted'])
def test_table_build_makes_no_call_per_item(strategy):
    """A 5M-position table is built by numpy: the number of calls does not grow with its size."""
    def build(scale):
        srcs = [range(500 * scale), range(50 * scale), range(5)]  # a range is a dataset of ints
        kw = dict(num_samples=1000 * scale) if strategy == 'num_samples' else dict(stopping_strategy=strategy)
        return lambda: InterleaveDataset(srcs, probabilities=[0.5, 0.3, 0.2], seed=1, reshuffle_each_epoch=True,
                                         **kw).set_epoch(1)
    build(1)()  # first calls import lazily; count warm calls
    # about 1,000 vs 5,000,000 positions (all_exhausted: max(len / p) = 2.5M / 0.5)
    assert count_python_calls(build(5000)) < 2 * count_python_calls(build(1)) + 100


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
    assert sorted(items(ds)) == sources(5, 5)[1]


@pytest.mark.parametrize('probs', [[0.5, 0.6], [1.2, -0.2], [0.5], [0.3, 0.3, 0.4]])
def test_bad_probabilities_raise(probs):
    with pytest.raises(ValueError, match='probabilities'):
        InterleaveDataset(sources(3, 3), probabilities=probs)


def test_bad_stopping_strategy():
    with pytest.raises(ValueError, match='stopping_strategy'):
        InterleaveDataset(sources(3, 3), stopping_strategy='never')


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_all_exhausted_with_an_empty_source(seed, caplog):
    srcs = sources(0, 4)
    ds = InterleaveDataset(srcs, seed=seed, stopping_strategy='all_exhausted')
    assert sorted(items(ds)) == srcs[1]
    assert 'member 0 (list) is empty' in caplog.text


class WithMeta(list):
    """A list dataset whose meta(i) names the item, like a raw dataset's per-sample facts."""

    def meta(self, index):
        return {'item': self[index]}


def test_subset_by_portion_is_seeded_sorted_and_sized():
    src = sources(40)[0]
    a = SubsetDataset(src, portion=0.25, seed=3)
    assert len(a) == 10
    assert items(a) == items(SubsetDataset(src, portion=0.25, seed=3))
    assert items(a) != items(SubsetDataset(src, portion=0.25, seed=4))
    local = [i for _, i in items(a)]
    assert local == sorted(local) and len(set(local)) == 10  # source order kept, no repeats
    assert len(SubsetDataset(src, num_samples=7)) == 7
    assert items(SubsetDataset(src, portion=1.0)) == src
    assert len(SubsetDataset(src[:4], portion=0.1)) == 1  # a portion of a tiny source keeps one item
    assert len(SubsetDataset([], portion=0.5)) == 0


@pytest.mark.parametrize('kwargs', [dict(), dict(portion=0.5, num_samples=3), dict(portion=0.0),
                                    dict(portion=1.5), dict(num_samples=41)])
def test_subset_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SubsetDataset(sources(40)[0], **kwargs)


def test_subset_reshuffles_per_epoch_only_when_asked():
    src = sources(100)[0]
    fixed = SubsetDataset(src, portion=0.1, seed=0)
    first = items(fixed)
    fixed.set_epoch(1)
    assert items(fixed) == first
    moving = SubsetDataset(src, portion=0.1, seed=0, reshuffle_each_epoch=True)
    assert items(moving) == first
    moving.set_epoch(1)
    epoch1 = items(moving)
    assert epoch1 != first and len(epoch1) == 10
    moving.set_epoch(0)
    assert items(moving) == first  # an epoch's subset depends on the epoch only: ranks agree
    other = SubsetDataset(src, portion=0.1, seed=0, reshuffle_each_epoch=True)
    other.set_epoch(1)
    assert items(other) == epoch1


def test_interleave_reshuffle_keeps_length_and_changes_order():
    ds = InterleaveDataset(sources(30, 30), seed=0, reshuffle_each_epoch=True)
    first, n = ds.table.copy(), len(ds)
    ds.set_epoch(1)
    assert len(ds) == n and not np.array_equal(ds.table, first)
    ds.set_epoch(0)
    assert np.array_equal(ds.table, first)
    still = InterleaveDataset(sources(30, 30), seed=0)
    still.set_epoch(5)
    assert np.array_equal(still.table, first)


def test_set_epoch_and_meta_reach_nested_members():
    inner = SubsetDataset(WithMeta(sources(50)[0]), portion=0.2, seed=1, reshuffle_each_epoch=True)
    mix = ConcatDataset([WithMeta(sources(1, 3)[1]), inner])
    assert [mix.meta(i) for i in range(len(mix))] == [{'item': mix[i]} for i in range(len(mix))]
    before = items(mix)
    mix.set_epoch(2)
    after = items(mix)
    assert after[:3] == before[:3] and after[3:] != before[3:]
    inter = InterleaveDataset([WithMeta(sources(5)[0]), [('plain', i) for i in range(5)]], seed=0)
    metas = [inter.meta(i) for i in range(len(inter))]
    assert all(m == {'item': inter[i]} if inter[i][0] == 's0' else m == {} for i, m in enumerate(metas))


class Regions(list):
    """Items (image_id, k): several samples per image, like VG regions."""

    def meta(self, index):
        return {'image_id': self[index][0]}


def test_holdout_split_partitions_by_key_and_is_stable():
    regions = Regions((image, k) for image in range(400) for k in range(3))
    train = HoldoutSplit(regions, portion=0.1, part='train', key='image_id', seed=0)
    test = HoldoutSplit(regions, portion=0.1, part='test', key='image_id', seed=0)
    assert sorted([*train.indices, *test.indices]) == list(range(len(regions)))  # a partition, nothing lost
    test_images = {item[0] for item in items(test)}
    assert test_images.isdisjoint({item[0] for item in items(train)})  # an image is on one side only
    assert len(test) == 3 * len(test_images) and 20 <= len(test_images) <= 60  # ~10 % of 400 images
    assert [test.meta(i) for i in range(len(test))] == [{'image_id': item[0]} for item in items(test)]
    # the side of an image depends on its id only: reordered / grown files keep their split
    grown = Regions(list(reversed(regions)) + [(image, 0) for image in range(400, 500)])
    regrown = HoldoutSplit(grown, portion=0.1, part='test', key='image_id', seed=0)
    assert test_images <= {item[0] for item in items(regrown)}
    other = HoldoutSplit(regions, portion=0.1, part='test', key='image_id', seed=1)
    assert {item[0] for item in items(other)} != test_images


@pytest.mark.parametrize('kwargs, message', [(dict(part='val'), 'part'), (dict(portion=0.0), 'portion'),
                                             (dict(portion=1.0), 'portion'), (dict(key='ref_id'), "no 'ref_id'")])
def test_holdout_split_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HoldoutSplit(Regions([(0, 0)]), **kwargs)
    with pytest.raises(ValueError, match='meta'):
        HoldoutSplit([(0, 0)])


class EpochRecorder:
    def __init__(self):
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


@pytest.mark.parametrize('state_epoch, expected', [(None, 0), (0.0, 0), (1.0, 1), (2.0, 2), (2.6, 2), (2.4, 2),
                                                   (2.9999, 2)])
def test_epoch_callback_continues_the_epoch_a_run_stopped_in(state_epoch, expected):
    from types import SimpleNamespace

    from mllm.engine.callbacks import EpochCallback

    dataset = EpochRecorder()
    EpochCallback(dataset).on_epoch_begin(None, SimpleNamespace(epoch=state_epoch), None)
    assert dataset.epochs == [expected] and isinstance(dataset.epochs[0], int)
