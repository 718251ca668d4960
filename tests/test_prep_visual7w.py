"""tools/prepare_data/visual7w.py on an official-format fixture, then a round trip through V7WPointingDataset."""
import json
import subprocess
import sys

import pytest

from mllm.dataset.single_image_dataset.point_qa import V7WPointingDataset
from mllm.dataset.validation import validate_item
from tests.helpers import read_jsonl, write_images
from tools.prepare_data import visual7w

# image_id -> (file, split, (width, height)); non-square images
IMAGES = {2: ('v7w_2.jpg', 'train', (80, 60)), 5: ('v7w_5.jpg', 'val', (40, 70)), 9: ('v7w_9.jpg', 'test', (50, 50))}
BOXES = [
    {'box_id': 101, 'x': -1, 'y': 0, 'width': 31, 'height': 20, 'name': 'cup'},      # starts at -1: clamped to 0
    {'box_id': 102, 'x': 50, 'y': 30, 'width': 40, 'height': 30, 'name': 'bowl'},    # past the right border (80)
    {'box_id': 103, 'x': 10, 'y': 25, 'width': 20, 'height': 35, 'name': 'plate'},   # touches the bottom (60)
    {'box_id': 104, 'x': 0, 'y': 0, 'width': 80, 'height': 60, 'name': 'table'},     # the whole image
    {'box_id': 105, 'x': 5, 'y': 5, 'width': 10, 'height': 10, 'name': 'fork'},
    {'box_id': 201, 'x': 0, 'y': 40, 'width': 40, 'height': 30, 'name': 'sign'},
    {'box_id': 202, 'x': 1, 'y': 1, 'width': 5, 'height': 5, 'name': 'bird'},
    {'box_id': 203, 'x': 10, 'y': 10, 'width': 10, 'height': 10, 'name': 'lamp'},
    {'box_id': 204, 'x': 20, 'y': 0, 'width': 20, 'height': 20, 'name': 'tree'},
    {'box_id': 301, 'x': 0, 'y': 0, 'width': 25, 'height': 25, 'name': 'cat'},
    {'box_id': 302, 'x': 25, 'y': 25, 'width': 25, 'height': 25, 'name': 'dog'},
    {'box_id': 303, 'x': 0, 'y': 25, 'width': 25, 'height': 25, 'name': 'rug'},
    {'box_id': 304, 'x': 25, 'y': 0, 'width': 25, 'height': 25, 'name': 'vase'},
]
POINTING = {
    'images': [
        {'image_id': 2, 'filename': 'v7w_2.jpg', 'split': 'train', 'qa_pairs': [
            {'qa_id': 20, 'image_id': 2, 'question': 'Which cup is empty?', 'type': 'which',
             'answer': 101, 'multiple_choices': [102, 103, 104]},
            {'qa_id': 21, 'image_id': 2, 'question': 'Which object is the “plate” près de la fourchette?',
             'type': 'which', 'answer': 103, 'multiple_choices': [105, 101, 102]},
        ]},
        {'image_id': 5, 'filename': 'v7w_5.jpg', 'split': 'val', 'qa_pairs': [
            {'qa_id': 50, 'image_id': 5, 'question': 'Which sign is red?', 'type': 'which',
             'answer': 201, 'multiple_choices': [202, 203, 204]},
        ]},
        {'image_id': 9, 'filename': 'v7w_9.jpg', 'split': 'test', 'qa_pairs': [
            {'qa_id': 90, 'image_id': 9, 'question': 'Which animal is asleep?', 'type': 'which',
             'answer': 302, 'multiple_choices': [301, 303, 304]},
        ]},
    ],
    'boxes': BOXES,
}

# The exact records (candidate order drawn with --seed 0 per qa_id).
EXPECTED = {
    'train': [
        {'img_path': 'v7w_2.jpg', 'image_id': 2, 'qa_id': 20, 'question': 'Which cup is empty?',
         'candidates': [[50, 30, 80, 60], [0, 0, 80, 60], [0, 0, 30, 20], [10, 25, 30, 60]],
         'candidate_ids': [102, 104, 101, 103], 'candidate_names': ['bowl', 'table', 'cup', 'plate'],
         'answer_index': 2, 'width': 80, 'height': 60},
        {'img_path': 'v7w_2.jpg', 'image_id': 2, 'qa_id': 21,
         'question': 'Which object is the “plate” près de la fourchette?',
         'candidates': [[10, 25, 30, 60], [5, 5, 15, 15], [0, 0, 30, 20], [50, 30, 80, 60]],
         'candidate_ids': [103, 105, 101, 102], 'candidate_names': ['plate', 'fork', 'cup', 'bowl'],
         'answer_index': 0, 'width': 80, 'height': 60},
    ],
    'val': [
        {'img_path': 'v7w_5.jpg', 'image_id': 5, 'qa_id': 50, 'question': 'Which sign is red?',
         'candidates': [[20, 0, 40, 20], [0, 40, 40, 70], [1, 1, 6, 6], [10, 10, 20, 20]],
         'candidate_ids': [204, 201, 202, 203], 'candidate_names': ['tree', 'sign', 'bird', 'lamp'],
         'answer_index': 1, 'width': 40, 'height': 70},
    ],
    'test': [
        {'img_path': 'v7w_9.jpg', 'image_id': 9, 'qa_id': 90, 'question': 'Which animal is asleep?',
         'candidates': [[0, 0, 25, 25], [25, 25, 50, 50], [0, 25, 25, 50], [25, 0, 50, 25]],
         'candidate_ids': [301, 302, 303, 304], 'candidate_names': ['cat', 'dog', 'rug', 'vase'],
         'answer_index': 1, 'width': 50, 'height': 50},
    ],
}


@pytest.fixture
def release(tmp_path):
    images = write_images(tmp_path / 'images', {name: size for name, _, size in IMAGES.values()},
                          color=lambda k: (60 * k, 90, 30))
    pointing = tmp_path / 'dataset_v7w_pointing.json'
    pointing.write_text(json.dumps(POINTING, ensure_ascii=False), encoding='utf-8')
    return {'root': tmp_path, 'images': str(images), 'pointing': str(pointing), 'out': str(tmp_path / 'out')}


def test_converter_writes_the_exact_records(release):
    written = visual7w.main(['--pointing', release['pointing'], '--image-folder', release['images'],
                             '--out-dir', release['out']])
    assert sorted(written) == ['test', 'train', 'val']
    for split, expected in EXPECTED.items():
        assert written[split].endswith(f'v7w_pointing_{split}.jsonl')
        assert read_jsonl(written[split]) == expected
    # unicode is written as is, not escaped
    assert '“plate” près' in open(written['train'], encoding='utf-8').read()
    for records in EXPECTED.values():  # the answer index points at the official answer box
        for r in records:
            qa = next(q for im in POINTING['images'] for q in im['qa_pairs'] if q['qa_id'] == r['qa_id'])
            assert r['candidate_ids'][r['answer_index']] == qa['answer']
            assert sorted(r['candidate_ids']) == sorted([qa['answer'], *qa['multiple_choices']])


def test_round_trip_through_the_dataset(release):
    written = visual7w.main(['--pointing', release['pointing'], '--image-folder', release['images'],
                             '--out-dir', release['out'], '--splits', 'train'])
    ds = V7WPointingDataset(written['train'], release['images'], version='box')
    assert len(ds) == 2
    item = ds[1]
    validate_item(item, 'v7w', 1, image_size=item['image'].size, box_tolerance=0)
    k = item['conversations'][1]['boxes_seq'][0][0]
    assert item['target']['boxes'][k] == [10.0, 25.0, 30.0, 60.0]  # box 103, the official answer
    assert 'près de la fourchette' in item['conversations'][0]['value']
    # 80x60 -> 80x80, shifted down by 10
    assert ds.meta(1)['gt_box'] == pytest.approx([10 / 80, 35 / 80, 30 / 80, 70 / 80])


def test_without_images_only_negative_coordinates_are_clamped(release):
    records = visual7w.convert(POINTING, splits=('train',))['train']
    assert 'width' not in records[0]
    assert records[0]['candidates'][0] == [50, 30, 90, 60]  # no size: the right edge stays
    assert records[0]['candidates'][2] == [0, 0, 30, 20]    # x=-1 -> 0


def test_separate_boxes_file_and_seed(release):
    pointing = dict(POINTING, boxes=[])
    (release['root'] / 'p.json').write_text(json.dumps(pointing))
    (release['root'] / 'boxes.json').write_text(json.dumps({'boxes': BOXES}))
    written = visual7w.main(['--pointing', str(release['root'] / 'p.json'), '--boxes',
                             str(release['root'] / 'boxes.json'), '--image-folder', release['images'],
                             '--out-dir', release['out'], '--splits', 'val'])
    assert read_jsonl(written['val']) == EXPECTED['val']
    other = visual7w.convert(POINTING, splits=('train',), seed=1)['train']
    assert [r['candidate_ids'] for r in other] != [r['candidate_ids'] for r in EXPECTED['train']]


def test_bad_release_errors_name_the_entry(release):
    bad = json.loads(json.dumps(POINTING))
    bad['images'][0]['qa_pairs'][1]['multiple_choices'][0] = 999
    with pytest.raises(visual7w.V7WFormatError, match=r"image 2 qa 21: box id\(s\) \[999\] not in the boxes list"):
        visual7w.convert(bad)
    bad = json.loads(json.dumps(POINTING))
    del bad['images'][1]['qa_pairs'][0]['answer']
    with pytest.raises(visual7w.V7WFormatError, match=r"image 5 qa 50: missing field\(s\) \['answer'\]"):
        visual7w.convert(bad)
    bad = dict(POINTING, boxes=[dict(BOXES[0], width=-3)])
    with pytest.raises(visual7w.V7WFormatError, match=r"box 101: negative width/height"):
        visual7w.convert(bad)
    (release['root'] / 'broken.json').write_text('{"images": [\n  {"image_id": 1,,}]}')
    with pytest.raises(visual7w.V7WFormatError, match=r"broken\.json:2: not valid JSON"):
        visual7w.main(['--pointing', str(release['root'] / 'broken.json'), '--out-dir', release['out']])
    with pytest.raises(visual7w.V7WFormatError, match=r"image not found: .*v7w_2\.jpg"):
        visual7w.main(['--pointing', release['pointing'], '--image-folder', str(release['root']),
                       '--out-dir', release['out']])


def test_script_help():
    out = subprocess.run([sys.executable, 'tools/prepare_data/visual7w.py', '--help'], capture_output=True, text=True,
                         check=True).stdout
    assert '--pointing' in out and '--image-folder' in out
