"""Flickr30k datasets read from Shikra-style CWB_flickr30k_*.jsonl: items, templates, bad records, config."""
import json

import pytest
from mmengine.config import Config
from PIL import Image

from mllm.dataset.process_function.box_formatter import PlainBoxFormatter
from mllm.dataset.root import DATASETS
from mllm.dataset.single_image_dataset.base import MissingDataPathError
from mllm.dataset.single_image_dataset.flickr import (
    Flickr30kDataset,
    Flickr30kReverseDataset,
    canonical_boxes,
    split_marked_sentence,
)
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.utils.transform import Expand2square, norm_box_xyxy
from mllm.dataset.validation import validate_item
from tests.helpers import write_jsonl

# Exactly the fields of Shikra's released files (no sentence_id); one record repeats a phrase.
SHIKRA_RECORDS = [
    {'id': 0, 'image_id': '36979', 'boxes': [[0, 10, 40, 90], [50, 0, 100, 30]], 'boxes_seq': [[0], [1]],
     'sentence': '<ph_st>A naïve child<ph_ed> holds <ph_st>a kite<ph_ed> .'},
    {'id': 1, 'image_id': '36979', 'boxes': [[0, 10, 40, 90], [50, 0, 100, 30], [60, 40, 100, 90]],
     'boxes_seq': [[0], [1, 2], [0]],
     'sentence': '<ph_st>A child<ph_ed> and <ph_st>two kites<ph_ed> ; <ph_st>A child<ph_ed> smiles .'},
]


@pytest.fixture
def data(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    Image.new('RGB', (100, 90), (0, 90, 200)).save(images / '36979.jpg')  # wide: dy = 5 after padding
    return {'jsonl': write_jsonl(tmp_path / 'CWB_flickr30k_train.jsonl', SHIKRA_RECORDS), 'images': str(images),
            'root': tmp_path}


def test_shikra_records_load_as_grounded_captions(data):
    ds = Flickr30kDataset(data['jsonl'], data['images'])
    assert len(ds) == 2
    for k in range(2):
        validate_item(ds[k], 'flickr30k', k, image_size=(100, 90))
    item = ds[1]
    assert item['source'] == f"{data['jsonl']}:2"
    assert item['target'] == {'boxes': [[0.0, 10.0, 40.0, 90.0], [50.0, 0.0, 100.0, 30.0], [60.0, 40.0, 100.0, 90.0]],
                              'points': []}
    human, gpt = item['conversations']
    assert human == {'from': 'human', 'value': ds.templates.get(1), 'boxes_seq': None, 'points_seq': None}
    assert gpt['value'] == 'A child <boxes> and two kites <boxes> ; A child <boxes> smiles .'
    assert gpt['boxes_seq'] == [[0], [1, 2], [0]]
    image, target = Expand2square()(item['image'], item['target'])
    normed = [norm_box_xyxy(b, *image.size) for b in target['boxes']]
    assert normed[2] == pytest.approx([0.6, 0.45, 1.0, 0.95])
    assert PlainBoxFormatter()(gpt['value'], boxes_seq=gpt['boxes_seq'], boxes=normed) == (
        'A child [0.000,0.150,0.400,0.950] and two kites [0.500,0.050,1.000,0.350;0.600,0.450,1.000,0.950] ; '
        'A child [0.000,0.150,0.400,0.950] smiles .')
    assert ds.meta(0) == {'image_id': '36979', 'caption': 'A naïve child holds a kite .'}


def test_reverse_lists_each_grounded_phrase_once(data):
    ds = Flickr30kReverseDataset(data['jsonl'], data['images'])
    item = ds[1]
    validate_item(item, 'flickr30k_reverse', 1, image_size=(100, 90))
    human, gpt = item['conversations']
    assert human['value'] == ds.templates.get(1).replace('<phrases>', 'A child <boxes>, two kites <boxes>')
    assert human['boxes_seq'] == [[0], [1, 2]]
    assert gpt['value'] == 'A child and two kites ; A child smiles .' and gpt['boxes_seq'] is None


def test_templates_are_seeded_and_all_used(data):
    a = Flickr30kDataset(data['jsonl'], data['images'], seed=5)
    b = Flickr30kDataset(data['jsonl'], data['images'], seed=5)
    assert [a.templates.get(i) for i in range(40)] == [b.templates.get(i) for i in range(40)]
    assert len({a.templates.get(i) for i in range(300)}) == len(a.templates.templates) >= 5
    r = Flickr30kReverseDataset(data['jsonl'], data['images'])
    assert len(r.templates.templates) >= 5 and all('<phrases>' in t for t in r.templates.templates)


def test_reverse_template_without_phrases_raises(data):
    bad = data['root'] / 'rev.json'
    bad.write_text(json.dumps(['<image> Describe the image.']))
    with pytest.raises(ValueError, match=r"rev\.json: template 0 .*<phrases>"):
        Flickr30kReverseDataset(data['jsonl'], data['images'], template_file=str(bad))


@pytest.mark.parametrize('change, problem', [
    ({'boxes_seq': [[0], [1, 7]]}, 'boxes_seq[1] refers to box 7 but the record has 2 box(es)'),
    ({'boxes_seq': [[0]]}, 'the sentence marks 2 phrase(s) but boxes_seq has 1 group(s)'),
    ({'boxes_seq': [[0], []]}, 'boxes_seq[1] = [] must be a non-empty list'),
    ({'sentence': '<ph_st>A <ph_st>child<ph_ed> holds <ph_st>a kite<ph_ed> .'}, 'nested <ph_st>'),
    ({'sentence': 'A child<ph_ed> holds <ph_st>a kite<ph_ed> .'}, '<ph_ed> without <ph_st>'),
    ({'sentence': '<ph_st>A child<ph_ed> holds <ph_st>a kite .'}, '<ph_st> is never closed'),
    ({'boxes': [[0, 10, 40], [50, 0, 100, 30]]}, 'boxes[0] = [0, 10, 40] is not [x0, y0, x1, y1]'),
    ({'boxes': [[40, 10, 0, 90], [50, 0, 100, 30]]}, 'boxes[0] = [40, 10, 0, 90] has x1<x0'),
])
def test_bad_record_names_file_and_line(data, change, problem):
    records = [SHIKRA_RECORDS[1], {**SHIKRA_RECORDS[0], **change}]
    path = write_jsonl(data['root'] / 'bad.jsonl', records)
    for cls in (Flickr30kDataset, Flickr30kReverseDataset):
        with pytest.raises(DataFileError) as info:
            cls(path, data['images'])
        assert f'{path}:2: ' in str(info.value) and problem in str(info.value)


def test_missing_field_and_paths(data):
    record = dict(SHIKRA_RECORDS[0])
    del record['boxes_seq']
    path = write_jsonl(data['root'] / 'nofield.jsonl', [record])
    with pytest.raises(DataFileError, match=r"nofield\.jsonl:1: missing field\(s\) \['boxes_seq'\]"):
        Flickr30kDataset(path, data['images'])
    with pytest.raises(MissingDataPathError) as info:
        Flickr30kDataset(data['jsonl'], str(data['root'] / 'no_images'))
    assert info.value.key == 'image_folder'
    (data['root'] / 'images' / '36979.jpg').unlink()
    ds = Flickr30kDataset(data['jsonl'], data['images'])
    with pytest.raises(DataFileError, match=r'CWB_flickr30k_train\.jsonl:1: image not found: .*36979\.jpg'):
        ds[0]


def test_canonical_boxes_by_hand():
    a, b, c = [1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 1, 1]
    # unused box c dropped, b (mentioned first) becomes 0, the copy of a merged, a repeat in a group dropped
    assert canonical_boxes([a, b, c, a], [[1], [0, 3], [3, 1, 1]]) == (
        [[5.0, 6.0, 7.0, 8.0], [1.0, 2.0, 3.0, 4.0]], [[0], [1], [1, 0]])
    assert canonical_boxes([], []) == ([], [])


def test_box_order_and_repeats_do_not_change_the_item(data):
    # SHIKRA_RECORDS[1] as Shikra's converter may list it: boxes in another (set) order, child's box twice
    child, kite, kite2 = SHIKRA_RECORDS[1]['boxes']
    shuffled = {**SHIKRA_RECORDS[1], 'boxes': [kite2, child, kite, child], 'boxes_seq': [[1], [2, 0], [3]]}
    other = write_jsonl(data['root'] / 'shuffled.jsonl', [SHIKRA_RECORDS[0], shuffled])
    for cls in (Flickr30kDataset, Flickr30kReverseDataset):
        x, y = cls(data['jsonl'], data['images'])[1], cls(other, data['images'])[1]
        assert x['target'] == y['target'] == {'boxes': [[0.0, 10.0, 40.0, 90.0], [50.0, 0.0, 100.0, 30.0],
                                                        [60.0, 40.0, 100.0, 90.0]], 'points': []}
        assert x['conversations'] == y['conversations']


def test_boxes_past_the_image_are_clamped(data):
    # on the 100x90 image: x0 = -1 (the official loader's value for an XML xmin of 0) and x1/y1 past the edges
    record = {**SHIKRA_RECORDS[0], 'boxes': [[-1, 10, 40, 95], [50, -3, 104, 30]]}
    path = write_jsonl(data['root'] / 'past.jsonl', [record])
    for cls in (Flickr30kDataset, Flickr30kReverseDataset):
        item = cls(path, data['images'])[0]
        assert item['target']['boxes'] == [[0.0, 10.0, 40.0, 90.0], [50.0, 0.0, 100.0, 30.0]]
        validate_item(item, 'flickr30k', 0, image_size=(100, 90), box_tolerance=0)


def test_split_marked_sentence_spans():
    text, spans = split_marked_sentence('<ph_st>Zwei Männer<ph_ed> vor <ph_st>einem Café<ph_ed> .', 'x:1')
    assert text == 'Zwei Männer vor einem Café .'
    assert [text[a:b] for a, b in spans] == ['Zwei Männer', 'einem Café']


def test_config_entries():
    cfg = Config.fromfile('config/_base_/dataset/flickr30k.py')
    for name, cls, split in (('FLICKR30K_TRAIN', 'Flickr30kDataset', 'train'),
                             ('FLICKR30K_TEST', 'Flickr30kDataset', 'test'),
                             ('FLICKR30K_VAL', 'Flickr30kDataset', 'eval'),
                             ('FLICKR30K_REVERSE_TRAIN', 'Flickr30kReverseDataset', 'train'),
                             ('FLICKR30K_REVERSE_TEST', 'Flickr30kReverseDataset', 'test'),
                             ('FLICKR30K_REVERSE_VAL', 'Flickr30kReverseDataset', 'eval')):
        entry = cfg[name]
        assert entry['type'] == cls and DATASETS.get(cls) is not None
        assert entry['filename'] == f'{{annotations}}/CWB_flickr30k_{split}.jsonl'
        assert entry['image_folder'] == '{flickr30k}'
