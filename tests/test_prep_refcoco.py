"""tools/prepare_data/refcoco.py on tiny refs(*).p + instances.json in the official refer layout."""
import json
import pickle
import subprocess
import sys

import pytest

from mllm.dataset.single_image_dataset.rec import RECDataset
from mllm.dataset.single_image_dataset.reg import REGDataset
from mllm.dataset.utils.transform import Expand2square, norm_box_xyxy
from mllm.dataset.validation import validate_item
from tests.helpers import read_jsonl, write_images
from tools.prepare_data import refcoco

IMAGES = [  # COCO images: (id, file_name, width, height)
    (9, 'COCO_train2014_000000000009.jpg', 64, 48),
    (25, 'COCO_train2014_000000000025.jpg', 40, 60),
    (30, 'COCO_train2014_000000000030.jpg', 50, 50),
]
ANNS = [  # (ann_id, image_id, category_id, [x, y, w, h])
    (101, 9, 18, [0.0, 8.5, 20.25, 39.5]),   # touches the left and bottom border of the 64x48 image
    (102, 9, 1, [30, 4, 34, 20]),            # touches the right border
    (201, 25, 1, [5.5, 0, 10, 12.5]),        # touches the top border
    (301, 30, 62, [10, 10, 20, 20]),
]


def sentence(sent_id, sent, raw=None):
    return {'tokens': sent.split(), 'raw': raw or sent, 'sent_id': sent_id, 'sent': sent}


def ref(ref_id, ann_id, image_id, split, sentences, category_id=1):
    # `file_name` of a ref carries the ann id, unlike the image's file name in instances.json.
    return {'sent_ids': [s['sent_id'] for s in sentences], 'file_name': f'COCO_train2014_{image_id:012d}_{ann_id}.jpg',
            'ann_id': ann_id, 'ref_id': ref_id, 'image_id': image_id, 'split': split, 'sentences': sentences,
            'category_id': category_id}


REFS = {
    ('refcoco', 'unc'): [
        ref(0, 101, 9, 'train', [sentence(0, 'left dog'), sentence(1, 'the café dog “left”', 'The Café dog "left"')],
            18),
        ref(1, 102, 9, 'testA', [sentence(2, 'man on right')]),
        ref(2, 201, 25, 'testB', [sentence(3, 'top person')]),
        ref(3, 301, 30, 'val', [sentence(4, 'chair')], 62),
    ],
    ('refcoco+', 'unc'): [
        ref(10, 102, 9, 'train', [sentence(20, 'guy in red')]),
        ref(11, 201, 25, 'val', [sentence(21, 'kid')]),
    ],
    ('refcocog', 'umd'): [
        ref(20, 301, 30, 'train', [sentence(30, 'a wooden chair near the wall')], 62),
        ref(21, 101, 9, 'test', [sentence(31, 'a small brown dog lying on the floor')], 18),
        ref(22, 201, 25, 'val', [sentence(32, 'a person standing at the top')]),
    ],
}


def instances():
    return {
        'info': {'description': 'refcoco'}, 'licenses': [],
        'images': [{'license': 1, 'file_name': name, 'coco_url': '', 'height': h, 'width': w, 'date_captured': '',
                    'flickr_url': '', 'id': image_id} for image_id, name, w, h in IMAGES],
        'annotations': [{'segmentation': [[x, y, x + w, y, x + w, y + h]], 'area': w * h, 'iscrowd': 0,
                         'image_id': image_id, 'bbox': [x, y, w, h], 'category_id': cat, 'id': ann_id}
                        for ann_id, image_id, cat, (x, y, w, h) in ANNS],
        'categories': [{'supercategory': 'person', 'id': 1, 'name': 'person'},
                       {'supercategory': 'animal', 'id': 18, 'name': 'dog'},
                       {'supercategory': 'furniture', 'id': 62, 'name': 'chair'}],
    }


@pytest.fixture
def refer_root(tmp_path):
    root = tmp_path / 'data'
    for (dataset, split_by), refs in REFS.items():
        folder = root / dataset
        folder.mkdir(parents=True)
        with open(folder / f'refs({split_by}).p', 'wb') as f:
            pickle.dump(refs, f, protocol=2)
        (folder / 'instances.json').write_text(json.dumps(instances()))
    write_images(tmp_path / 'train2014', {name: (w, h) for _, name, w, h in IMAGES}, color=(90, 60, 30))
    return root


def record(dataset, split, image_id, ann_id, ref_id, sent_id, expression, bbox):
    name, w, h = next((n, w, h) for i, n, w, h in IMAGES if i == image_id)
    return {'img_path': name, 'expression': expression, 'bbox': bbox, 'dataset_name': dataset, 'split': split,
            'height': h, 'width': w, 'image_id': image_id, 'ann_id': ann_id, 'ref_id': ref_id, 'sent_id': sent_id}


def test_convert_writes_one_record_per_sentence(refer_root, tmp_path):
    out = tmp_path / 'ann'
    written = refcoco.main(['--data-root', str(refer_root), '--output-dir', str(out), '--ref3'])
    assert written == {'REC_refcoco_unc_testA.jsonl': 1, 'REC_refcoco_unc_testB.jsonl': 1,
                       'REC_refcoco_unc_train.jsonl': 2, 'REC_refcoco_unc_val.jsonl': 1,
                       'REC_refcoco+_unc_train.jsonl': 1, 'REC_refcoco+_unc_val.jsonl': 1,
                       'REC_refcocog_umd_test.jsonl': 1, 'REC_refcocog_umd_train.jsonl': 1,
                       'REC_refcocog_umd_val.jsonl': 1, 'REC_ref3_train.jsonl': 4}
    assert sorted(p.name for p in out.iterdir()) == sorted(written)
    dog = [0.0, 8.5, 20.25, 48.0]
    assert read_jsonl(out / 'REC_refcoco_unc_train.jsonl') == [
        record('refcoco', 'train', 9, 101, 0, 0, 'left dog', dog),
        record('refcoco', 'train', 9, 101, 0, 1, 'the café dog “left”', dog),
    ]
    assert read_jsonl(out / 'REC_refcoco_unc_testA.jsonl') == [
        record('refcoco', 'testA', 9, 102, 1, 2, 'man on right', [30.0, 4.0, 64.0, 24.0])]
    assert read_jsonl(out / 'REC_refcoco_unc_testB.jsonl') == [
        record('refcoco', 'testB', 25, 201, 2, 3, 'top person', [5.5, 0.0, 15.5, 12.5])]
    assert read_jsonl(out / 'REC_refcocog_umd_test.jsonl') == [
        record('refcocog', 'test', 9, 101, 21, 31, 'a small brown dog lying on the floor', dog)]
    assert 'café' in (out / 'REC_refcoco_unc_train.jsonl').read_text(encoding='utf-8')  # not \u-escaped
    ref3 = read_jsonl(out / 'REC_ref3_train.jsonl')
    assert [(r['dataset_name'], r['sent_id']) for r in ref3] == [('refcoco', 0), ('refcoco', 1), ('refcoco+', 20),
                                                                 ('refcocog', 30)]


def test_ref3_can_drop_train_records_on_eval_images(refer_root):
    converted = {d: refcoco.convert(str(refer_root), *d) for d in refcoco.REF3}
    kept, dropped = refcoco.ref3_train(converted, exclude_eval_images=True)
    # image 9 is in refcoco testA and refcocog test, image 30 in refcoco val: nothing survives
    assert (kept, dropped) == ([], 4)
    with pytest.raises(ValueError, match=r"refcocog\(umd\)"):
        refcoco.ref3_train({d: converted[d] for d in refcoco.REF3[:2]})


def test_round_trip_through_rec_and_reg(refer_root, tmp_path):
    out = tmp_path / 'ann'
    refcoco.main(['--data-root', str(refer_root), '--output-dir', str(out), '--datasets', 'refcoco:unc'])
    images = str(tmp_path / 'train2014')
    # 64x48 padded to 64: dy = 8 -> [0, 16.5, 20.25, 56] / 64
    expected = [0.0, 16.5 / 64, 20.25 / 64, 56 / 64]
    for ds in (RECDataset(str(out / 'REC_refcoco_unc_train.jsonl'), images),
               REGDataset(str(out / 'REC_refcoco_unc_train.jsonl'), images)):
        item = ds[1]
        validate_item(item, 'refcoco', 1, image_size=item['image'].size)
        assert item['image'].size == (64, 48)
        image, target = Expand2square()(item['image'], item['target'])
        assert norm_box_xyxy(target['boxes'][0], *image.size) == pytest.approx(expected)
        assert ds.meta(1)['sent_id'] == 1 and ds.meta(1)['ref_id'] == 0
    assert REGDataset(str(out / 'REC_refcoco_unc_train.jsonl'), images)[1]['conversations'][1]['value'] \
        == 'the café dog “left”'


@pytest.mark.parametrize('change, message', [
    (lambda refs: refs[1].pop('sentences'), "ref #1 (ref_id=1): missing field(s) ['sentences']"),
    (lambda refs: refs[0]['sentences'][1].pop('sent'), "ref #0 (ref_id=0): sentence #1 lacks 'sent'"),
    (lambda refs: refs[2].update(ann_id=999), 'ann_id 999 is not in'),
    (lambda refs: refs[2].update(image_id=77), 'image_id 77 is not in'),
    (lambda refs: refs[3].update(image_id=9), 'ann 301 belongs to image 30, not 9'),
])
def test_bad_refs_name_file_and_ref(refer_root, change, message):
    refs = [dict(r, sentences=[dict(s) for s in r['sentences']]) for r in REFS[('refcoco', 'unc')]]
    change(refs)
    path = refer_root / 'refcoco' / 'refs(unc).p'
    path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(refcoco.ReferFormatError) as info:
        refcoco.convert(str(refer_root), 'refcoco', 'unc')
    assert str(path) in str(info.value) and message in str(info.value)


def test_missing_files_and_bad_arguments(refer_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r'refs\(google\)\.p'):
        refcoco.convert(str(refer_root), 'refcocog', 'google')
    (refer_root / 'refcoco+' / 'instances.json').unlink()
    with pytest.raises(FileNotFoundError, match=r'refcoco\+/instances\.json'):
        refcoco.convert(str(refer_root), 'refcoco+', 'unc')
    with pytest.raises(SystemExit):
        refcoco.main(['--data-root', str(refer_root), '--output-dir', str(tmp_path), '--datasets', 'refclef'])


def test_python2_pickle_with_utf8_bytes(tmp_path):
    # [{'sent': 'café'}] as Python 2 pickles a byte string (SHORT_BINSTRING), which Python 3 cannot read as ASCII
    path = tmp_path / 'refs(unc).p'
    path.write_bytes(b'\x80\x02]q\x00}q\x01U\x04sentq\x02U\x05caf\xc3\xa9q\x03sa.')
    assert refcoco.load_refs(str(path)) == [{'sent': 'café'}]


def test_script_help():
    result = subprocess.run([sys.executable, 'tools/prepare_data/refcoco.py', '--help'], capture_output=True,
                            text=True, check=True)
    assert '--data-root' in result.stdout and 'refs(unc).p' in result.stdout
