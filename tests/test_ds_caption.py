"""COCOCaptionDataset on fixtures in the official captions_*2014.json layout, Karpathy's dataset_coco.json and
Shikra's CAP_coco2014_train.jsonl (one caption a line)."""
import json
import logging

import pytest
from PIL import Image

from mllm.dataset.root import DATASETS
from mllm.dataset.single_image_dataset.caption import COCOCaptionDataset
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.validation import validate_item
from tests.helpers import write_images, write_json, write_jsonl

# (id, file name, (width, height)); image 99 has no caption.
IMAGES = [(42, 'COCO_val2014_000000000042.jpg', (64, 48)), (73, 'COCO_val2014_000000000073.jpg', (40, 60)),
          (99, 'COCO_val2014_000000000099.jpg', (32, 32))]
ANNOTATIONS = [
    {'image_id': 42, 'id': 101, 'caption': 'A dog sitting next to a  bicycle.\n'},
    {'image_id': 73, 'id': 205, 'caption': 'Un café sur une table en bois. '},
    {'image_id': 42, 'id': 330, 'caption': 'A brown dog near a bike'},
]


def captions_json(images=IMAGES, annotations=ANNOTATIONS):
    return {
        'info': {'description': 'This is stable 1.0 version of the 2014 MS COCO dataset.', 'version': '1.0',
                 'year': 2014},
        'images': [{'license': 3, 'file_name': name, 'coco_url': f'http://images.cocodataset.org/val2014/{name}',
                    'height': size[1], 'width': size[0], 'date_captured': '2013-11-14 11:18:45',
                    'flickr_url': 'http://farm.staticflickr.com/x.jpg', 'id': image_id}
                   for image_id, name, size in images],
        'licenses': [{'url': 'http://creativecommons.org/licenses/by-nc-sa/2.0/', 'id': 3, 'name': 'BY-NC-SA'}],
        'type': 'captions',
        'annotations': annotations,
    }


@pytest.fixture
def coco(tmp_path):
    folder = write_images(tmp_path / 'val2014', {name: size for _, name, size in IMAGES},
                          color=lambda k: (10, 60 * k, 200), quality=95)
    return {'file': write_json(tmp_path / 'captions_val2014.json', captions_json()), 'images': str(folder),
            'root': tmp_path}


def test_train_mode_one_item_per_caption(coco):
    ds = DATASETS.build(dict(type='COCOCaptionDataset', filename=coco['file'], image_folder=coco['images']))
    assert len(ds) == 3
    expected = [(42, 'A dog sitting next to a bicycle.', 101), (73, 'Un café sur une table en bois.', 205),
                (42, 'A brown dog near a bike', 330)]
    sizes = {image_id: size for image_id, _, size in IMAGES}
    for k, (image_id, caption, ann_id) in enumerate(expected):
        item = ds[k]
        validate_item(item, 'caption', k, image_size=item['image'].size)
        assert item['image'].size == sizes[image_id]
        assert item['source'] == f"{coco['file']}:annotation_id={ann_id}"
        human, gpt = item['conversations']
        assert human['value'] == ds.question(k) and human['value'].startswith('<image>')
        assert gpt == {'from': 'gpt', 'value': caption, 'boxes_seq': None, 'points_seq': None}
        assert ds.meta(k) == {'image_id': image_id, 'captions': [caption]}


def test_eval_mode_one_item_per_image_with_all_captions(coco, caplog):
    with caplog.at_level(logging.INFO):
        ds = COCOCaptionDataset(coco['file'], coco['images'], mode='eval')
    assert len(ds) == 2 and ds.images_without_captions == 1
    assert '1 image(s) without captions' in caplog.text
    assert ds.meta(0) == {'image_id': 42, 'captions': ['A dog sitting next to a bicycle.', 'A brown dog near a bike']}
    assert ds.meta(1) == {'image_id': 73, 'captions': ['Un café sur une table en bois.']}
    item = ds[0]
    validate_item(item, 'caption', 0, image_size=item['image'].size)
    assert item['source'] == f"{coco['file']}:image_id=42" and item['image'].size == (64, 48)
    assert item['conversations'][1]['value'] == 'A dog sitting next to a bicycle.'


def test_bad_official_files(coco):
    root = coco['root']
    path = root / 'bad.json'
    path.write_text(json.dumps(captions_json(annotations=[*ANNOTATIONS, {'image_id': 5, 'id': 400, 'caption': 'x'}])))
    with pytest.raises(DataFileError, match=r'bad\.json: annotation id=400 refers to unknown image_id 5'):
        COCOCaptionDataset(str(path), coco['images'])
    path.write_text(json.dumps(captions_json(annotations=[{'image_id': 42, 'id': 1}])))
    with pytest.raises(DataFileError, match=r"bad\.json: annotations\[0\] lacks field\(s\) \['caption'\]"):
        COCOCaptionDataset(str(path), coco['images'])
    path.write_text('[1, 2]')
    with pytest.raises(DataFileError, match='expected a COCO captions file'):
        COCOCaptionDataset(str(path), coco['images'])
    with pytest.raises(ValueError, match="split='test' applies to Karpathy"):
        COCOCaptionDataset(coco['file'], coco['images'], split='test')
    with pytest.raises(ValueError, match="mode must be 'train' or 'eval'"):
        COCOCaptionDataset(coco['file'], coco['images'], mode='test')
    (root / 'val2014' / IMAGES[1][1]).unlink()
    ds = COCOCaptionDataset(coco['file'], coco['images'])
    with pytest.raises(DataFileError, match=r'annotation_id=205: image not found'):
        ds[1]


def karpathy_image(k, filepath, name, split, cocoid, raws):
    return {'filepath': filepath, 'sentids': list(range(10 * k, 10 * k + len(raws))), 'filename': name,
            'imgid': k, 'split': split,
            'sentences': [{'tokens': raw.lower().strip('.').split(), 'raw': raw, 'imgid': k, 'sentid': 10 * k + j}
                          for j, raw in enumerate(raws)],
            'cocoid': cocoid}


@pytest.fixture
def karpathy(coco):
    root = coco['root']
    train = root / 'train2014'
    train.mkdir()
    Image.new('RGB', (50, 30), (1, 2, 3)).save(train / 'COCO_train2014_000000000009.jpg')
    data = {'images': [
        karpathy_image(0, 'val2014', IMAGES[0][1], 'test', 42, ['A dog by a bike.', 'A brown dog.']),
        karpathy_image(1, 'train2014', 'COCO_train2014_000000000009.jpg', 'train', 9, ['Bowls of fruit.']),
        karpathy_image(2, 'val2014', IMAGES[1][1], 'restval', 73, ['Un café au lait.', 'A cup on wood.']),
        karpathy_image(3, 'val2014', IMAGES[2][1], 'val', 99, ['A blue square.']),
    ], 'dataset': 'coco'}
    return {'file': write_json(root / 'dataset_coco.json', data), 'root': str(root)}


def test_karpathy_split(karpathy):
    train = COCOCaptionDataset(karpathy['file'], karpathy['root'], split='train+restval')
    assert len(train) == 3
    assert [train.meta(k) for k in range(3)] == [{'image_id': 9, 'captions': ['Bowls of fruit.']},
                                                 {'image_id': 73, 'captions': ['Un café au lait.']},
                                                 {'image_id': 73, 'captions': ['A cup on wood.']}]
    assert [train[k]['source'] for k in range(3)] == [f"{karpathy['file']}:#1.sentences[0]",
                                                     f"{karpathy['file']}:#2.sentences[0]",
                                                     f"{karpathy['file']}:#2.sentences[1]"]
    assert train[0]['image'].size == (50, 30) and train[1]['image'].size == (40, 60)
    test = COCOCaptionDataset(karpathy['file'], karpathy['root'], split='test', mode='eval')
    assert len(test) == 1 and test.meta(0) == {'image_id': 42, 'captions': ['A dog by a bike.', 'A brown dog.']}
    item = test[0]
    validate_item(item, 'karpathy', 0, image_size=item['image'].size)
    assert item['image'].size == (64, 48) and item['source'] == f"{karpathy['file']}:#0"
    for split in (None, 'testing', 'train+dev'):
        with pytest.raises(ValueError, match='Karpathy split file; split must be one of'):
            COCOCaptionDataset(karpathy['file'], karpathy['root'], split=split)


# Shikra's CAP_coco2014_train.jsonl: {img_path, caption}, one caption a line, COCO-2014 file names.
SHIKRA_LINES = [
    {'img_path': 'COCO_train2014_000000000009.jpg',
     'caption': 'Closeup of bins of food that include broccoli and bread.'},
    {'img_path': 'COCO_train2014_000000000025.jpg', 'caption': 'A giraffe eating food from the top of the tree.'},
    {'img_path': 'COCO_train2014_000000000009.jpg',
     'caption': 'A meal is presented in brightly colored  plastic trays.\n'},
]


@pytest.fixture
def shikra(tmp_path):
    folder = write_images(tmp_path / 'train2014', {'COCO_train2014_000000000009.jpg': (64, 48),
                                                   'COCO_train2014_000000000025.jpg': (40, 60)})
    return {'file': write_jsonl(tmp_path / 'CAP_coco2014_train.jsonl', SHIKRA_LINES), 'images': str(folder),
            'root': tmp_path}


def test_shikra_caption_jsonl(shikra):
    ds = DATASETS.build(dict(type='COCOCaptionDataset', filename=shikra['file'], image_folder=shikra['images']))
    assert len(ds) == 3
    assert [ds[k]['source'] for k in range(3)] == [f"{shikra['file']}:{n}" for n in (1, 2, 3)]
    assert [ds.meta(k) for k in range(3)] == [
        {'image_id': 9, 'captions': ['Closeup of bins of food that include broccoli and bread.']},
        {'image_id': 25, 'captions': ['A giraffe eating food from the top of the tree.']},
        {'image_id': 9, 'captions': ['A meal is presented in brightly colored plastic trays.']},
    ]
    item = ds[1]
    validate_item(item, 'shikra caption', 1, image_size=item['image'].size)
    assert item['image'].size == (40, 60)
    assert item['conversations'][1] == {'from': 'gpt', 'value': 'A giraffe eating food from the top of the tree.',
                                        'boxes_seq': None, 'points_seq': None}
    # eval: one item per image, its captions in file order, tagged with its first line
    ds = COCOCaptionDataset(shikra['file'], shikra['images'], mode='eval')
    assert len(ds) == 2 and [ds[k]['source'] for k in range(2)] == [f"{shikra['file']}:1", f"{shikra['file']}:2"]
    assert ds.meta(0) == {'image_id': 9, 'captions': ['Closeup of bins of food that include broccoli and bread.',
                                                      'A meal is presented in brightly colored plastic trays.']}
    # a file with one line is still JSON Lines
    one = write_jsonl(shikra['root'] / 'one.jsonl', SHIKRA_LINES[1:2])
    assert COCOCaptionDataset(one, shikra['images']).meta(0) == {
        'image_id': 25, 'captions': ['A giraffe eating food from the top of the tree.']}


def test_shikra_caption_bad_lines_name_file_and_line(shikra):
    root = shikra['root']
    path = write_jsonl(root / 'bad.jsonl', [SHIKRA_LINES[0], {'img_path': 'COCO_train2014_000000000025.jpg'}])
    with pytest.raises(DataFileError, match=r"bad\.jsonl:2: missing field\(s\) \['caption'\]"):
        COCOCaptionDataset(path, shikra['images'])
    path = write_jsonl(root / 'bad.jsonl', [*SHIKRA_LINES[:2], {'img_path': 7, 'caption': 'x'}])
    with pytest.raises(DataFileError, match=r"bad\.jsonl:3: 'img_path' and 'caption' must be strings"):
        COCOCaptionDataset(path, shikra['images'])
    (root / 'bad.jsonl').write_text(json.dumps(SHIKRA_LINES[0]) + '\n{"img_path": "a.jpg", \n')
    with pytest.raises(DataFileError, match=r'bad\.jsonl:2: not valid JSON'):
        COCOCaptionDataset(str(root / 'bad.jsonl'), shikra['images'])
    with pytest.raises(ValueError, match="split='train' applies to Karpathy"):
        COCOCaptionDataset(shikra['file'], shikra['images'], split='train')
