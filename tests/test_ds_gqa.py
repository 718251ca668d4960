"""GQADataset on hand-written JSONL in the converter's layout: every version's text, boxes after Expand2square,
answer extraction, the seeded qbp choice and the errors for bad files."""
import json

import pytest

from mllm.dataset.process_function.box_formatter import PlainBoxFormatter
from mllm.dataset.single_image_dataset.gqa import VERSIONS, GQADataset, compact_boxes
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.utils.transform import Expand2square, norm_box_xyxy
from mllm.dataset.validation import validate_item
from mllm.metrics.answer_extraction import extract_answer
from mllm.metrics.exact_match import GQAComputeMetrics
from tests.helpers import write_images, write_jsonl
from tests.test_prep_gqa import EXPECTED

# The converter's exact output for the first three questions of tests/test_prep_gqa.py: a 500x333 and a
# 300x400 image; the wall touches the left, top and right border, the van the left and bottom one.
RECORDS = EXPECTED[:3]
WALL, PIPE = RECORDS[0]['boxes']
PERSON, VAN = RECORDS[1]['boxes']
PERSON2 = RECORDS[2]['boxes'][1]
SIZES = {'2375429.jpg': (500, 333), 'n161313.jpg': (300, 400)}


@pytest.fixture
def data(tmp_path):
    images = write_images(tmp_path / 'images', SIZES, color=(200, 10, 10))
    return {'jsonl': write_jsonl(tmp_path / 'GQA_val_balanced.jsonl', RECORDS), 'images': str(images),
            'root': tmp_path}


def answer(ds, k):
    return ds[k]['conversations'][1]


def test_answer_texts_of_each_kind(data):
    def turns(version):
        ds = GQADataset(data['jsonl'], data['images'], version=version)
        return [(answer(ds, k)['value'], answer(ds, k)['boxes_seq']) for k in range(3)]

    assert turns('q-a') == [('The answer is pipe.', None), ('The answer is no.', None), ('The answer is yes.', None)]
    assert turns('q-c')[1] == ('No, there is a van near the person. The answer is no.', None)
    assert turns('q-bl')[0] == ('The pipe <boxes> is on the wall <boxes>. The answer is pipe.', [[0], [1]])
    assert turns('q-bc') == [
        ('Find the wall <boxes>. Keep the wall that is white. Find the object that is on the white wall <boxes>. '
         'Identify the object. The answer is pipe.', [[0], [1]]),
        ('Find the person <boxes>. Keep the person that is female. Find the train that is near the female person: '
         'there is none. Check whether there is such a train. The answer is no.', [[0]]),
        ('Find the people <boxes>. Check whether the people are standing. The answer is yes.', [[0, 1]]),
    ]
    assert turns('q-s')[1] == ('select: person -> filter gender: female -> relate: train,near,s -> exist. '
                               'The answer is no.', None)
    assert turns('q-bs')[1] == ('select: person <boxes> -> filter gender: female -> relate: train,near,s (none) '
                                '-> exist. The answer is no.', [[0]])


def test_every_version_validates_and_extracts_the_short_answer(data):
    metric = GQAComputeMetrics(require_cue=True)
    for version in VERSIONS:
        ds = GQADataset(data['jsonl'], data['images'], version=version)
        references = []
        for k, record in enumerate(RECORDS):
            item = ds[k]
            validate_item(item, f'gqa {version}', k, image_size=SIZES[record['img_path']], box_tolerance=0)
            human, gpt = item['conversations']
            assert human['value'].count('<image>') == 1 and '<question>' not in human['value']
            assert record['question'].rstrip('?') in human['value'].replace(' <boxes>', '')
            assert extract_answer(gpt['value'], require_cue=True) == record['answer']
            assert ds.meta(k) == {'question_id': record['question_id'], 'answer': record['answer']}
            references.append(gpt['value'])
        scores, verdicts = metric(references, references)
        assert scores == {'accuracy': 1.0, 'parse_failures': 0, 'total': 3, 'protocol': 'published'}


def test_boxes_after_expand2square(data):
    ds = GQADataset(data['jsonl'], data['images'], version='qb-bl')
    item = ds[0]
    # The question's wall comes first, then the answer's pipe; the answer names the pipe first.
    assert item['target']['boxes'] == [WALL, PIPE]
    assert item['conversations'][0]['boxes_seq'] == [[0]]
    assert item['conversations'][1]['boxes_seq'] == [[1], [0]]
    image, target = Expand2square()(item['image'], item['target'])
    assert image.size == (500, 500)  # 500x333: 83 rows of padding above
    norm = [norm_box_xyxy(b, 500, 500) for b in target['boxes']]
    assert norm[0] == pytest.approx([0.0, 83 / 500, 1.0, 283 / 500])
    assert norm[1] == pytest.approx([120 / 500, 123 / 500, 150 / 500, 273 / 500])
    text = PlainBoxFormatter()(item['conversations'][1]['value'], item['conversations'][1]['boxes_seq'], None, norm)
    assert text == 'The pipe [0.240,0.246,0.300,0.546] is on the wall [0.000,0.166,1.000,0.566]. The answer is pipe.'
    assert extract_answer(text) == 'pipe'

    # Tall image (300x400): 50 columns of padding left; a group of two boxes fills one placeholder.
    item = ds[2]
    assert item['target']['boxes'] == [PERSON, PERSON2]
    image, target = Expand2square()(item['image'], item['target'])
    norm = [norm_box_xyxy(b, 400, 400) for b in target['boxes']]
    assert norm[0] == pytest.approx([60 / 400, 50 / 400, 160 / 400, 350 / 400])
    assert norm[1] == pytest.approx([200 / 400, 60 / 400, 340 / 400, 400 / 400])
    question = PlainBoxFormatter()(item['conversations'][0]['value'], item['conversations'][0]['boxes_seq'], None, norm)
    assert 'Are both people [0.150,0.125,0.400,0.875;0.500,0.150,0.850,1.000] standing?' in question


def test_target_keeps_only_the_boxes_used(data):
    ds = GQADataset(data['jsonl'], data['images'], version='q-bc')
    item = ds[1]  # the van is only in the full answer, which q-bc does not use
    assert item['target'] == {'boxes': [PERSON], 'points': []}
    ds = GQADataset(data['jsonl'], data['images'], version='q-a')
    assert ds[1]['target'] == {'boxes': [], 'points': []}
    assert compact_boxes([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]], [[[2]], None, [[0, 2]]]) == (
        [[2.0, 2.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0]], [[[0]], None, [[1, 0]]])


def test_qbp_mixes_boxed_and_plain_questions_deterministically(data):
    ds = GQADataset(data['jsonl'], data['images'], version='qbp-a', question_box_prob=0.3)
    choices = [ds.boxed_question(i) for i in range(2000)]
    assert 0.26 < sum(choices) / len(choices) < 0.34
    again = GQADataset(data['jsonl'], data['images'], version='qbp-a', question_box_prob=0.3)
    assert [again.boxed_question(i) for i in range(2000)] == choices
    other = GQADataset(data['jsonl'], data['images'], version='qbp-a', question_box_prob=0.3, seed=1)
    assert [other.boxed_question(i) for i in range(2000)] != choices
    never = GQADataset(data['jsonl'], data['images'], version='qbp-a', question_box_prob=0.0)
    always = GQADataset(data['jsonl'], data['images'], version='qbp-a', question_box_prob=1.0)
    assert [never[k]['conversations'][0]['boxes_seq'] for k in range(3)] == [None] * 3
    assert [always[k]['conversations'][0]['boxes_seq'] for k in range(3)] == [[[0]], [[0]], [[0, 1]]]
    with pytest.raises(ValueError, match='question_box_prob'):
        GQADataset(data['jsonl'], data['images'], version='qbp-a', question_box_prob=1.5)


def test_unknown_version_lists_the_valid_ones(data):
    with pytest.raises(ValueError) as info:
        GQADataset(data['jsonl'], data['images'], version='q-x')
    message = str(info.value)
    assert "unknown version 'q-x'" in message
    assert all(v in message for v in ('q-a', 'qb-bc', 'qbp-bs'))


def test_bad_records_name_file_and_line(data, tmp_path):
    no_boxes = [{k: v for k, v in r.items() if k not in ('boxes', 'width', 'height')} for r in RECORDS]
    path = write_jsonl(tmp_path / 'testdev.jsonl', no_boxes)
    GQADataset(path, data['images'], version='q-s')  # no boxes needed
    with pytest.raises(DataFileError, match=r'testdev.jsonl:1: version q-bc needs field.*boxes.*scene-graphs'):
        GQADataset(path, data['images'], version='q-bc')

    path = write_jsonl(tmp_path / 'nofull.jsonl', [RECORDS[0], {k: v for k, v in RECORDS[1].items()
                                                               if k != 'full_answer'}])
    with pytest.raises(DataFileError, match=r"nofull.jsonl:2: version q-c needs field\(s\) \['full_answer'\]"):
        GQADataset(path, data['images'], version='q-c')

    path = write_jsonl(tmp_path / 'noanswer.jsonl', [{k: v for k, v in RECORDS[0].items() if k != 'answer'}])
    with pytest.raises(DataFileError, match=r'noanswer.jsonl:1: missing field'):
        GQADataset(path, data['images'], version='q-a')

    path = write_jsonl(tmp_path / 'size.jsonl', [dict(RECORDS[0], width=640)])
    with pytest.raises(DataFileError, match=r'size.jsonl:1: image 2375429.jpg is 500x333 but the scene graph says 640'):
        GQADataset(path, data['images'], version='q-a')[0]

    path = write_jsonl(tmp_path / 'index.jsonl', [dict(RECORDS[0], question_boxes_seq=[[5]])])
    with pytest.raises(DataFileError, match=r'index.jsonl:1: refers to box\(es\) \[5\] but the record has 2 boxes'):
        GQADataset(path, data['images'], version='qb-a')[0]

    path = write_jsonl(tmp_path / 'image.jsonl', [dict(RECORDS[0], img_path='missing.jpg')])
    with pytest.raises(DataFileError, match=r'image.jsonl:1: image not found'):
        GQADataset(path, data['images'], version='q-a')[0]


def test_box_outside_the_image_is_caught_by_validation(data, tmp_path):
    from mllm.dataset.validation import InvalidSampleError

    path = write_jsonl(tmp_path / 'outside.jsonl', [dict(RECORDS[0], boxes=[[0, 0, 520, 200], PIPE])])
    item = GQADataset(path, data['images'], version='qb-a')[0]
    with pytest.raises(InvalidSampleError, match=r'outside.jsonl:1.*lies outside the 500x333 image'):
        validate_item(item, 'gqa', 0, image_size=item['image'].size)


def test_template_without_question_placeholder_fails_at_load(data, tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(['<image> <question> Answer.', '<image> What do you see?']))
    with pytest.raises(ValueError, match=r"bad.json: template 1 .* lacks placeholder\(s\) \['<question>'\]"):
        GQADataset(data['jsonl'], data['images'], version='q-a', template_file=str(bad))
    defaults = {'qb-a': 'GQA.json', 'q-c': 'GQA_full.json', 'q-bl': 'GQA_full_box.json', 'qbp-bc': 'GQA_BCoT.json',
                'q-s': 'GQA_CoT.json', 'q-bs': 'GQA_BCoT.json'}
    for version, name in defaults.items():
        ds = GQADataset(data['jsonl'], data['images'], version=version)
        assert ds.templates.path.endswith('/' + name) and len(ds.templates.templates) >= 5
