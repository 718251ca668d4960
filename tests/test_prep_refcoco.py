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
    (49, 'COCO_train2014_000000000049.jpg', 30, 40),  # only in train splits
    (64, 'COCO_train2014_000000000064.jpg', 48, 32),  # in refcocog train and refcoco testA
]
ANNS = [  # (ann_id, image_id, category_id, [x, y, w, h])
    (101, 9, 18, [0.0, 8.5, 20.25, 39.5]),   # touches the left and bottom border of the 64x48 image
    (102, 9, 1, [30, 4, 34, 20]),            # touches the right border
    (201, 25, 1, [5.5, 0, 10, 12.5]),        # touches the top border
    (301, 30, 62, [10, 10, 20, 20]),
    (401, 49, 1, [2, 3, 10, 20]),
    (501, 64, 1, [0, 0, 16, 32]),
    (502, 64, 1, [20, 4, 28, 28]),
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
        ref(4, 401, 49, 'train', [sentence(6, 'small person')]),
        ref(5, 501, 64, 'testA', [sentence(7, 'left woman')]),
    ],
    ('refcoco+', 'unc'): [
        ref(10, 102, 9, 'train', [sentence(20, 'guy in red')]),
        ref(11, 201, 25, 'val', [sentence(21, 'kid')]),
        ref(12, 401, 49, 'train', [sentence(22, 'person in blue')]),
    ],
    ('refcocog', 'umd'): [
        ref(20, 301, 30, 'train', [sentence(30, 'a wooden chair near the wall')], 62),
        ref(21, 101, 9, 'test', [sentence(31, 'a small brown dog lying on the floor')], 18),
        ref(22, 201, 25, 'val', [sentence(32, 'a person standing at the top')]),
        ref(23, 502, 64, 'train', [sentence(33, 'a woman holding an umbrella'),
                                   sentence(34, 'the woman on the right')]),
    ],
}
# Evaluation images: refcoco testA {9, 64}, testB {25}, val {30}; refcoco+ val {25}; refcocog test {9}, val {25}.
# So of the ref3 train records only those on image 49 (refcoco sent 6, refcoco+ sent 22) are free of them.


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
    assert written == {'REC_refcoco_unc_testA.jsonl': 2, 'REC_refcoco_unc_testB.jsonl': 1,
                       'REC_refcoco_unc_train.jsonl': 3, 'REC_refcoco_unc_val.jsonl': 1,
                       'REC_refcoco+_unc_train.jsonl': 2, 'REC_refcoco+_unc_val.jsonl': 1,
                       'REC_refcocog_umd_test.jsonl': 1, 'REC_refcocog_umd_train.jsonl': 3,
                       'REC_refcocog_umd_val.jsonl': 1, 'REC_ref3_train.jsonl': 2}
    assert sorted(p.name for p in out.iterdir()) == sorted(written)
    dog = [0.0, 8.5, 20.25, 48.0]
    assert read_jsonl(out / 'REC_refcoco_unc_train.jsonl') == [
        record('refcoco', 'train', 9, 101, 0, 0, 'left dog', dog),
        record('refcoco', 'train', 9, 101, 0, 1, 'the café dog “left”', dog),
        record('refcoco', 'train', 49, 401, 4, 6, 'small person', [2.0, 3.0, 12.0, 23.0]),
    ]
    assert read_jsonl(out / 'REC_refcoco_unc_testA.jsonl') == [
        record('refcoco', 'testA', 9, 102, 1, 2, 'man on right', [30.0, 4.0, 64.0, 24.0]),
        record('refcoco', 'testA', 64, 501, 5, 7, 'left woman', [0.0, 0.0, 16.0, 32.0])]
    assert read_jsonl(out / 'REC_refcoco_unc_testB.jsonl') == [
        record('refcoco', 'testB', 25, 201, 2, 3, 'top person', [5.5, 0.0, 15.5, 12.5])]
    assert read_jsonl(out / 'REC_refcocog_umd_test.jsonl') == [
        record('refcocog', 'test', 9, 101, 21, 31, 'a small brown dog lying on the floor', dog)]
    assert 'café' in (out / 'REC_refcoco_unc_train.jsonl').read_text(encoding='utf-8')  # not \u-escaped
    assert read_jsonl(out / 'REC_ref3_train.jsonl') == [
        record('refcoco', 'train', 49, 401, 4, 6, 'small person', [2.0, 3.0, 12.0, 23.0]),
        record('refcoco+', 'train', 49, 401, 12, 22, 'person in blue', [2.0, 3.0, 12.0, 23.0])]


# What main prints about the fixture's overlap, counted by hand from REFS: refcoco train has 3 expressions on
# images {9, 49}, 2 of them on image 9 (refcoco testA, refcocog test); refcoco+ train 2 on {9, 49}, 1 on 9;
# refcocog train 3 on {30, 64}: 1 on 30 (refcoco val), 2 on 64 (refcoco testA).
OVERLAP_LINES = [
    '  refcoco(unc) train: 1 of 2 images, 2 of 3 expressions',
    '    in refcoco(unc) testA: 1 image, 2 expressions',
    '    in refcocog(umd) test: 1 image, 2 expressions',
    '  refcoco+(unc) train: 1 of 2 images, 1 of 2 expressions',
    '    in refcoco(unc) testA: 1 image, 1 expression',
    '    in refcocog(umd) test: 1 image, 1 expression',
    '  refcocog(umd) train: 2 of 2 images, 3 of 3 expressions',
    '    in refcoco(unc) val: 1 image, 1 expression',
    '    in refcoco(unc) testA: 1 image, 2 expressions',
]


def test_ref3_leaves_out_eval_images_by_default_and_reports_the_overlap(refer_root, tmp_path, capsys):
    out = tmp_path / 'ann'
    refcoco.main(['--data-root', str(refer_root), '--output-dir', str(out), '--ref3'])
    ref3 = read_jsonl(out / 'REC_ref3_train.jsonl')
    assert [(r['dataset_name'], r['sent_id']) for r in ref3] == [('refcoco', 6), ('refcoco+', 22)]
    # image 64: refcocog train and refcoco testA; none of the evaluation images is left in ref3 train
    assert 64 in {r['image_id'] for r in read_jsonl(out / 'REC_refcocog_umd_train.jsonl')}
    eval_images = {r['image_id'] for f in out.iterdir() if not f.name.endswith('_train.jsonl') for r in read_jsonl(f)}
    assert eval_images == {9, 25, 30, 64} and not eval_images & {r['image_id'] for r in ref3}
    lines = capsys.readouterr().out.splitlines()
    start = lines.index('REC_ref3_train.jsonl: train images that are also in an evaluation split, '
                        'removed (--keep-eval-images-in-train keeps them):')
    assert lines[start + 1:start + 11] == [*OVERLAP_LINES, '  all sources: 6 of 8 expressions removed']
    assert f"{out / 'REC_ref3_train.jsonl'}: 2 records" in lines


def test_ref3_keeps_eval_images_on_request_and_still_reports(refer_root, tmp_path, capsys):
    out = tmp_path / 'ann'
    refcoco.main(['--data-root', str(refer_root), '--output-dir', str(out), '--ref3', '--keep-eval-images-in-train'])
    ref3 = read_jsonl(out / 'REC_ref3_train.jsonl')
    assert [(r['dataset_name'], r['sent_id']) for r in ref3] == [
        ('refcoco', 0), ('refcoco', 1), ('refcoco', 6), ('refcoco+', 20), ('refcoco+', 22), ('refcocog', 30),
        ('refcocog', 33), ('refcocog', 34)]
    lines = capsys.readouterr().out.splitlines()
    start = lines.index('REC_ref3_train.jsonl: train images that are also in an evaluation split, '
                        'kept (--keep-eval-images-in-train):')
    assert lines[start + 1:start + 11] == [*OVERLAP_LINES, '  all sources: 6 of 8 expressions kept']
    # the flag of the old opt-in behaviour still runs (it is the default now); the two contradict each other
    refcoco.main(['--data-root', str(refer_root), '--output-dir', str(out), '--ref3', '--exclude-eval-images'])
    assert len(read_jsonl(out / 'REC_ref3_train.jsonl')) == 2
    with pytest.raises(SystemExit):
        refcoco.main(['--data-root', str(refer_root), '--output-dir', str(out), '--ref3',
                      '--exclude-eval-images', '--keep-eval-images-in-train'])


def test_ref3_eval_splits_of_every_converted_dataset_count(refer_root):
    converted = {d: refcoco.convert(str(refer_root), *d) for d in refcoco.REF3}
    assert [r['sent_id'] for r in refcoco.ref3_train(converted)] == [6, 22]
    # without refcocog's test split image 9 is still an evaluation image (refcoco testA): same records
    converted[('refcocog', 'umd')].pop('test')
    assert [r['sent_id'] for r in refcoco.ref3_train(converted)] == [6, 22]
    # an extra dataset's val split (here a copy of refcoco+ whose val holds image 49) removes image 49 too
    converted[('refcoco', 'google')] = {'val': [dict(r, split='val') for r in converted[('refcoco+', 'unc')]['train']]}
    assert refcoco.ref3_train(converted) == []
    assert len(refcoco.ref3_train(converted, keep_eval_images=True)) == 8
    with pytest.raises(ValueError, match=r"refcocog\(umd\)"):
        refcoco.ref3_train({d: converted[d] for d in refcoco.REF3[:2]})


def test_no_overlap_is_reported_too(refer_root):
    converted = {d: refcoco.convert(str(refer_root), *d) for d in refcoco.REF3}
    for splits in converted.values():
        splits.pop('train')
    converted[('refcoco', 'unc')]['train'] = [r for r in refcoco.convert(str(refer_root), 'refcoco', 'unc')['train']
                                              if r['image_id'] == 49]
    report = refcoco.overlap_report(refcoco.ref3_overlap(converted), kept=False)
    assert report[1:] == ['  refcoco(unc) train: 0 of 1 image, 0 of 1 expression',
                          '  refcoco+(unc) train: 0 of 0 images, 0 of 0 expressions',
                          '  refcocog(umd) train: 0 of 0 images, 0 of 0 expressions',
                          '  all sources: 0 of 1 expression removed']


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


def test_missing_refs_file_is_one_line_naming_file_and_flag(refer_root, tmp_path):
    out = tmp_path / 'ann'
    with pytest.raises(SystemExit) as info:
        refcoco.main(['--data-root', str(refer_root), '--output-dir', str(out), '--datasets', 'refcoco:unc',
                      'refcocog:google'])
    path = refer_root / 'refcocog' / 'refs(google).p'
    assert info.value.code == (f"error: refs file not found: {path} (needed by --datasets refcocog:google; "
                               f"unzip refcocog.zip under --data-root or leave refcocog:google out)")
    assert not out.exists()  # nothing written before the check: refcoco:unc came first
    # a dataset only --ref3 needs names --ref3
    (refer_root / 'refcocog' / 'refs(umd).p').unlink()
    with pytest.raises(SystemExit) as info:
        refcoco.main(['--data-root', str(refer_root), '--output-dir', str(out), '--datasets', 'refcoco:unc', '--ref3'])
    assert str(refer_root / 'refcocog' / 'refs(umd).p') in info.value.code
    assert 'needed by --ref3, the train splits of refcoco:unc refcoco+:unc refcocog:umd' in info.value.code
    # run as a script: exit status 1, one line on stderr, no traceback
    result = subprocess.run([sys.executable, 'tools/prepare_data/refcoco.py', '--data-root', str(refer_root),
                             '--output-dir', str(out)], capture_output=True, text=True)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: refs file not found: {refer_root / 'refcocog' / 'refs(umd).p'} (needed by --datasets "
        f"refcocog:umd; unzip refcocog.zip under --data-root or leave refcocog:umd out)"]
    # a malformed refs file is one line too
    (refer_root / 'refcoco' / 'refs(unc).p').write_bytes(pickle.dumps({'not': 'a list'}, protocol=2))
    with pytest.raises(SystemExit) as info:
        refcoco.main(['--data-root', str(refer_root), '--output-dir', str(out), '--datasets', 'refcoco:unc'])
    assert info.value.code == (f"error: {refer_root / 'refcoco' / 'refs(unc).p'}: "
                               f"expected a pickled list of refs, got dict")


def test_python2_pickle_with_utf8_bytes(tmp_path):
    # [{'sent': 'café'}] as Python 2 pickles a byte string (SHORT_BINSTRING), which Python 3 cannot read as ASCII
    path = tmp_path / 'refs(unc).p'
    path.write_bytes(b'\x80\x02]q\x00}q\x01U\x04sentq\x02U\x05caf\xc3\xa9q\x03sa.')
    assert refcoco.load_refs(str(path)) == [{'sent': 'café'}]


def test_script_help():
    result = subprocess.run([sys.executable, 'tools/prepare_data/refcoco.py', '--help'], capture_output=True,
                            text=True, check=True)
    assert '--data-root' in result.stdout and 'refs(unc).p' in result.stdout
