"""PointQA Local / LookTwice and Visual7W pointing datasets: items, versions, coordinates, errors."""
import json

import pytest

from mllm.dataset.process_function.box_formatter import PlainBoxFormatter
from mllm.dataset.root import DATASETS
from mllm.dataset.single_image_dataset.point_qa import (
    PointQALocalDataset,
    PointQATwiceDataset,
    V7WPointingDataset,
)
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.utils.transform import Expand2square, norm_box_xyxy, norm_point_xy
from mllm.dataset.validation import InvalidSampleError, validate_item
from mllm.metrics.point import PointingComputeMetrics
from tests.helpers import write_images, write_jsonl

# (relative path, (width, height))
IMAGES = {'VG_100K/wide.jpg': (120, 80), 'VG_100K/tall.png': (60, 100)}
LOCAL = [
    # box touches the left and bottom border; explicit point
    {'file_path': 'VG_100K/wide.jpg', 'question': 'What colour is this?', 'answer': 'red',
     'bbox': [0, 10, 40, 80], 'point': [20, 45]},
    # box touches the top and right border; no point -> box centre; unicode question and answer
    {'file_path': 'VG_100K/tall.png', 'question': "Qu'est-ce que c'est ? ☕", 'answer': 'café',
     'bbox': [10, 0, 60, 30]},
]
TWICE = [dict(LOCAL[0], obj_question='How many cars like this one are there?',
              super_question='How many vehicles like this one are there?',
              general_question='How many of these are there?', answer=3)]

V7W_IMAGES = {'v7w_1.jpg': (90, 60), 'v7w_2.png': (50, 100)}
V7W_CANDIDATES = [[0, 0, 30, 20], [60, 40, 90, 60], [10, 25, 50, 55], [70, 0, 90, 10]]
V7W = [
    {'img_path': 'v7w_1.jpg', 'question': 'Which cup is full?', 'candidates': V7W_CANDIDATES, 'answer_index': 2,
     'width': 90, 'height': 60, 'qa_id': 11},
    # Shikra's layout: file_path, and the answer given as the box itself; no size (read from the header)
    {'file_path': 'v7w_2.png', 'question': 'Which sign says ‘stop’?',
     'candidates': [[0, 0, 50, 40], [5, 60, 45, 100], [20, 20, 30, 30]], 'answer': [5, 60, 45, 100]},
]


@pytest.fixture
def data(tmp_path):
    images = tmp_path / 'images'
    write_images(images, {**IMAGES, **V7W_IMAGES}, color=lambda k: (40 * k, 120, 200))
    return {'images': str(images), 'local': write_jsonl(tmp_path / 'local.jsonl', LOCAL),
            'twice': write_jsonl(tmp_path / 'twice.jsonl', TWICE), 'v7w': write_jsonl(tmp_path / 'v7w.jsonl', V7W),
            'root': tmp_path}


def square_norm(item):
    """Boxes and points of an item after Expand2square, normalised by the square side."""
    image, target = Expand2square()(item['image'], item['target'])
    side = image.size[0]
    return ([norm_box_xyxy(b, side, side) for b in target['boxes']],
            [norm_point_xy(p, side, side) for p in target['points']])


def render(item):
    """The conversation text as the model sees it (plain formatter, after Expand2square)."""
    boxes, points = square_norm(item)
    fmt = PlainBoxFormatter()
    return [fmt(t['value'], t.get('boxes_seq'), t.get('points_seq'), boxes, points) for t in item['conversations']]


# -- PointQA Local -----------------------------------------------------------------------------
def test_local_box_version(data):
    ds = PointQALocalDataset(data['local'], data['images'], version='box')
    assert len(ds) == 2
    item = ds[0]
    validate_item(item, 'local', 0, image_size=item['image'].size)
    assert item['source'] == f"{data['local']}:1"
    human, gpt = item['conversations']
    assert human['value'].count('<boxes>') == 1 and '<points>' not in human['value']
    assert '<image>' in human['value'] and 'What colour is this?' in human['value']
    assert human['boxes_seq'] == [[0]] and human['points_seq'] is None
    assert gpt['value'] == 'The answer is red.'
    assert item['target'] == {'boxes': [[0.0, 10.0, 40.0, 80.0]], 'points': [[20.0, 45.0]]}
    # 120x80 -> 120x120, shifted down by 20: box [0, 30, 40, 100] / 120
    boxes, points = square_norm(item)
    assert boxes[0] == pytest.approx([0.0, 0.25, 1 / 3, 100 / 120])
    assert points[0] == pytest.approx([20 / 120, 65 / 120])
    assert '[0.000,0.250,0.333,0.833]' in render(item)[0]


def test_local_point_version_centre_default_and_unicode(data):
    ds = PointQALocalDataset(data['local'], data['images'], version='point')
    item = ds[1]
    validate_item(item, 'local', 1, image_size=item['image'].size)
    human, gpt = item['conversations']
    assert human['value'].count('<points>') == 1 and '<boxes>' not in human['value']
    assert human['points_seq'] == [[0]] and human['boxes_seq'] is None
    assert "Qu'est-ce que c'est ? ☕" in human['value'] and gpt['value'] == 'The answer is café.'
    assert item['target']['points'] == [[35.0, 15.0]]  # centre of [10, 0, 60, 30]
    # 60x100 -> 100x100, shifted right by 20
    boxes, points = square_norm(item)
    assert boxes[0] == pytest.approx([0.3, 0.0, 0.8, 0.3])
    assert points[0] == pytest.approx([0.55, 0.15])
    assert '[0.550,0.150]' in render(item)[0]


def test_both_version_is_a_seeded_mix(data):
    path = write_jsonl(data['root'] / 'many.jsonl', [LOCAL[0]] * 40)
    ds = PointQALocalDataset(path, data['images'], version='both')
    kinds = ['point' if ds[i]['conversations'][0]['points_seq'] else 'box' for i in range(len(ds))]
    assert 10 <= kinds.count('point') <= 30  # both formats occur
    again = PointQALocalDataset(path, data['images'], version='both')
    assert [again[i]['conversations'][0]['value'] for i in range(40)] == [ds[i]['conversations'][0]['value']
                                                                          for i in range(40)]
    all_box = PointQALocalDataset(path, data['images'], version='both', point_prob=0.0)
    assert all(all_box[i]['conversations'][0]['boxes_seq'] == [[0]] for i in range(40))
    all_point = PointQALocalDataset(path, data['images'], version='both', point_prob=1.0)
    assert all(all_point[i]['conversations'][0]['points_seq'] == [[0]] for i in range(40))


@pytest.mark.parametrize('cls', [PointQALocalDataset, PointQATwiceDataset, V7WPointingDataset])
def test_unknown_version_lists_valid_ones(data, cls):
    with pytest.raises(ValueError, match=r"version must be one of \['box', 'point', 'both'\], got 'bp'"):
        cls(data['local'], data['images'], version='bp')


def test_registered():
    for name in ('PointQALocalDataset', 'PointQATwiceDataset', 'V7WPointingDataset'):
        assert name in DATASETS.module_dict


# -- PointQA LookTwice -------------------------------------------------------------------------
@pytest.mark.parametrize('qtype,text', [('object', 'How many cars like this one are there?'),
                                        ('super', 'How many vehicles like this one are there?'),
                                        ('general', 'How many of these are there?')])
def test_twice_question_types(data, qtype, text):
    ds = PointQATwiceDataset(data['twice'], data['images'], version='box', question_type=qtype)
    item = ds[0]
    validate_item(item, 'twice', 0, image_size=item['image'].size)
    assert text in item['conversations'][0]['value']
    assert item['conversations'][1]['value'] == 'The answer is 3.'


def test_twice_unknown_question_type(data):
    with pytest.raises(ValueError, match=r"question_type must be one of \['object', 'super', 'general'\]"):
        PointQATwiceDataset(data['twice'], data['images'], question_type='oq')


def test_twice_missing_question_field_names_line(data):
    path = write_jsonl(data['root'] / 'bad_twice.jsonl', [TWICE[0], LOCAL[0]])
    with pytest.raises(DataFileError, match=r"bad_twice\.jsonl:2: missing field\(s\) \['super_question'\]"):
        PointQATwiceDataset(path, data['images'], question_type='super')


# -- bad PointQA input -------------------------------------------------------------------------
def test_missing_field_malformed_line_and_bad_box(data):
    root = data['root']
    no_answer = {k: v for k, v in LOCAL[0].items() if k != 'answer'}
    with pytest.raises(DataFileError, match=r"a\.jsonl:2: missing field\(s\) \['answer'\]"):
        PointQALocalDataset(write_jsonl(root / 'a.jsonl', [LOCAL[0], no_answer]), data['images'])
    (root / 'b.jsonl').write_text(json.dumps(LOCAL[0]) + '\n{"file_path": oops\n')
    with pytest.raises(DataFileError, match=r"b\.jsonl:2: not valid JSON"):
        PointQALocalDataset(str(root / 'b.jsonl'), data['images'])
    with pytest.raises(DataFileError, match=r"c\.jsonl:1: 'bbox' must be 4 numbers"):
        PointQALocalDataset(write_jsonl(root / 'c.jsonl', [dict(LOCAL[0], bbox=[1, 2, 3])]), data['images'])
    with pytest.raises(DataFileError, match=r"d\.jsonl:1: missing field 'img_path' \(or 'file_path'\)"):
        PointQALocalDataset(write_jsonl(root / 'd.jsonl', [{'question': 'q', 'answer': 'a', 'bbox': [0, 0, 1, 1]}]),
                            data['images'])


def test_box_outside_image_is_reported_with_source(data):
    path = write_jsonl(data['root'] / 'out.jsonl', [dict(LOCAL[0], bbox=[0, 10, 130, 80])])  # image is 120 wide
    item = PointQALocalDataset(path, data['images'])[0]
    with pytest.raises(InvalidSampleError, match=r"out\.jsonl:1\).*lies outside the 120x80 image"):
        validate_item(item, 'local', 0, image_size=item['image'].size)


def test_template_without_region_placeholder_fails_at_load(data):
    bad = data['root'] / 'bad_template.json'
    bad.write_text(json.dumps(['<image> <question>']))
    with pytest.raises(ValueError, match=r"lacks placeholder\(s\) \['<region>'\]"):
        PointQALocalDataset(data['local'], data['images'], template_file=str(bad))


# -- Visual7W pointing -------------------------------------------------------------------------
def test_v7w_box_version_candidates_and_answer(data):
    ds = V7WPointingDataset(data['v7w'], data['images'], version='box')
    item = ds[0]
    validate_item(item, 'v7w', 0, image_size=item['image'].size)
    human, gpt = item['conversations']
    assert human['value'].count('<boxes>') == 4 and 'Which cup is full?' in human['value']
    assert human['boxes_seq'] == [[0], [1], [2], [3]] and human['points_seq'] is None
    assert gpt['value'] == 'The answer is <boxes>.' and gpt['boxes_seq'] == [[2]] and gpt['points_seq'] is None
    assert item['target']['boxes'] == [[float(v) for v in b] for b in V7W_CANDIDATES]
    # 90x60 -> 90x90, shifted down by 15: the answer [10, 25, 50, 55] -> [10, 40, 50, 70] / 90
    boxes, points = square_norm(item)
    assert boxes[2] == pytest.approx([10 / 90, 40 / 90, 50 / 90, 70 / 90])
    assert boxes[1] == pytest.approx([60 / 90, 55 / 90, 1.0, 75 / 90])  # touches the right border
    assert render(item)[1] == 'The answer is [0.111,0.444,0.556,0.778].'
    meta = ds.meta(0)
    assert meta['answer_index'] == 2 and meta['answer_format'] == 'box' and meta['qa_id'] == 11
    assert meta['gt_box'] == pytest.approx(boxes[2])
    assert [pytest.approx(b) for b in boxes] == meta['candidates']


def test_v7w_point_version(data):
    ds = V7WPointingDataset(data['v7w'], data['images'], version='point')
    item = ds[0]
    validate_item(item, 'v7w', 0, image_size=item['image'].size)
    human, gpt = item['conversations']
    assert human['value'].count('<points>') == 4 and human['points_seq'] == [[0], [1], [2], [3]]
    assert gpt['value'] == 'The answer is <points>.' and gpt['points_seq'] == [[2]] and gpt['boxes_seq'] is None
    assert item['target']['points'][2] == [30.0, 40.0]  # centre of the answer box
    _, points = square_norm(item)
    assert points[2] == pytest.approx([30 / 90, 55 / 90])
    assert render(item)[1] == 'The answer is [0.333,0.611].'


def test_v7w_box_candidates_point_answer(data):
    ds = V7WPointingDataset(data['v7w'], data['images'], version='box', answer_format='point')
    human, gpt = ds[0]['conversations']
    assert human['boxes_seq'] == [[0], [1], [2], [3]] and human['value'].endswith('Give the answer as a point.')
    assert gpt['points_seq'] == [[2]] and gpt['boxes_seq'] is None
    assert ds.meta(0)['answer_format'] == 'point'


def test_v7w_shikra_layout_and_header_size(data):
    ds = V7WPointingDataset(data['v7w'], data['images'], version='box')
    item = ds[1]
    validate_item(item, 'v7w', 1, image_size=item['image'].size)
    assert item['conversations'][1]['boxes_seq'] == [[1]]  # the 'answer' box is candidate 1
    assert "Which sign says ‘stop’?" in item['conversations'][0]['value']
    # 50x100 (size read from the header) -> 100x100, shifted right by 25: [5, 60, 45, 100] -> [30, 60, 70, 100]
    assert ds.meta(1)['gt_box'] == pytest.approx([0.3, 0.6, 0.7, 1.0])
    image_space = V7WPointingDataset(data['v7w'], data['images'], meta_space='image')
    assert image_space.meta(1)['gt_box'] == pytest.approx([0.1, 0.6, 0.9, 1.0])


def test_v7w_shuffle_keeps_the_answer(data):
    path = write_jsonl(data['root'] / 'v7w_many.jsonl', [V7W[0]] * 12)
    ds = V7WPointingDataset(path, data['images'], version='box', shuffle_candidates=True)
    answer_box = [float(v) for v in V7W_CANDIDATES[2]]
    orders = set()
    for i in range(len(ds)):
        item = ds[i]
        k = item['conversations'][1]['boxes_seq'][0][0]
        assert item['target']['boxes'][k] == answer_box
        assert ds.meta(i)['answer_index'] == k
        assert sorted(item['target']['boxes']) == sorted([float(v) for v in b] for b in V7W_CANDIDATES)
        orders.add(tuple(map(tuple, item['target']['boxes'])))
    assert len(orders) > 1  # the order changes between samples
    again = V7WPointingDataset(path, data['images'], version='box', shuffle_candidates=True)
    assert again[5]['target'] == ds[5]['target']


def test_v7w_bad_records(data):
    root = data['root']
    with pytest.raises(DataFileError, match=r"e\.jsonl:1: 'answer_index' must be an integer in \[0, 4\), got 4"):
        V7WPointingDataset(write_jsonl(root / 'e.jsonl', [dict(V7W[0], answer_index=4)]), data['images'])
    with pytest.raises(DataFileError, match=r"f\.jsonl:2: the 'answer' box \[1\.0, 1\.0, 2\.0, 2\.0\] is not one"):
        V7WPointingDataset(write_jsonl(root / 'f.jsonl', [V7W[0], dict(V7W[1], answer=[1, 1, 2, 2])]),
                           data['images'])
    no_answer = {k: v for k, v in V7W[0].items() if k != 'answer_index'}
    with pytest.raises(DataFileError, match=r"g\.jsonl:1: missing field\(s\) \['answer_index'\]"):
        V7WPointingDataset(write_jsonl(root / 'g.jsonl', [no_answer]), data['images'])
    with pytest.raises(ValueError, match=r"answer_format must be one of \['box', 'point'\]"):
        V7WPointingDataset(data['v7w'], data['images'], answer_format='xy')
    with pytest.raises(ValueError, match=r"meta_space must be one of \['square', 'image'\]"):
        V7WPointingDataset(data['v7w'], data['images'], meta_space='pixels')


@pytest.mark.parametrize('version', ['box', 'point'])
def test_v7w_references_score_perfectly_with_metas(data, version):
    ds = V7WPointingDataset(data['v7w'], data['images'], version=version)
    references = [render(ds[i])[1] for i in range(len(ds))]
    metas = [ds.meta(i) for i in range(len(ds))]
    scores, verdicts = PointingComputeMetrics()(references, references, metas)
    assert scores['accuracy'] == 1.0 and scores['parse_failures'] == 0 and scores['meta_mismatches'] == 0
    assert scores[f'{version}_predictions'] == 2


def test_config_entries_match_the_constructors():
    import inspect
    import re

    from mmengine.config import Config

    cfg = Config.fromfile('config/_base_/dataset/point_qa.py')
    groups = ['POINT_LOCAL_TRAIN', 'POINT_LOCAL_TEST', 'POINT_TWICE_TRAIN', 'POINT_TWICE_TEST', 'POINT_V7W_TRAIN',
              'POINT_V7W_TEST']
    assert len(cfg.POINT_TWICE_TRAIN) == 9 and len(cfg.POINT_TWICE_TEST) == 18 and len(cfg.POINT_V7W_TEST) == 6
    for group in groups:
        for name, entry in cfg[group].items():
            entry = entry.to_dict()
            params = inspect.signature(DATASETS.get(entry.pop('type'))).parameters
            assert set(entry) <= set(params), (group, name)
            roots = set(re.findall(r'\{(\w+)\}', entry['filename'] + entry['image_folder']))
            assert roots <= {'annotations', 'vg', 'v7w'}, (group, name)
    assert cfg.POINT_QA_METRIC.type == 'PointQAComputeMetrics'
    assert cfg.POINT_V7W_METRIC.type == 'PointingComputeMetrics'


def test_v7w_shikra_point_field_is_the_answer_point(data, tmp_path):
    record = dict(V7W[1], point=[20, 90])  # inside the answer box, not its centre (25, 80)
    path = write_jsonl(tmp_path / 'v7w_shikra.jsonl', [record])
    ds = V7WPointingDataset(path, data['images'], version='box', answer_format='point')
    item = ds[0]
    assert item['target']['points'][1] == [20.0, 90.0] and item['target']['points'][0] == [25.0, 20.0]
    assert item['conversations'][1]['points_seq'] == [[1]]
    bad = tmp_path / 'bad.jsonl'
    bad.write_text(json.dumps(dict(record, point=[1, 2, 3])) + '\n')
    with pytest.raises(DataFileError, match=f"{bad}:1: 'point' must be 2 numbers"):
        V7WPointingDataset(str(bad), data['images'], answer_format='point')[0]
