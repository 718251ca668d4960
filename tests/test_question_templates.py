"""Tests for question templates drawn per (seed, epoch, index), and the epoch plumbing of AnnotationDataset."""
import random

import pytest

from mllm.dataset.single_image_conversation import SingleImageConvDataset
from mllm.dataset.single_image_dataset.rec import RECDataset
from mllm.dataset.utils.mixture import ConcatDataset, InterleaveDataset, SubsetDataset
from mllm.dataset.utils.question_templates import QuestionTemplates
from tests.conftest import write_rec_files

INDICES = range(40)


@pytest.fixture
def rec_templates():
    templates = QuestionTemplates('REC.json', required=('<image>', '<expr>'), seed=3)
    assert len(templates.templates) == 6  # a multi-template file
    return templates


def test_epoch_zero_keeps_the_choice_made_before_epochs(rec_templates):
    # the formula used before epochs counted: one RNG seeded by seed * 1_000_003 + index
    for i in INDICES:
        expected = random.Random(3 * 1_000_003 + i).choice(rec_templates.templates)
        assert rec_templates.get(i) == rec_templates.get(i, 0) == expected


def test_phrasing_changes_across_epochs(rec_templates):
    by_epoch = {epoch: [rec_templates.get(i, epoch) for i in INDICES] for epoch in range(5)}
    for epoch in range(1, 5):
        changed = sum(a != b for a, b in zip(by_epoch[0], by_epoch[epoch], strict=True))
        # a change has probability 5/6 per index: 40 indices with none changed would be (1/6)**40
        assert changed > 0
    phrasings = [{by_epoch[e][i] for e in range(5)} for i in range(len(INDICES))]
    assert any(len(p) > 1 for p in phrasings)
    assert all(p <= set(rec_templates.templates) for p in phrasings)


def test_phrasing_depends_on_seed_epoch_index_only(rec_templates):
    order = list(INDICES) * 2
    random.Random(0).shuffle(order)
    other = QuestionTemplates('REC.json', required=('<image>', '<expr>'), seed=3)
    for epoch in (0, 1, 7):
        sequential = {i: rec_templates.get(i, epoch) for i in INDICES}
        shuffled = {i: other.get(i, epoch) for i in order}  # another instance, another access order
        assert shuffled == sequential
    reseeded = QuestionTemplates('REC.json', required=('<image>', '<expr>'), seed=4)
    assert [reseeded.get(i, 1) for i in INDICES] != [rec_templates.get(i, 1) for i in INDICES]


@pytest.fixture
def rec_raw(tmp_path):
    records = [(f'{k}.png', (32 + k, 24), f'object number {k}', [1, 2, 10, 12]) for k in range(12)]
    jsonl = write_rec_files(tmp_path, records)
    return RECDataset(str(jsonl), str(tmp_path / 'images'), seed=0)


def human_turns(ds):
    return [ds[i]['conversations'][0]['value'] for i in range(len(ds))]


def test_annotation_dataset_set_epoch_changes_its_questions(rec_raw):
    first = human_turns(rec_raw)
    assert rec_raw.epoch == 0
    rec_raw.set_epoch(2)
    second = human_turns(rec_raw)
    assert second != first  # 12 indices, each keeps its phrasing with probability 1/6
    assert all(f'object number {k}' in q for k, q in enumerate(second))
    expected = [rec_raw.templates.get(k, 2).replace('<expr>', f'object number {k}') for k in range(12)]
    assert second == expected
    rec_raw.set_epoch(0)
    assert human_turns(rec_raw) == first


def test_mixtures_and_the_conv_wrapper_forward_the_epoch(rec_raw, preprocessor):
    conv = SingleImageConvDataset(rec_raw, preprocessor)
    mixture = ConcatDataset([InterleaveDataset([SubsetDataset(conv, portion=0.5)], num_samples=4)])
    mixture.set_epoch(3)
    assert rec_raw.epoch == 3
