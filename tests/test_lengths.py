"""Tests for cheap per-sample lengths (image-free items, conv datasets, mixtures) and the length-grouped sampler."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mllm.dataset.lengths import (
    ModalityLengthGroupedSampler,
    conv_dataset_lengths,
    dataset_lengths,
    modality_length_grouped_indices,
)
from mllm.dataset.process_function.conv_template import VICUNA_SYSTEM
from mllm.dataset.single_image_conversation import SingleImageConvDataset
from mllm.dataset.single_image_dataset.base import ImageStandIn
from mllm.dataset.single_image_dataset.rec import RECDataset
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.utils.mixture import ConcatDataset, HoldoutSplit, InterleaveDataset, SubsetDataset
from tests.conftest import write_rec_files
from tests.helpers import (
    ItemList,  # a raw dataset with no image-free mode: lengths build its items
    write_jsonl,
)

SQUARE = dict(type='Expand2square')


# -- image-free items -----------------------------------------------------------------------------
@pytest.fixture
def rec_raw(rec_data):
    return RECDataset(rec_data['jsonl'], rec_data['image_folder'])


def without_image(item):
    return {k: v for k, v in item.items() if k != 'image'}


def test_item_without_image_is_the_same_item_with_a_size_only_image(rec_raw, rec_data):
    for i in range(len(rec_raw)):
        full, free = rec_raw[i], rec_raw.item_without_image(i)
        assert isinstance(full['image'], Image.Image) and isinstance(free['image'], ImageStandIn)
        assert free['image'].size == (1, 1)  # the records carry no width/height
        assert without_image(free) == without_image(full)
    assert isinstance(rec_raw[0]['image'], Image.Image)  # the mode ends with the call
    before = [without_image(rec_raw.item_without_image(i)) for i in range(len(rec_raw))]
    for path in (rec_data['root'] / 'images').iterdir():
        path.unlink()
    after = [without_image(rec_raw.item_without_image(i)) for i in range(len(rec_raw))]
    assert after == before  # no file is opened ...
    with pytest.raises(DataFileError):  # ... while building the item normally needs it
        rec_raw[0]


def test_stand_in_takes_the_record_size(tmp_path):
    write_rec_files(tmp_path)
    jsonl = write_jsonl(tmp_path / 'sized.jsonl', [
        {'img_path': 'wide.png', 'expression': 'a', 'bbox': [1, 1, 5, 5], 'width': 96, 'height': 64},
        {'img_path': 'tall.png', 'expression': 'b', 'bbox': [1, 1, 5, 5]}])
    raw = RECDataset(jsonl, str(tmp_path / 'images'))
    assert raw.item_without_image(0)['image'].size == (96, 64)
    assert raw.item_without_image(1)['image'].size == (1, 1)


# -- conversation-dataset lengths -----------------------------------------------------------------



def text_only(question='hi', answer='ok'):
    return {'image': [], 'target': {}, 'conversations': [
        {'from': 'human', 'value': question, 'boxes_seq': None, 'points_seq': None},
        {'from': 'gpt', 'value': answer, 'boxes_seq': None, 'points_seq': None}]}


def two_images():
    item = text_only('Compare <image> and <image>.', 'They differ.')
    item['image'] = [Image.new('RGB', (40, 30)), Image.new('RGB', (30, 40))]
    return item


def actual_lengths(conv):
    return np.array([len(conv[i]['input_ids']) for i in range(len(conv))])


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_conv_lengths_equal_the_rendered_token_counts(rec_raw, preprocessor, mode):
    conv = SingleImageConvDataset(rec_raw, preprocessor, mode=mode, transform=SQUARE)
    lengths = conv_dataset_lengths(conv)
    assert lengths.dtype == np.int64 and (lengths > 0).all()  # every REC sample has an image
    assert np.array_equal(lengths, actual_lengths(conv))
    assert (lengths > preprocessor['num_image_tokens']).all()


def test_text_only_lengths_are_negative_and_multi_image_counts_each_image(preprocessor):
    items = [text_only(), two_images(), text_only('a longer question than the first one', 'and answer')]
    conv = SingleImageConvDataset(ItemList(items), preprocessor, transform=SQUARE)
    lengths = conv_dataset_lengths(conv)
    actual = actual_lengths(conv)
    assert list(np.sign(lengths)) == [-1, 1, -1]
    assert np.array_equal(abs(lengths), actual)
    assert actual[1] > 2 * preprocessor['num_image_tokens']


def test_chars_per_token_estimate_by_hand(preprocessor):
    conv = SingleImageConvDataset(ItemList([text_only('hi', 'ok')]), preprocessor)
    # vicuna_v1.1 renders '{system} USER: hi ASSISTANT: ok</s>'
    chars = len(VICUNA_SYSTEM) + len(' USER: hi ') + len('ASSISTANT: ok</s>')
    assert conv_dataset_lengths(conv, chars_per_token=4.0).tolist() == [-(math.ceil(chars / 4) + 1)]  # + BOS
    with_image = SingleImageConvDataset(ItemList([dict(text_only('<image> hi', 'ok'), image=Image.new('RGB', (8, 8)))]),
                                        preprocessor)
    image_chars = chars + len('<image> ') - len('<image>')  # the placeholder becomes image tokens
    assert conv_dataset_lengths(with_image, chars_per_token=4.0).tolist() == [
        math.ceil(image_chars / 4) + 1 + preprocessor['num_image_tokens']]


def test_training_lengths_are_capped_at_max_length(rec_raw, preprocessor):
    # uncapped, the three samples render to 129, 122 and 132 tokens (13 answer tokens each)
    uncapped = actual_lengths(SingleImageConvDataset(rec_raw, preprocessor, transform=SQUARE))
    conv = SingleImageConvDataset(rec_raw, preprocessor, transform=SQUARE, max_length=125)
    lengths = conv_dataset_lengths(conv)
    assert np.array_equal(lengths, np.minimum(uncapped, 125)) and np.array_equal(lengths, actual_lengths(conv))
    assert 125 in lengths and (lengths < 125).any()


def test_conv_lengths_in_batches_match_one_batch(rec_raw, preprocessor):
    conv = SingleImageConvDataset(rec_raw, preprocessor, transform=SQUARE)
    assert np.array_equal(conv_dataset_lengths(conv, batch_size=2), conv_dataset_lengths(conv, batch_size=1000))


# -- mixtures -------------------------------------------------------------------------------------
class Leaf:
    """A leaf dataset with known lengths and a meta key; counts how often its lengths are computed."""

    def __init__(self, lengths):
        self._lengths, self.calls = np.asarray(lengths), 0

    def __len__(self):
        return len(self._lengths)

    def __getitem__(self, index):
        return index

    def lengths(self):
        self.calls += 1
        return self._lengths

    def meta(self, index):
        return {'image_id': index // 2}


def position_lengths(mixture, leaves):
    """The reference: each position's member and local index resolved one by one through the mixture."""
    out = []
    for i in range(len(mixture)):
        node, local = mixture, i
        while not isinstance(node, Leaf):
            if isinstance(node, ConcatDataset):
                k, local = node.locate(local)
                node = node.datasets[k]
            elif isinstance(node, InterleaveDataset):
                node, local = node.datasets[node.source_ids[local]], node.local_indices[local]
            else:  # SubsetDataset, HoldoutSplit
                node, local = node.dataset, node.indices[local]
        out.append(node._lengths[local])
    return out


def test_dataset_lengths_walk_every_mixture():
    rng = np.random.default_rng(0)
    leaves = [Leaf(rng.integers(1, 500, n) * rng.choice([-1, 1], n)) for n in (30, 7, 50, 12)]
    mixture = InterleaveDataset([
        ConcatDataset([leaves[0], SubsetDataset(leaves[1], portion=0.5, seed=1, reshuffle_each_epoch=True)]),
        HoldoutSplit(leaves[2], portion=0.3, part='train'),
        leaves[3],
    ], probabilities=[0.5, 0.3, 0.2], num_samples=200, seed=2, reshuffle_each_epoch=True)
    for epoch in (0, 1, 2):
        mixture.set_epoch(epoch)
        lengths = dataset_lengths(mixture)
        assert lengths.dtype == np.int64 and lengths.tolist() == position_lengths(mixture, leaves)
    assert [leaf.calls for leaf in leaves] == [1, 1, 1, 1]  # leaves are read once, mixtures re-gathered


def test_dataset_lengths_of_a_conv_dataset_and_of_a_plain_list(rec_raw, preprocessor):
    conv = SingleImageConvDataset(rec_raw, preprocessor, transform=SQUARE)
    both = ConcatDataset([conv, SubsetDataset(conv, num_samples=2, seed=0)])
    expected = actual_lengths(conv)
    assert dataset_lengths(both).tolist() == [*expected, *expected[both.datasets[1].indices]]
    with pytest.raises(TypeError, match='no lengths'):
        dataset_lengths([1, 2, 3])


# -- the sampler ----------------------------------------------------------------------------------
def kinds(lengths, order):
    return np.sign(np.asarray(lengths)[order])


def batches(order, batch_size):
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def mixed_lengths(n_image, n_text, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([rng.integers(70, 600, n_image), -rng.integers(5, 300, n_text)])
    return lengths[rng.permutation(n_image + n_text)]


@pytest.mark.parametrize('n_image, n_text, batch_size, world_size, mega', [
    (400, 240, 4, 2, 5),    # both kinds a whole number of megabatches (5 * 8 = 40 samples)
    (397, 83, 3, 2, 4),     # leftovers of both kinds
    (50, 0, 4, 1, 50),      # images only, one short megabatch
    (0, 17, 2, 4, 1),       # text only
    (5, 3, 4, 2, 2),        # fewer samples than one step
])
def test_every_index_once_and_batches_of_one_kind(n_image, n_text, batch_size, world_size, mega):
    lengths = mixed_lengths(n_image, n_text)
    sampler = ModalityLengthGroupedSampler(lengths, batch_size, world_size, seed=3, mega=mega)
    step = batch_size * world_size
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = np.array(list(sampler))
        assert len(sampler) == len(order) and sorted(order.tolist()) == list(range(len(lengths)))
        mixed = [k for k, b in enumerate(batches(order, batch_size)) if len(set(kinds(lengths, b))) > 1]
        assert len(mixed) <= 1  # only where the leftovers of the two kinds meet ...
        tail_start = len(order) - (n_image % step) - (n_text % step)
        assert all(k * batch_size + batch_size > tail_start for k in mixed)  # ... at the end of the epoch
        # a rank takes batch k when k % world_size == rank: one step's batches are of one kind too
        body = order[:tail_start - tail_start % step]
        assert all(len(set(kinds(lengths, s))) == 1 for s in batches(body, step))


def test_megabatches_are_sorted_longest_first():
    lengths = mixed_lengths(400, 240)
    batch_size, world_size, mega = 4, 2, 5
    order = np.array(list(ModalityLengthGroupedSampler(lengths, batch_size, world_size, seed=0, mega=mega)))
    megabatches = batches(order, batch_size * world_size * mega)  # 400 and 240 are multiples of 40
    assert len(megabatches) == 16
    for megabatch in megabatches:
        sizes = abs(lengths[megabatch])
        assert len(set(np.sign(lengths[megabatch]))) == 1 and (np.diff(sizes) <= 0).all()
    # megabatches of both kinds are interleaved, not all images first
    first_kinds = [np.sign(lengths[m[0]]) for m in megabatches]
    assert first_kinds != sorted(first_kinds) and first_kinds != sorted(first_kinds, reverse=True)


def test_grouping_reduces_padding():
    lengths = mixed_lengths(800, 0)
    grouped = np.array(list(ModalityLengthGroupedSampler(lengths, 8, seed=0)))
    shuffled = np.random.default_rng(0).permutation(len(lengths))

    def padding(order):
        return sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches(order, 8))
    assert padding(grouped) < 0.2 * padding(shuffled)


def test_sampler_is_deterministic_per_seed_and_epoch():
    lengths = mixed_lengths(300, 100)
    a = ModalityLengthGroupedSampler(lengths, 4, 2, seed=1)
    torch.manual_seed(123)  # no global RNG is involved
    b = ModalityLengthGroupedSampler(lengths, 4, 2, seed=1)
    assert list(a) == list(b) == list(a)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    other_seed = ModalityLengthGroupedSampler(lengths, 4, 2, seed=2)
    assert list(other_seed) != list(ModalityLengthGroupedSampler(lengths, 4, 2))
    rng = np.random.default_rng([1, 1])
    assert a.indices().tolist() == modality_length_grouped_indices(lengths, 4, 2, rng).tolist()


def test_sampler_rereads_callable_lengths_each_epoch():
    leaf = Leaf(mixed_lengths(60, 20))
    mixture = SubsetDataset(leaf, portion=0.5, seed=0, reshuffle_each_epoch=True)
    sampler = ModalityLengthGroupedSampler(lambda: dataset_lengths(mixture), 2, seed=0, mega=1)
    for epoch in (0, 1):
        mixture.set_epoch(epoch)
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert np.array_equal(sampler.lengths, leaf._lengths[mixture.indices])  # this epoch's lengths
        assert sorted(order) == list(range(40))


@pytest.mark.parametrize('lengths', [[3, 0, 2], [[1, 2]]])
def test_sampler_rejects_bad_lengths(lengths):
    with pytest.raises(ValueError, match='non-zero'):
        ModalityLengthGroupedSampler(lengths, 2)
