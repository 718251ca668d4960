"""Tests for dataset mixtures: concat indexing, seeded interleaving, subsets, epoch reshuffle, meta forwarding."""
from collections import Counter

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
def test_all_exhausted_with_an_empty_source(seed, caplog):
    srcs = sources(0, 4)
    ds = InterleaveDataset(srcs, seed=seed, stopping_strategy='all_exhausted')
    assert items(ds) == srcs[1]
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
    first, n = list(ds.table), len(ds)
    ds.set_epoch(1)
    assert len(ds) == n and ds.table != first
    ds.set_epoch(0)
    assert ds.table == first
    still = InterleaveDataset(sources(30, 30), seed=0)
    still.set_epoch(5)
    assert still.table == first


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
    assert sorted(train.indices + test.indices) == list(range(len(regions)))  # a partition, nothing lost
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
