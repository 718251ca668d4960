"""tools/prepare_data/visual_genome.py on tiny region_descriptions.json + image_data.json (VG v1.2 layout)."""
import json
import subprocess
import sys

import pytest
from PIL import Image

from mllm.dataset.single_image_dataset.rec import RECDataset
from mllm.dataset.single_image_dataset.reg import GCDataset
from mllm.dataset.utils.transform import Expand2square, norm_box_xyxy
from mllm.dataset.validation import validate_item
from tools.prepare_data import visual_genome

IMAGE_DATA = [
    {'width': 64, 'url': 'https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg', 'height': 48, 'image_id': 1,
     'coco_id': None, 'flickr_id': None},
    {'width': 30, 'url': 'https://cs.stanford.edu/people/rak248/VG_100K/10.jpg', 'height': 50, 'image_id': 10,
     'coco_id': 391, 'flickr_id': None},
]


def region(region_id, image_id, phrase, x, y, w, h):
    return {'region_id': region_id, 'width': w, 'height': h, 'image_id': image_id, 'phrase': phrase, 'y': y, 'x': x}


REGIONS = [
    {'regions': [
        region(1382, 1, 'the clock is green in colour', 10, 5, 20, 30),
        region(1383, 1, 'shade is along the street ', 50, 30, 30, 40),   # past right and bottom: clipped
        region(1384, 1, 'a thin line', 12, 7, 0, 9),                      # zero width: degenerate
        region(1385, 1, 'off the picture', 70, 5, 10, 10),                # outside: clipped to nothing
        region(1386, 1, '  ', 1, 1, 5, 5),                                # empty phrase
    ], 'id': 1},
    {'regions': [region(5001, 10, 'un café “noir” à côté', -3, 0, 20, 50)], 'id': 10},  # left and top/bottom
]


@pytest.fixture
def vg(tmp_path):
    (tmp_path / 'region_descriptions.json').write_text(json.dumps(REGIONS))
    (tmp_path / 'image_data.json').write_text(json.dumps(IMAGE_DATA))
    for entry in IMAGE_DATA:
        path = tmp_path / 'vg' / visual_genome.image_path_from_url(entry['url'])
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new('RGB', (entry['width'], entry['height']), (20, 120, 220)).save(path)
    return tmp_path


EXPECTED = [
    {'img_path': 'VG_100K_2/1.jpg', 'expression': 'the clock is green in colour', 'bbox': [10.0, 5.0, 30.0, 35.0],
     'dataset_name': 'genome', 'height': 48, 'width': 64, 'image_id': 1, 'region_id': 1382},
    {'img_path': 'VG_100K_2/1.jpg', 'expression': 'shade is along the street', 'bbox': [50.0, 30.0, 64.0, 48.0],
     'dataset_name': 'genome', 'height': 48, 'width': 64, 'image_id': 1, 'region_id': 1383},
    {'img_path': 'VG_100K/10.jpg', 'expression': 'un café “noir” à côté', 'bbox': [0.0, 0.0, 17.0, 50.0],
     'dataset_name': 'genome', 'height': 50, 'width': 30, 'image_id': 10, 'region_id': 5001},
]


def test_convert_exact_records_and_counts():
    records, counts = visual_genome.convert(REGIONS, IMAGE_DATA)
    assert records == EXPECTED
    assert counts == {'regions': 6, 'written': 3, 'degenerate': 2, 'empty_phrase': 1, 'clipped': 2}
    _, counts = visual_genome.convert(REGIONS, IMAGE_DATA, min_size=15)  # 14-px-wide clipped region too small
    assert counts['degenerate'] == 3 and counts['written'] == 2


def test_image_path_from_url():
    assert visual_genome.image_path_from_url('https://cs.stanford.edu/people/rak248/VG_100K/2.jpg') == 'VG_100K/2.jpg'
    with pytest.raises(ValueError, match='cannot derive'):
        visual_genome.image_path_from_url('1.jpg')


def test_main_round_trip_through_rec_and_gc(vg):
    out = vg / 'ann' / visual_genome.OUTPUT_FILE
    counts = visual_genome.main(['--region-descriptions', str(vg / 'region_descriptions.json'),
                                 '--image-data', str(vg / 'image_data.json'), '--output', str(out)])
    assert counts['written'] == 3
    lines = out.read_text(encoding='utf-8').splitlines()
    assert [json.loads(line) for line in lines] == EXPECTED and 'café' in lines[2]
    # 30x50 padded to 50: dx = 10 -> [10, 0, 27, 50] / 50;  64x48 padded to 64: dy = 8 -> [50, 38, 64, 56] / 64
    expected = {1: [50 / 64, 38 / 64, 1.0, 56 / 64], 2: [0.2, 0.0, 0.54, 1.0]}
    for ds in (RECDataset(str(out), str(vg / 'vg')), GCDataset(str(out), str(vg / 'vg'))):
        for k, box in expected.items():
            item = ds[k]
            validate_item(item, 'genome', k, image_size=item['image'].size)
            image, target = Expand2square()(item['image'], item['target'])
            assert norm_box_xyxy(target['boxes'][0], *image.size) == pytest.approx(box)
    assert GCDataset(str(out), str(vg / 'vg'))[2]['conversations'][1]['value'] == 'un café “noir” à côté'


@pytest.mark.parametrize('change, message', [
    (lambda regions, images: regions[0]['regions'][1].pop('phrase'),
     "entry #0 region #1 (region_id=1383): missing field(s) ['phrase']"),
    (lambda regions, images: regions[1].pop('regions'), "entry #1 (id=10): missing field 'regions'"),
    (lambda regions, images: regions[1]['regions'][0].update(image_id=99), 'image_id 99 is not in'),
    (lambda regions, images: images[1].pop('url'), "image_data.json: entry #1: missing field(s) ['url']"),
])
def test_bad_inputs_name_file_and_entry(vg, change, message):
    regions, images = json.loads(json.dumps(REGIONS)), json.loads(json.dumps(IMAGE_DATA))
    change(regions, images)
    (vg / 'region_descriptions.json').write_text(json.dumps(regions))
    (vg / 'image_data.json').write_text(json.dumps(images))
    with pytest.raises(visual_genome.VGFormatError) as info:
        visual_genome.main(['--region-descriptions', str(vg / 'region_descriptions.json'),
                            '--image-data', str(vg / 'image_data.json'), '--output', str(vg / 'out.jsonl')])
    assert message in str(info.value)
    assert 'region_descriptions.json' in str(info.value) or 'image_data.json' in str(info.value)


def test_v10_image_ids_and_broken_json(vg):
    legacy = [dict({k: v for k, v in e.items() if k != 'image_id'}, id=e['image_id']) for e in IMAGE_DATA]
    assert visual_genome.convert(REGIONS, legacy)[0] == EXPECTED
    path = vg / 'image_data.json'
    path.write_text('[{"image_id": 1,\n "url": }]')
    with pytest.raises(visual_genome.VGFormatError, match=f'{path}:2'):
        visual_genome.main(['--region-descriptions', str(vg / 'region_descriptions.json'), '--image-data', str(path),
                            '--output', str(vg / 'out.jsonl')])
    with pytest.raises(FileNotFoundError, match='nothing.json'):
        visual_genome.main(['--region-descriptions', str(vg / 'nothing.json'), '--image-data', str(path),
                            '--output', str(vg / 'out.jsonl')])


def test_script_help():
    result = subprocess.run([sys.executable, 'tools/prepare_data/visual_genome.py', '--help'], capture_output=True,
                            text=True, check=True)
    assert '--region-descriptions' in result.stdout and 'image_data.json' in result.stdout
