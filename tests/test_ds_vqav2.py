"""Tests for VQAv2Dataset / PureVQADataset (mllm/dataset/single_image_dataset/vqa.py) and the VQAv2 config."""
import json

import pytest
from mmengine.config import Config

from mllm.dataset.builder import build_raw_dataset
from mllm.dataset.root import DATASETS
from mllm.dataset.single_image_dataset.base import MissingDataPathError
from mllm.dataset.single_image_dataset.vqa import PureVQADataset, VQAv2Dataset, majority_answer
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.utils.question_templates import QuestionTemplates
from mllm.dataset.utils.transform import Expand2square
from mllm.dataset.validation import validate_item
from tests.helpers import write_images, write_jsonl
from tests.test_prep_vqav2 import answers as official_answers

# Records as tools/prepare_data/vqav2.py writes them (official annotation nested under 'annotation').
RECORDS = [
    {'question_id': 42000, 'image_id': 42, 'image_path': 'COCO_val2014_000000000042.jpg',
     'question': 'How many dogs are there?',
     'annotation': {'question_type': 'how many', 'answer_type': 'number', 'multiple_choice_answer': '2',
                    'answers': official_answers(['2'] * 6 + ['3'] * 3 + ['two'])}},
    # A 5/5 tie between 'red' and 'dark red': the official multiple_choice_answer decides.
    {'question_id': 42001, 'image_id': 42, 'image_path': 'COCO_val2014_000000000042.jpg',
     'question': '  What colour is the café sign?  ',
     'annotation': {'question_type': 'what color is the', 'answer_type': 'other',
                    'multiple_choice_answer': 'dark red',
                    'answers': official_answers(['red', 'dark red'] * 5)}},
    {'question_id': 7000, 'image_id': 7, 'image_path': 'COCO_val2014_000000000007.jpg',
     'question': 'Is it raining?',
     'annotation': {'question_type': 'is it', 'answer_type': 'yes/no', 'multiple_choice_answer': 'no',
                    'answers': official_answers(['no'] * 10)}},
]
SIZES = {'COCO_val2014_000000000042.jpg': (96, 64), 'COCO_val2014_000000000007.jpg': (64, 100)}


@pytest.fixture
def vqa(tmp_path):
    images = write_images(tmp_path / 'val2014', SIZES)
    return {'jsonl': write_jsonl(tmp_path / 'vqav2_val2014.jsonl', RECORDS), 'images': str(images),
            'root': tmp_path}


def test_items_follow_canonical_format(vqa):
    ds = VQAv2Dataset(vqa['jsonl'], vqa['images'])
    assert len(ds) == 3
    templates = QuestionTemplates('VQA.json', required=('<image>', '<question>'))
    expected_answers = ['2', 'dark red', 'no']
    for k, record in enumerate(RECORDS):
        item = ds[k]
        assert item['image'].size == SIZES[record['image_path']] and item['image'].mode == 'RGB'
        assert item['source'] == f"{vqa['jsonl']}:{k + 1}"
        assert item['target'] == {'boxes': [], 'points': []}
        human, gpt = item['conversations']
        assert human['value'] == templates.get(k).replace('<question>', record['question'].strip())
        assert '<question>' not in human['value'] and human['value'].count('<image>') == 1
        assert gpt == {'from': 'gpt', 'value': expected_answers[k], 'boxes_seq': None, 'points_seq': None}
        validate_item(item, 'vqav2', k, image_size=item['image'].size)
    # No boxes to move: padding to a square keeps the empty target and yields side max(w, h).
    image, target = Expand2square()(ds[0]['image'], ds[0]['target'])
    assert image.size == (96, 96) and target == {'boxes': [], 'points': []}


def test_meta_holds_all_raw_answers(vqa):
    ds = VQAv2Dataset(vqa['jsonl'], vqa['images'])
    assert ds.meta(0) == {'question_id': 42000, 'answers': ['2'] * 6 + ['3'] * 3 + ['two'],
                          'answer_type': 'number', 'question_type': 'how many'}
    assert ds.meta(2)['answers'] == ['no'] * 10 and ds.meta(2)['answer_type'] == 'yes/no'
    json.dumps([ds.meta(k) for k in range(len(ds))])


def test_majority_answer_tie_breaks():
    assert majority_answer(['a', 'b', 'b', 'a', 'c']) == 'a'               # tie -> earliest in annotator order
    assert majority_answer(['a', 'b', 'b', 'a', 'c'], preferred='b') == 'b'  # tie -> official answer if tied
    assert majority_answer(['a', 'b', 'b', 'c'], preferred='a') == 'b'     # no tie -> the majority wins
    assert majority_answer(['a', 'b', 'b', 'c'], preferred='zzz') == 'b'


def test_answer_template_and_question_template(vqa):
    tpl = vqa['root'] / 'tpl.json'
    tpl.write_text(json.dumps(['<image> Q: <question>']))
    ds = VQAv2Dataset(vqa['jsonl'], vqa['images'], template_file=str(tpl), answer_template='The answer is <answer>.')
    item = ds[1]
    assert item['conversations'][0]['value'] == '<image> Q: What colour is the café sign?'
    assert item['conversations'][1]['value'] == 'The answer is dark red.'
    with pytest.raises(ValueError, match='<answer>'):
        VQAv2Dataset(vqa['jsonl'], vqa['images'], answer_template='Answer: X')
    tpl.write_text(json.dumps(['<image> Q: <question>', '<image> What is it?']))
    with pytest.raises(ValueError, match='template 1'):
        VQAv2Dataset(vqa['jsonl'], vqa['images'], template_file=str(tpl))


def test_question_choice_is_seeded(vqa):
    a = [VQAv2Dataset(vqa['jsonl'], vqa['images'], seed=5)[k]['conversations'][0]['value'] for k in (2, 0, 1)]
    b = [VQAv2Dataset(vqa['jsonl'], vqa['images'], seed=5)[k]['conversations'][0]['value'] for k in (2, 0, 1)]
    assert a == b


def test_flat_shikra_style_records(tmp_path):
    images = write_images(tmp_path / 'img', SIZES)
    jsonl = write_jsonl(tmp_path / 'flat.jsonl', [
        {'img_path': 'COCO_val2014_000000000007.jpg', 'question': 'Colour?', 'answers': ['blue', 'green', 'green']},
        {'image_path': 'COCO_val2014_000000000042.jpg', 'question': 'What?', 'answer': 'a kite'},
    ])
    ds = VQAv2Dataset(jsonl, str(images))
    assert ds[0]['conversations'][1]['value'] == 'green' and ds[0]['image'].size == (64, 100)
    assert ds[1]['conversations'][1]['value'] == 'a kite'
    assert ds.meta(0) == {'question_id': None, 'answers': ['blue', 'green', 'green']}
    assert ds.meta(1) == {'question_id': None, 'answers': []}  # the metric falls back to the reference


def bad_record_error(tmp_path, record, images=True):
    jsonl = write_jsonl(tmp_path / 'bad.jsonl', [RECORDS[2], record])
    folder = str(write_images(tmp_path / 'img', SIZES)) if images else None
    with pytest.raises(DataFileError) as info:
        VQAv2Dataset(jsonl, folder)
    return str(info.value)


@pytest.mark.parametrize('record, needle', [
    ({'image_path': 'x.jpg', 'answer': 'no'}, "missing field(s) ['question']"),
    ({'question': 'Why?', 'answer': 'no'}, "'image_path'"),
    ({'image_path': 'x.jpg', 'question': '  ', 'answer': 'no'}, 'non-empty'),
    ({'image_path': 'x.jpg', 'question': 'Why?'}, 'PureVQADataset'),
    ({'image_path': 'x.jpg', 'question': 'Why?', 'answers': 'no'}, "'answers' must be a list"),
    ({'image_path': 'x.jpg', 'question': 'Why?', 'annotation': {'answers': [{'answer_id': 1}]}}, 'answer 0'),
    ({'image_path': 'x.jpg', 'question': 'Why?', 'answer': ' '}, 'answer is empty'),
])
def test_bad_records_name_file_and_line(tmp_path, record, needle):
    message = bad_record_error(tmp_path, record)
    assert f"{tmp_path / 'bad.jsonl'}:2" in message and needle in message


def test_malformed_line_and_missing_paths(tmp_path, vqa):
    bad = tmp_path / 'broken.jsonl'
    bad.write_text(json.dumps(RECORDS[0]) + '\n{"question": \n')
    with pytest.raises(DataFileError, match=f"{bad}:2"):
        VQAv2Dataset(str(bad), vqa['images'])
    with pytest.raises(MissingDataPathError) as info:
        VQAv2Dataset(str(tmp_path / 'nope.jsonl'), vqa['images'])
    assert info.value.key == 'filename'
    with pytest.raises(MissingDataPathError) as info:
        VQAv2Dataset(vqa['jsonl'], str(tmp_path / 'no_images'))
    assert info.value.key == 'image_folder'
    missing_image = dict(RECORDS[0], image_path='COCO_val2014_000000999999.jpg')
    ds = VQAv2Dataset(write_jsonl(tmp_path / 'm.jsonl', [missing_image]), vqa['images'])
    with pytest.raises(DataFileError, match=rf"{tmp_path / 'm.jsonl'}:1: image not found"):
        ds[0]


def test_pure_vqa_items_have_an_empty_answer_turn(tmp_path):
    images = write_images(tmp_path / 'test2015', {'COCO_test2015_000000000001.jpg': (50, 80)})
    jsonl = write_jsonl(tmp_path / 'q.jsonl', [
        {'question_id': 1000, 'image_path': 'COCO_test2015_000000000001.jpg', 'question': '¿Qué hay aquí?'},
        {'image_path': 'COCO_test2015_000000000001.jpg', 'question': 'Any answer is ignored', 'answer': 'x'},
    ])
    ds = PureVQADataset(jsonl, str(images))
    item = ds[0]
    assert item['conversations'][1] == {'from': 'gpt', 'value': '', 'boxes_seq': None, 'points_seq': None}
    assert '¿Qué hay aquí?' in item['conversations'][0]['value']
    validate_item(item, 'vqav2_testdev', 0, image_size=(50, 80))
    assert ds.meta(0) == {'question_id': 1000} and ds.meta(1) == {'question_id': None}
    assert ds[1]['conversations'][1]['value'] == ''


def test_config_entries_build(tmp_path):
    cfg = Config.fromfile('config/_base_/dataset/vqav2.py')
    assert cfg.VQAV2_METRIC == {'type': 'VQAv2ComputeMetrics'}
    assert cfg.VQAV2_TRAIN.image_folder == '{coco}/train2014' and cfg.VQAV2_VAL.image_folder == '{coco}/val2014'
    assert cfg.VQAV2_TESTDEV.type == 'PureVQADataset' and cfg.VQAV2_TESTDEV.image_folder == '{coco}/test2015'
    roots = {'annotations': str(tmp_path / 'ann'), 'coco': str(tmp_path / 'coco')}
    (tmp_path / 'ann').mkdir()
    write_images(tmp_path / 'coco' / 'val2014', SIZES)
    write_jsonl(tmp_path / 'ann' / 'vqav2_val2014.jsonl', RECORDS)
    write_images(tmp_path / 'coco' / 'test2015', {'COCO_test2015_000000000001.jpg': (50, 80)})
    write_jsonl(tmp_path / 'ann' / 'vqav2_test-dev2015.jsonl',
                [{'question_id': 1000, 'image_path': 'COCO_test2015_000000000001.jpg', 'question': 'Why?'}])
    val = build_raw_dataset(cfg.VQAV2_VAL.to_dict(), roots, 'data_args.validation')
    assert isinstance(val, VQAv2Dataset) and val[0]['conversations'][1]['value'] == '2'
    testdev = build_raw_dataset(cfg.VQAV2_TESTDEV.to_dict(), roots, 'data_args.test')
    assert isinstance(testdev, PureVQADataset) and testdev.meta(0) == {'question_id': 1000}
    assert DATASETS.get('VQAv2Dataset') is VQAv2Dataset and DATASETS.get('PureVQADataset') is PureVQADataset
