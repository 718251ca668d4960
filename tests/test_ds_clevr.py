"""CLEVRDataset on hand-written JSONL in the converter's layout: the three versions' texts, points after
Expand2square (480x320 images), answer extraction and the errors for bad files."""
import json

import pytest

from mllm.dataset.process_function.box_formatter import PlainBoxFormatter
from mllm.dataset.single_image_dataset.clevr import VERSIONS, CLEVRDataset, reasoning_steps
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.utils.transform import Expand2square, norm_point_xy
from mllm.dataset.validation import validate_item
from mllm.metrics.answer_extraction import extract_answer
from mllm.metrics.exact_match import CLEVRComputeMetrics
from tests.helpers import write_images, write_jsonl
from tests.test_prep_clevr import POINTS, record, step

# Questions on the scene of tests/test_prep_clevr.py (its POINTS; CLEVR images are RGBA PNGs), family 0.
IMAGES = {'CLEVR_val_000000.png': (480, 320)}
ALL = [0, 1, 2, 3]
RECORDS = [
    record(0, 'Are there any other things that have the same shape as the tiny blue ball?', 'yes', 0, [
        step('scene', [], objects=ALL), step('filter_size', [0], ['small'], objects=[1, 3]),
        step('filter_color', [1], ['blue'], objects=[1]), step('filter_shape', [2], ['sphere'], objects=[1]),
        step('unique', [3], objects=[1]), step('same_shape', [4], objects=[3]), step('exist', [5], value='yes')]),
    record(1, 'What material is the big cylinder?', 'rubber', 0, [
        step('scene', [], objects=ALL), step('filter_size', [0], ['large'], objects=[0, 2]),
        step('filter_shape', [1], ['cylinder'], objects=[2]), step('unique', [2], objects=[2]),
        step('query_material', [3], value='rubber')]),
    record(2, 'How many things are either red cubes or small spheres?', '3', 0, [
        step('scene', [], objects=ALL), step('filter_color', [0], ['red'], objects=[0, 3]),
        step('filter_shape', [1], ['cube'], objects=[0]), step('scene', [], objects=ALL),
        step('filter_size', [3], ['small'], objects=[1, 3]), step('filter_shape', [4], ['sphere'], objects=[1, 3]),
        step('union', [2, 5], objects=[0, 1, 3]), step('count', [6], value='3')]),
    record(3, 'Are there any large metal spheres?', 'no', 0, [
        step('scene', [], objects=ALL), step('filter_size', [0], ['large'], objects=[0, 2]),
        step('filter_material', [1], ['metal'], objects=[0]), step('filter_shape', [2], ['sphere'], objects=[]),
        step('exist', [3], value='no')]),
    record(4, 'Is the color of the large cube the same as the cylinder?', 'no', 0, [
        step('scene', [], objects=ALL), step('filter_size', [0], ['large'], objects=[0, 2]),
        step('filter_shape', [1], ['cube'], objects=[0]), step('unique', [2], objects=[0]),
        step('query_color', [3], value='red'), step('scene', [], objects=ALL),
        step('filter_shape', [5], ['cylinder'], objects=[2]), step('unique', [6], objects=[2]),
        step('query_color', [7], value='gray'), step('equal_color', [4, 8], value='no')]),
]


@pytest.fixture
def data(tmp_path):
    images = write_images(tmp_path / 'images' / 'val', IMAGES, color=(10, 200, 10, 255), mode='RGBA')
    return {'jsonl': write_jsonl(tmp_path / 'CLEVR_val.jsonl', RECORDS), 'images': str(images)}


def gpt(ds, k):
    turn = ds[k]['conversations'][1]
    return turn['value'], turn['points_seq']


def test_answer_texts(data):
    a = CLEVRDataset(data['jsonl'], data['images'], version='q-a')
    assert [gpt(a, k) for k in range(5)] == [(f"The answer is {r['answer']}.", None) for r in RECORDS]
    s = CLEVRDataset(data['jsonl'], data['images'], version='q-s')
    assert [gpt(s, k)[0] for k in range(5)] == [
        'Find the small blue sphere. Find the other objects with the same shape as the small blue sphere. '
        'So at least one exists. The answer is yes.',
        'Find the large cylinder. The material of the large cylinder is rubber. The answer is rubber.',
        'Find the red cubes. Find the small spheres. Find the red cubes or small spheres. Counting them gives 3. '
        'The answer is 3.',
        'There are no large metal spheres. So none exists. The answer is no.',
        'Find the large cube. The color of the large cube is red. Find the cylinder. The color of the cylinder is '
        'gray. Red and gray are different. The answer is no.',
    ]
    bs = CLEVRDataset(data['jsonl'], data['images'], version='q-bs')
    assert gpt(bs, 0) == ('Find the small blue sphere <points>. Find the other objects with the same shape as the '
                          'small blue sphere <points>. So at least one exists. The answer is yes.', [[0], [1]])
    assert gpt(bs, 2) == ('Find the red cubes <points>. Find the small spheres <points>. Find the red cubes or small '
                          'spheres <points>. Counting them gives 3. The answer is 3.', [[0], [1, 2], [0, 1, 2]])
    assert gpt(bs, 3) == ('There are no large metal spheres. So none exists. The answer is no.', None)
    assert bs[3]['target'] == {'boxes': [], 'points': []}


def test_every_version_validates_and_extracts_the_answer(data):
    metric = CLEVRComputeMetrics(require_cue=True)
    for version in VERSIONS:
        ds = CLEVRDataset(data['jsonl'], data['images'], version=version)
        references = []
        for k, rec in enumerate(RECORDS):
            item = ds[k]
            validate_item(item, f'clevr {version}', k, image_size=(480, 320), box_tolerance=0)
            human, answer = item['conversations']
            assert human['value'].count('<image>') == 1 and rec['question'] in human['value']
            assert extract_answer(answer['value'], require_cue=True) == rec['answer']
            assert ds.meta(k) == {'question_index': rec['question_index'], 'answer': rec['answer']}
            references.append(answer['value'])
        scores, _ = metric(references, references)
        assert scores == {'accuracy': 1.0, 'parse_failures': 0, 'total': 5}


def test_points_after_expand2square(data):
    ds = CLEVRDataset(data['jsonl'], data['images'], version='q-bs')
    item = ds[2]
    # Used in order of first mention: red cube (0), then the two small spheres (1 and 3 of the scene).
    assert item['target']['points'] == [[100.0, 200.0], [300.0, 150.0], [0.0, 100.0]]
    image, target = Expand2square()(item['image'], item['target'])
    assert image.size == (480, 480)  # 480x320: 80 rows of padding above
    norm = [norm_point_xy(p, 480, 480) for p in target['points']]
    expected = [[100 / 480, 280 / 480], [300 / 480, 230 / 480], [0.0, 180 / 480]]
    for got, want in zip(norm, expected):
        assert got == pytest.approx(want)
    text = PlainBoxFormatter()(item['conversations'][1]['value'], None, item['conversations'][1]['points_seq'],
                               None, norm)
    assert text.startswith('Find the red cubes [0.208,0.583]. Find the small spheres [0.625,0.479;0.000,0.375]. ')
    assert extract_answer(text) == '3'

    item = ds[1]  # the cylinder's centre lies on the right and bottom border
    assert item['target']['points'] == [[480.0, 319.0]]
    _, target = Expand2square()(item['image'], item['target'])
    assert norm_point_xy(target['points'][0], 480, 480) == pytest.approx([1.0, 399 / 480])


def test_reasoning_steps_without_points_has_no_placeholders():
    text, seq = reasoning_steps(RECORDS[4]['program'], with_points=False)
    assert '<points>' not in text and seq == []
    text, seq = reasoning_steps(RECORDS[4]['program'], with_points=True)
    assert text.count('<points>') == 2 and seq == [[0], [2]]


def test_unknown_version_and_bad_records(data, tmp_path):
    with pytest.raises(ValueError, match=r"unknown version 'q-bc'; valid versions: q-a, q-s, q-bs"):
        CLEVRDataset(data['jsonl'], data['images'], version='q-bc')

    path = tmp_path / 'noprogram.jsonl'
    path.write_text(json.dumps(RECORDS[0]) + '\n' + json.dumps({k: v for k, v in RECORDS[1].items()
                                                                 if k != 'program'}) + '\n')
    CLEVRDataset(str(path), data['images'], version='q-a')
    with pytest.raises(DataFileError, match=r"noprogram.jsonl:2: version q-s needs field\(s\) \['program'\]"):
        CLEVRDataset(str(path), data['images'], version='q-s')

    path = tmp_path / 'index.jsonl'
    path.write_text(json.dumps(dict(RECORDS[1], points=POINTS[:2])) + '\n')
    with pytest.raises(DataFileError, match=r'index.jsonl:1: program refers to object\(s\) \[2\] but the record has 2'):
        CLEVRDataset(str(path), data['images'], version='q-bs')[0]

    path = tmp_path / 'malformed.jsonl'
    path.write_text(json.dumps(dict(RECORDS[1], program=[{'function': 'scene'}])) + '\n')
    with pytest.raises(DataFileError, match=r'malformed.jsonl:1: malformed program'):
        CLEVRDataset(str(path), data['images'], version='q-s')[0]

    path = tmp_path / 'noquestion.jsonl'
    path.write_text(json.dumps({k: v for k, v in RECORDS[0].items() if k != 'question'}) + '\n')
    with pytest.raises(DataFileError, match=r'noquestion.jsonl:1: missing field'):
        CLEVRDataset(str(path), data['images'], version='q-a')

    with pytest.raises(DataFileError, match='image_folder'):
        CLEVRDataset(data['jsonl'], str(tmp_path / 'nowhere'), version='q-a')


def test_default_templates(data):
    for version, name in (('q-a', 'CLEVR.json'), ('q-s', 'CLEVR_CoT.json'), ('q-bs', 'CLEVR_PCoT.json')):
        ds = CLEVRDataset(data['jsonl'], data['images'], version=version)
        assert ds.templates.path.endswith('/' + name) and len(ds.templates.templates) >= 5
