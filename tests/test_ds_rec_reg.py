"""REC / REG / GC datasets on Shikra-style one-box JSONL: items, numbers after padding, bad inputs, config."""
import json
import os

import pytest
from mmengine.config import Config
from PIL import Image

from mllm.dataset.builder import build_raw_dataset
from mllm.dataset.process_function.box_formatter import PlainBoxFormatter
from mllm.dataset.single_image_dataset.base import MissingDataPathError
from mllm.dataset.single_image_dataset.rec import RECComputeMetrics, RECDataset
from mllm.dataset.single_image_dataset.reg import GCDataset, REGDataset
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.utils.question_templates import QuestionTemplates
from mllm.dataset.utils.transform import Expand2square, norm_box_xyxy
from mllm.dataset.validation import validate_item
from tests.helpers import write_jsonl

# (img_path, size, record extras, expected normalised box after Expand2square)
RECORDS = [
    # 100x60: pad 20 px above -> [0, 30, 50, 80] / 100; touches the left and bottom border
    ({'img_path': 'COCO_train2014_000000000009.png', 'expression': 'left dog', 'bbox': [0, 10, 50, 60]},
     (100, 60), [0.0, 0.3, 0.5, 0.8]),
    # 40x80: pad 20 px left -> [30, 0, 60, 20] / 80; touches the top and right border
    ({'img_path': 'VG_100K/2.png', 'expression': 'the top right lamp', 'bbox': [10, 0, 40, 20]},
     (40, 80), [0.375, 0.0, 0.75, 0.25]),
    # Shikra's extra fields, unicode; 64x48: pad 8 px above -> [8.5, 12.25, 64, 56] / 64; whole right/bottom
    ({'img_path': 'VG_100K_2/7.png', 'expression': 'the café sign “ouvert”', 'bbox': [8.5, 4.25, 64, 48],
      'dataset_name': 'refcocog', 'height': 48, 'width': 64, 'image_id': 7, 'ann_id': 70, 'ref_id': 3,
      'sent_id': 11}, (64, 48), [8.5 / 64, 12.25 / 64, 1.0, 0.875]),
]


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / 'images'
    for k, (record, size, _) in enumerate(RECORDS):
        path = folder / record['img_path']
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new('RGB', size, (40 * k, 100, 200))
        image.putpixel((size[0] - 1, size[1] - 1), (255, 0, 0))
        image.save(path)
    return {'jsonl': write_jsonl(tmp_path / 'rec.jsonl', [r for r, _, _ in RECORDS]),
            'folder': str(folder), 'root': tmp_path}


def padded_norm_box(item):
    image, target = Expand2square()(item['image'], item['target'])
    side = image.size[0]
    assert image.size == (side, side)
    return norm_box_xyxy(target['boxes'][0], side, side), image


def test_rec_items_after_expand2square(data):
    ds = RECDataset(data['jsonl'], data['folder'], seed=5)
    templates = QuestionTemplates('REC.json', required=('<image>', '<expr>'), seed=5)
    assert len(ds) == 3
    for k, (record, size, expected) in enumerate(RECORDS):
        item = ds[k]
        validate_item(item, 'REC', k, image_size=item['image'].size)
        assert item['image'].size == size and item['source'] == f"{data['jsonl']}:{k + 1}"
        assert item['target'] == {'boxes': [[float(v) for v in record['bbox']]]}
        box, padded = padded_norm_box(item)
        assert box == pytest.approx(expected, abs=1e-9)
        # the marked corner pixel moved with the box's frame
        side = padded.size[0]
        dx, dy = (side - size[0]) // 2, (side - size[1]) // 2
        assert padded.getpixel((dx + size[0] - 1, dy + size[1] - 1)) == (255, 0, 0)
        human, gpt = item['conversations']
        assert human['value'] == templates.get(k).replace('<expr>', record['expression'])
        assert gpt == {'from': 'gpt', 'value': 'Answer: <boxes> .', 'boxes_seq': [[0]]}
    filled = PlainBoxFormatter()('Answer: <boxes> .', [[0]], boxes=[padded_norm_box(ds[0])[0]])
    assert filled == 'Answer: [0.000,0.300,0.500,0.800] .'


@pytest.mark.parametrize('cls, template_file', [(REGDataset, 'REG.json'), (GCDataset, 'GC.json')])
def test_reg_and_gc_put_the_box_in_the_question(data, cls, template_file):
    ds = cls(data['jsonl'], data['folder'], seed=2)
    templates = QuestionTemplates(template_file, required=('<image>', '<objs>'), seed=2)
    formatter = PlainBoxFormatter()
    for k, (record, size, expected) in enumerate(RECORDS):
        item = ds[k]
        validate_item(item, cls.__name__, k, image_size=size)
        human, gpt = item['conversations']
        assert human['value'] == templates.get(k).replace('<objs>', '<boxes>')
        assert human['value'].startswith('<image>') and human['value'].count('<boxes>') == 1
        assert human['boxes_seq'] == [[0]] and human['points_seq'] is None
        assert gpt == {'from': 'gpt', 'value': record['expression'], 'boxes_seq': None, 'points_seq': None}
        assert item['target'] == {'boxes': [[float(v) for v in record['bbox']]], 'points': []}
        box, _ = padded_norm_box(item)
        assert box == pytest.approx(expected, abs=1e-9)
    text = formatter(ds[2]['conversations'][0]['value'], [[0]], boxes=[padded_norm_box(ds[2])[0]])
    assert '[0.133,0.191,1.000,0.875]' in text and '<' not in text.replace('<image>', '')
    assert ds[2]['conversations'][1]['value'] == 'the café sign “ouvert”'


def test_template_files_hold_enough_distinct_phrasings():
    for name, placeholder in (('REC.json', '<expr>'), ('REG.json', '<objs>'), ('GC.json', '<objs>')):
        templates = QuestionTemplates(name, required=('<image>', placeholder)).templates
        assert len(set(templates)) >= 5
        assert all(t.count(placeholder) == 1 and t.count('<image>') == 1 for t in templates)
    assert not set(QuestionTemplates('REG.json').templates) & set(QuestionTemplates('GC.json').templates)


def test_question_choice_is_seeded_per_index(data):
    a, b = REGDataset(data['jsonl'], data['folder'], seed=1), REGDataset(data['jsonl'], data['folder'], seed=1)
    first = [a[k]['conversations'][0]['value'] for k in (2, 0, 1)]
    assert [b[k]['conversations'][0]['value'] for k in (2, 0, 1)] == first


def test_meta_holds_ids_and_box(data):
    ds = RECDataset(data['jsonl'], data['folder'])
    assert ds.meta(0) == {'expression': 'left dog', 'bbox': [0.0, 10.0, 50.0, 60.0]}
    assert ds.meta(2) == {'dataset_name': 'refcocog', 'image_id': 7, 'ann_id': 70, 'ref_id': 3, 'sent_id': 11,
                          'expression': 'the café sign “ouvert”', 'bbox': [8.5, 4.25, 64.0, 48.0]}
    reg = REGDataset(data['jsonl'], data['folder'])
    assert reg.meta(2) == dict(ds.meta(2), captions=['the café sign “ouvert”'])
    assert reg.meta(0)['captions'] == ['left dog']  # no ref_id: the expression alone
    metas = [ds.meta(k) for k in range(2)]
    scores, verdicts = RECComputeMetrics()(['[0.0,0.3,0.5,0.8]', 'nowhere'],
                                           ['[0.000,0.300,0.500,0.800]', '[0.375,0.000,0.750,0.250]'], metas=metas)
    assert scores == {'accuracy': 0.5, 'miou': 0.5, 'parse_failures': 1, 'total': 2}
    assert [v['correct'] for v in verdicts] == [True, False]


@pytest.mark.parametrize('cls', [RECDataset, REGDataset, GCDataset])
@pytest.mark.parametrize('bad, message', [
    ({'img_path': 'a.png', 'bbox': [0, 0, 1, 1]}, "missing field(s) ['expression']"),
    ({'img_path': 'a.png', 'expression': 'x'}, "missing field(s) ['bbox']"),
    ({'img_path': 'a.png', 'expression': 'x', 'bbox': [0, 0, 1]}, 'bbox must be 4 numbers'),
    ({'img_path': 'a.png', 'expression': 'x', 'bbox': [0, 0, '1', 1]}, 'bbox must be 4 numbers'),
    ({'img_path': 'a.png', 'expression': 'x', 'bbox': [30, 20, 10, 5]}, 'x1<x0 or y1<y0'),
    ({'img_path': 'a.png', 'expression': 'x', 'bbox': [0, 0, 70, 40], 'width': 64, 'height': 48},
     'outside the 64x48 image'),
    ({'img_path': 'a.png', 'expression': None, 'bbox': [0, 0, 1, 1]}, 'expression must be a string'),
])
def test_bad_record_names_file_and_line(data, cls, bad, message):
    good = RECORDS[0][0]
    jsonl = write_jsonl(data['root'] / 'bad.jsonl', [good, good, bad])
    with pytest.raises(DataFileError) as info:
        cls(jsonl, data['folder'])
    assert f'{jsonl}:3' in str(info.value) and message in str(info.value)


def test_unsized_record_may_reach_the_border_tolerance(data):
    # Public boxes overshoot by sub-pixel rounding: 1 px is accepted at load (and by validate_item).
    record = dict(RECORDS[2][0], bbox=[8.5, 4.25, 64.8, 48.6])
    ds = RECDataset(write_jsonl(data['root'] / 'round.jsonl', [record]), data['folder'])
    validate_item(ds[0], 'REC', 0, image_size=ds[0]['image'].size)


def test_missing_image_names_file_line_and_path(data):
    jsonl = write_jsonl(data['root'] / 'ghost.jsonl', [RECORDS[0][0], dict(RECORDS[0][0], img_path='VG_100K/9.png')])
    ds = GCDataset(jsonl, data['folder'])
    assert ds[0]['image'].size == (100, 60)
    with pytest.raises(DataFileError) as info:
        ds[1]
    assert f'{jsonl}:2' in str(info.value) and os.path.join(data['folder'], 'VG_100K/9.png') in str(info.value)


def test_missing_paths_name_the_argument(data):
    with pytest.raises(MissingDataPathError) as info:
        REGDataset(data['jsonl'], str(data['root'] / 'no_images'))
    assert info.value.key == 'image_folder'
    with pytest.raises(MissingDataPathError) as info:
        GCDataset(str(data['root'] / 'none.jsonl'), data['folder'])
    assert info.value.key == 'filename'


@pytest.mark.parametrize('templates, message', [
    (['<image> What is in <objs>?', '<image> Describe the region.'], "lacks placeholder(s) ['<objs>']"),
    (['<image> Compare <objs> with <objs>.'], 'exactly once'),
    (['<image> Describe <objs> next to <boxes>.'], 'exactly once and no <boxes>'),
])
def test_bad_reg_template_raises_at_load(data, templates, message):
    path = data['root'] / 'tpl.json'
    path.write_text(json.dumps(templates))
    with pytest.raises(ValueError) as info:
        REGDataset(data['jsonl'], data['folder'], template_file=str(path))
    assert str(path) in str(info.value) and message in str(info.value)


def test_rec_answer_needs_one_box_placeholder(data):
    with pytest.raises(ValueError, match='exactly once'):
        RECDataset(data['jsonl'], data['folder'], answer='Answer: somewhere.')


def test_config_entries_build_from_roots(data, tmp_path):
    cfg = Config.fromfile('config/_base_/dataset/rec_reg.py')
    assert set(cfg.REC_REG_TRAIN) == {'rec_ref3_coco', 'rec_ref4_gnome', 'reg_ref3_coco', 'gc_genome'}
    assert cfg.REC_METRIC == {'type': 'RECComputeMetrics'}
    splits = ['refcoco_unc_val', 'refcoco_unc_testA', 'refcoco_unc_testB', 'refcocoplus_unc_val',
              'refcocoplus_unc_testA', 'refcocoplus_unc_testB', 'refcocog_umd_val', 'refcocog_umd_test']
    assert set(cfg.REC_REG_TEST) == {f'{task}_{s}' for task in ('rec', 'reg') for s in splits}
    assert cfg.REC_REG_TEST['rec_refcocoplus_unc_testA'].filename == '{annotations}/REC_refcoco+_unc_testA.jsonl'

    # Lay out every file the entries name under fake roots; each entry then builds and yields an item.
    roots = {'annotations': tmp_path / 'ann', 'coco': tmp_path / 'coco', 'vg': tmp_path / 'vg'}
    for folder in (roots['annotations'], roots['coco'] / 'train2014', roots['vg']):
        folder.mkdir(parents=True)
        Image.new('RGB', (30, 20)).save(folder / 'x.png')
    record = {'img_path': 'x.png', 'expression': 'thing', 'bbox': [0, 0, 30, 20]}
    # GC on VG has no official split: train and test are the two parts of one HoldoutSplit of the same file
    gc_train, gc_test = cfg.REC_REG_TRAIN['gc_genome'], cfg.GC_TEST
    assert gc_train.type == gc_test.type == 'HoldoutSplit' and gc_train.cfg == gc_test.cfg
    assert (gc_train.part, gc_test.part, gc_train.key) == ('train', 'test', 'image_id')
    assert cfg.REG_METRIC == {'type': 'CaptionComputeMetrics'}
    entries = {**cfg.REC_REG_TRAIN, **cfg.REC_REG_TEST, 'gc_genome': gc_train.cfg}
    for entry in entries.values():
        name = entry['filename'].replace('{annotations}/', '')
        write_jsonl(roots['annotations'] / name, [record])
    for key, entry in entries.items():
        ds = build_raw_dataset(entry.to_dict(), {k: str(v) for k, v in roots.items()}, f'data_args.{key}')
        item = ds[0]
        assert type(ds).__name__ == entry['type'] and item['image'].size == (30, 20)
        validate_item(item, key, 0, image_size=(30, 20))


def test_reg_meta_gathers_every_expression_of_a_referent(tmp_path):
    Image.new('RGB', (40, 30)).save(tmp_path / 'a.png')
    records = [{'img_path': 'a.png', 'expression': e, 'bbox': [0, 0, 10, 10], 'ref_id': r, 'sent_id': k}
               for k, (e, r) in enumerate([('man left', 5), ('the left man', 5), ('dog', 6)])]
    write_jsonl(tmp_path / 'reg.jsonl', records)
    ds = REGDataset(str(tmp_path / 'reg.jsonl'), str(tmp_path))
    assert [ds.meta(k)['captions'] for k in range(3)] == [['man left', 'the left man']] * 2 + [['dog']]
