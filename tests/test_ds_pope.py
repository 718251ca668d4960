"""POPEDataset on a fixture in the official coco_pope_*.json layout (JSON lines)."""
import json

import pytest

from mllm.dataset.root import DATASETS
from mllm.dataset.single_image_dataset.base import MissingDataPathError
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.validation import validate_item
from mllm.metrics.pope import POPEComputeMetrics
from tests.helpers import write_images, write_jsonl

IMAGES = {'COCO_val2014_000000310196.jpg': (64, 48), 'COCO_val2014_000000000042.jpg': (30, 70)}
LINES = [
    {'question_id': 1, 'image': 'COCO_val2014_000000310196.jpg', 'image_id': 310196,
     'text': 'Is there a snowboard in the image?', 'label': 'yes'},
    {'question_id': 2, 'image': 'COCO_val2014_000000310196.jpg', 'image_id': 310196,
     'text': 'Is there a crème brûlée in the image?', 'label': 'no'},
    # the first release had no image_id
    {'question_id': 3, 'image': 'COCO_val2014_000000000042.jpg', 'text': 'Is there a dog in the image?',
     'label': 'yes'},
]


@pytest.fixture
def pope(tmp_path):
    folder = write_images(tmp_path / 'val2014', IMAGES, color=lambda k: (200, 40 * k, 0), quality=95)
    return {'file': write_jsonl(tmp_path / 'coco_pope_random.json', LINES), 'images': str(folder), 'root': tmp_path}


def test_items_follow_canonical_format(pope):
    ds = DATASETS.build(dict(type='POPEDataset', filename=pope['file'], image_folder=pope['images']))
    assert len(ds) == 3
    for k, line in enumerate(LINES):
        item = ds[k]
        validate_item(item, 'pope', k, image_size=item['image'].size)
        assert item['image'].size == IMAGES[line['image']]
        assert item['source'] == f"{pope['file']}:{k + 1}"
        human, gpt = item['conversations']
        assert human['value'] == ds.question(k).replace('<question>', line['text'])
        assert human['value'].startswith('<image>') and line['text'] in human['value']
        assert gpt['value'] == f"The answer is {line['label']}."
        assert ds.meta(k) == {'question_id': line['question_id'], 'label': line['label']}
    assert 'crème brûlée' in ds[1]['conversations'][0]['value']


def test_custom_answer_and_round_trip_with_metric(pope):
    ds = DATASETS.build(dict(type='POPEDataset', filename=pope['file'], image_folder=pope['images'],
                             answer='{label}'))
    refs = [ds[k]['conversations'][1]['value'] for k in range(len(ds))]
    assert refs == ['yes', 'no', 'yes']
    scores, _ = POPEComputeMetrics()(refs, refs, [ds.meta(k) for k in range(len(ds))])
    assert scores['accuracy'] == 1.0 and scores['f1'] == 1.0 and scores['yes_ratio'] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match='must contain'):
        DATASETS.build(dict(type='POPEDataset', filename=pope['file'], image_folder=pope['images'], answer='Yes'))


def test_bad_records_name_file_and_line(pope):
    root = pope['root']
    bad_label = write_jsonl(root / 'bad_label.json', [LINES[0], LINES[1], dict(LINES[2], label='maybe')])
    with pytest.raises(DataFileError, match=r"bad_label\.json:3: label 'maybe' is not 'yes' or 'no'"):
        DATASETS.build(dict(type='POPEDataset', filename=bad_label, image_folder=pope['images']))
    no_text = write_jsonl(root / 'no_text.json', [LINES[0], {k: v for k, v in LINES[1].items() if k != 'text'}])
    with pytest.raises(DataFileError, match=r"no_text\.json:2: missing field\(s\) \['text'\]"):
        DATASETS.build(dict(type='POPEDataset', filename=no_text, image_folder=pope['images']))
    broken = root / 'broken.json'
    broken.write_text(json.dumps(LINES[0]) + '\n{"question_id": 2,\n')
    with pytest.raises(DataFileError, match=r'broken\.json:2: not valid JSON'):
        DATASETS.build(dict(type='POPEDataset', filename=str(broken), image_folder=pope['images']))
    with pytest.raises(MissingDataPathError) as info:
        DATASETS.build(dict(type='POPEDataset', filename=pope['file'], image_folder=str(root / 'nope')))
    assert info.value.key == 'image_folder'


def test_capitalised_label_is_normalised(pope):
    path = write_jsonl(pope['root'] / 'caps.json', [dict(LINES[0], label='Yes')])
    ds = DATASETS.build(dict(type='POPEDataset', filename=path, image_folder=pope['images']))
    assert ds.meta(0)['label'] == 'yes' and ds[0]['conversations'][1]['value'] == 'The answer is yes.'
