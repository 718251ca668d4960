"""RefCOCO / RefCOCO+ / RefCOCOg (official refer release) -> REC/REG JSONL, one record per sentence.

Reads the layout of https://github.com/lichengunc/refer (archives refcoco.zip, refcoco+.zip and
refcocog.zip from https://bvisionweb1.cs.unc.edu/licheng/referit/data/ -- also on web.archive.org --,
unzipped under one folder):

    <data_root>/refcoco/refs(unc).p   refs(google).p   instances.json
    <data_root>/refcoco+/refs(unc).p                   instances.json
    <data_root>/refcocog/refs(umd).p  refs(google).p   instances.json

`refs(<split_by>).p` is a pickled list of refs ({ref_id, ann_id, image_id, split, category_id,
file_name, sentences=[{tokens, raw, sent_id, sent}], sent_ids}); `instances.json` (COCO format,
read with pycocotools) gives each ann's [x, y, w, h] box and each image's file name and size. All
images are COCO train2014 (`COCO_train2014_*.jpg`). Output, per dataset and split present:

    REC_<dataset>_<split_by>_<split>.jsonl   e.g. REC_refcoco_unc_testA.jsonl, REC_refcocog_umd_val.jsonl
    REC_ref3_train.jsonl                     (--ref3) train of refcoco(unc) + refcoco+(unc) + refcocog(umd)

Each line: {img_path, expression, bbox (pixel xyxy), dataset_name, split, height, width, image_id,
ann_id, ref_id, sent_id} -- the fields Shikra's REC_*.jsonl carry, so RECDataset / REGDataset read
both. Command:

    python tools/prepare_data/refcoco.py --data-root /data/refer/data --output-dir /data/annotations --ref3
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys

from pycocotools.coco import COCO

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.prepare_data.common import write_jsonl

# The splits Shikra evaluates on and trains with (dataset, split_by).
DEFAULT_DATASETS = (('refcoco', 'unc'), ('refcoco+', 'unc'), ('refcocog', 'umd'))
REF3 = DEFAULT_DATASETS
REF3_TRAIN_FILE = 'REC_ref3_train.jsonl'
REF_FIELDS = ('ref_id', 'ann_id', 'image_id', 'split', 'sentences')


class ReferFormatError(ValueError):
    """An official refer file does not hold what the release format promises; names file and ref."""


def _fix_py2_text(value):
    """Strings of a Python 2 pickle read as latin-1 hold UTF-8 bytes; decode them back."""
    if isinstance(value, str):
        try:
            return value.encode('latin-1').decode('utf-8')
        except (UnicodeEncodeError, UnicodeDecodeError):
            return value
    if isinstance(value, list):
        return [_fix_py2_text(v) for v in value]
    if isinstance(value, dict):
        return {_fix_py2_text(k): _fix_py2_text(v) for k, v in value.items()}
    return value


def load_refs(path: str) -> list[dict]:
    """The refs list of a `refs(<split_by>).p` file (written by Python 2; plain ASCII loads as is)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"refs file not found: {path}")
    with open(path, 'rb') as f:
        try:
            refs = pickle.load(f)
        except UnicodeDecodeError:  # a Python 2 `str` with non-ASCII bytes
            f.seek(0)
            refs = _fix_py2_text(pickle.load(f, encoding='latin-1'))
    if not isinstance(refs, list):
        raise ReferFormatError(f"{path}: expected a pickled list of refs, got {type(refs).__name__}")
    return refs


def load_instances(path: str) -> COCO:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"instances file not found: {path}")
    return COCO(path)


def convert_refs(refs: list[dict], coco: COCO, dataset_name: str, refs_path: str = 'refs',
                 instances_path: str = 'instances.json') -> dict[str, list[dict]]:
    """{split: records}, one record per sentence, in the order of the refs file."""
    out: dict[str, list[dict]] = {}
    for k, ref in enumerate(refs):
        where = f"{refs_path}: ref #{k} (ref_id={ref.get('ref_id')})"
        missing = [f for f in REF_FIELDS if f not in ref]
        if missing:
            raise ReferFormatError(f"{where}: missing field(s) {missing}")
        ann = coco.anns.get(ref['ann_id'])
        if ann is None:
            raise ReferFormatError(f"{where}: ann_id {ref['ann_id']} is not in {instances_path}")
        image = coco.imgs.get(ref['image_id'])
        if image is None:
            raise ReferFormatError(f"{where}: image_id {ref['image_id']} is not in {instances_path}")
        if ann['image_id'] != ref['image_id']:
            raise ReferFormatError(f"{where}: ann {ref['ann_id']} belongs to image {ann['image_id']}, "
                                   f"not {ref['image_id']}")
        x, y, w, h = (float(v) for v in ann['bbox'])
        for s, sent in enumerate(ref['sentences']):
            if 'sent' not in sent or 'sent_id' not in sent:
                raise ReferFormatError(f"{where}: sentence #{s} lacks 'sent' or 'sent_id'")
            out.setdefault(ref['split'], []).append({
                # The ref's own file_name carries an ann suffix (COCO_train2014_..._16.jpg): use the image's.
                'img_path': image['file_name'],
                'expression': sent['sent'],
                'bbox': [x, y, x + w, y + h],
                'dataset_name': dataset_name,
                'split': ref['split'],
                'height': image['height'],
                'width': image['width'],
                'image_id': ref['image_id'],
                'ann_id': ref['ann_id'],
                'ref_id': ref['ref_id'],
                'sent_id': sent['sent_id'],
            })
    return out


def convert(data_root: str, dataset: str, split_by: str) -> dict[str, list[dict]]:
    """Read <data_root>/<dataset>/refs(<split_by>).p + instances.json; return {split: records}."""
    folder = os.path.join(data_root, dataset)
    refs_path = os.path.join(folder, f'refs({split_by}).p')
    instances_path = os.path.join(folder, 'instances.json')
    refs = load_refs(refs_path)
    return convert_refs(refs, load_instances(instances_path), dataset, refs_path, instances_path)


def split_file_name(dataset: str, split_by: str, split: str) -> str:
    return f'REC_{dataset}_{split_by}_{split}.jsonl'


def ref3_train(converted: dict[tuple[str, str], dict[str, list[dict]]],
               exclude_eval_images: bool = False) -> tuple[list[dict], int]:
    """Train records of refcoco(unc) + refcoco+(unc) + refcocog(umd); (records, number dropped).

    The three datasets split COCO images independently, so some refcoco train images are in the
    refcocog val/test splits; exclude_eval_images drops train records on any val/test image.
    """
    missing = [f'{d}({s})' for d, s in REF3 if (d, s) not in converted]
    if missing:
        raise ValueError(f"the ref3 train file needs {missing} as well")
    eval_images = {r['image_id'] for d, s in REF3 for split, records in converted[(d, s)].items()
                   if split != 'train' for r in records} if exclude_eval_images else set()
    train = [r for d, s in REF3 for r in converted[(d, s)].get('train', [])]
    kept = [r for r in train if r['image_id'] not in eval_images]
    return kept, len(train) - len(kept)


def parse_dataset(text: str) -> tuple[str, str]:
    dataset, sep, split_by = text.partition(':')
    if not sep or dataset not in ('refcoco', 'refcoco+', 'refcocog') or not split_by:
        raise argparse.ArgumentTypeError(f"expected refcoco:unc, refcoco+:unc, refcocog:umd, ...; got {text!r}")
    return dataset, split_by


def main(argv=None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--data-root', required=True, help='folder holding refcoco/, refcoco+/, refcocog/')
    parser.add_argument('--output-dir', required=True)
    parser.add_argument('--datasets', nargs='+', type=parse_dataset, default=list(DEFAULT_DATASETS),
                        metavar='NAME:SPLIT_BY', help='default: refcoco:unc refcoco+:unc refcocog:umd')
    parser.add_argument('--ref3', action='store_true', help=f'also write {REF3_TRAIN_FILE}')
    parser.add_argument('--exclude-eval-images', action='store_true',
                        help='drop ref3 train records whose image is in any val/test split of the three')
    args = parser.parse_args(argv)

    converted, written = {}, {}
    for dataset, split_by in dict.fromkeys(args.datasets):
        converted[(dataset, split_by)] = convert(args.data_root, dataset, split_by)
        for split, records in sorted(converted[(dataset, split_by)].items()):
            name = split_file_name(dataset, split_by, split)
            write_jsonl(records, os.path.join(args.output_dir, name))
            written[name] = len(records)
    if args.ref3:
        if any(d not in converted for d in REF3):
            converted.update({d: convert(args.data_root, *d) for d in REF3 if d not in converted})
        records, dropped = ref3_train(converted, args.exclude_eval_images)
        write_jsonl(records, os.path.join(args.output_dir, REF3_TRAIN_FILE))
        written[REF3_TRAIN_FILE] = len(records)
        if dropped:
            print(f"{REF3_TRAIN_FILE}: dropped {dropped} records on val/test images", file=sys.stderr)
    for name, count in written.items():
        print(f"{os.path.join(args.output_dir, name)}: {count} records")
    return written


if __name__ == '__main__':
    main()
